"""AlpacaEval: pairwise preference of a judge between the model's output and the reference output,
with the `alpaca_eval` package's own annotator prompts, order randomisation, win rate and
length-controlled (LC) win-rate code.

- The model under test answers the instructions (seeded subset of the 805; greedy, chat template,
  harness generation backend, cached).
- Annotator (`eval.benchmarks.alpaca_eval.annotator`): the prompt file and answer reading of one of the package's
  annotator configs (`alpaca_eval/evaluators_configs/<name>/configs.yaml`), read from the installed
  package, never copied:
  * `weighted_alpaca_eval_gpt4_turbo` (default; AlpacaEval 2.0's default annotator) and
    `alpaca_eval_clf_gpt4_turbo` (its binarised sibling): the prompt `alpaca_eval_clf.txt`, where the
    judge names the better output with one token, `m` (output_1) or `M` (output_2), and the package
    reads that token's top-5 log-probabilities with its `logprob_parser` (weighted: preference =
    2 - p(m)/(p(m)+p(M)); clf: the likelier one). A local judge gives exactly those log-probabilities
    (`harness.evaluation.logprob_judge`), so every judgment is read as the package reads it. An endpoint
    judge (the client returns text only) generates the one token greedily, read as the binarised
    decision; the settings say which reading was used (`judge_reading`).
  * `alpaca_eval_gpt4`: AlpacaEval 1.0's annotator (`alpaca_eval.txt`, a ranking written as a Python
    list, its `max_tokens`, greedy, the package's `ranking_parser`).
  The filled prompt (`alpaca_eval.utils.make_prompts`) is split into chat messages with
  `alpaca_eval.utils.prompt_to_chatml`, as the package does for chat APIs.
- Judge (`eval.benchmarks.alpaca_eval.judge_model`): a model spec (default the built-in SmolLM2, offline) or an
  OpenAI-compatible endpoint `http(s)://host/v1#model`, sent through the one endpoint
  client (`harness.generation.EndpointBackend`, cached the same way).
- Order: output_1 is the reference, output_2 the model (the package's convention); each pair is shown
  switched or not as the package's `RandomSwitchTwoColumnsProcessor` decides (seeded by
  "is_switched_outputs" + instruction + annotator seed 0), and the preference is switched back.
- A judgment that names neither output is *unparseable*: kept as an example with value NaN, counted
  (`unparseable` score and setting) and left out of the win rates — never dropped silently.
- win_rate, its standard error and discrete_win_rate: `alpaca_eval.metrics.get_winrate`.
- lc_win_rate: the package's GLM machinery (`make_dmatrix_for_model`, `fit_LogisticRegressionCV`) with
  the formula of its `length_controlled_minimal` GLM, fitted on this run's judgments and predicted at
  zero length difference. The official AlpacaEval 2.0 GLM (`length_controlled_v1`) also has an
  `instruction_difficulty` term and a regularisation towards the "gamed" baselines, both fitted across
  many models (data the package downloads from the Hub dataset at fit time); with one model's judgments
  and no such data they are dropped, and the settings say so (`lc_dropped_terms`). With fewer than
  `LC_MIN_FOR_CV` judgments the CV over the regularisation strength (5 group folds) cannot run, and the
  package's fallback (`n_splits=0`: one fit at C=100) is used; recorded as `lc_cv_splits`.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError, DataError
from harness.generation import EndpointBackend, GenerationBackend, Sampling, is_endpoint
from harness.hashing import hash_file, hash_json
from harness.paths import mirror_file
from harness.results import BenchmarkResult, ExampleResult, Score
from harness.subsets import paired_subset

log = logging.getLogger("harness.evaluation")

INSTRUCTIONS_FILE = Path("eval/alpaca_eval/instructions.jsonl")
REFERENCES = {"text_davinci_003": Path("eval/alpaca_eval/reference_text_davinci_003.json"),
              "gpt4_1106_preview": Path("eval/alpaca_eval/reference_gpt4_1106_preview.json")}
HUB_ID = "tatsu-lab/alpaca_eval"
DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
SWITCH_COLUMN = "is_switched_outputs"  # the pairwise annotator's switch column; part of the order seed
ORDER_SEED = 0  # the package's annotator seed default
LC_GLM = "length_controlled_minimal"
LC_OFFICIAL_GLM = "length_controlled_v1"
LC_SPLITS = 5
LC_MIN_FOR_CV = 2 * LC_SPLITS


@dataclass(frozen=True)
class Annotator:
    """One of the package's annotator configs, as a local or an endpoint judge uses it."""

    name: str
    template: str  # the prompt file's text
    template_file: str  # relative to alpaca_eval/evaluators_configs
    max_new_tokens: int
    parser: str  # the package's fn_completion_parser
    parser_kwargs: dict  # its completion_parser_kwargs
    top_logprobs: int | None  # what a log-probability annotator asks the API for

    @property
    def reads_logprobs(self) -> bool:
        return self.parser == "logprob_parser"

    def parse(self, completion: str) -> float:
        """The package's preference (1: output_1 as shown wins, 2: output_2) from generated text, NaN when
        unparseable. A log-probability annotator's text is its one token: `m` (the parser's numerator,
        output_1) or `M`, read as the binarised decision."""
        text = completion.strip()
        if self.parser == "ranking_parser":
            from alpaca_eval.completion_parsers import ranking_parser

            if not text:
                return float("nan")
            root = logging.getLogger()
            was_disabled, root.disabled = root.disabled, True  # it logs every unparseable answer as an ERROR
            try:
                return float(ranking_parser(text)[0])
            finally:
                root.disabled = was_disabled
        numerator = self.parser_kwargs["numerator_token"]
        others = [t for t in self.parser_kwargs["denominator_tokens"] if t != numerator]
        return 1.0 if text == numerator else 2.0 if text in others else float("nan")

    def parse_logprobs(self, top_logprobs: list[dict]) -> float:
        """The package's own `logprob_parser` on one first token's top log-probabilities (NaN when none of
        its tokens is among them, as there)."""
        from alpaca_eval.completion_parsers import logprob_parser

        root = logging.getLogger()
        was_disabled, root.disabled = root.disabled, True  # it warns on every miss
        try:
            return float(logprob_parser({"logprobs": {"content": [{"top_logprobs": top_logprobs}]}},
                                        **self.parser_kwargs)[0])
        finally:
            root.disabled = was_disabled


ANNOTATORS = ("weighted_alpaca_eval_gpt4_turbo", "alpaca_eval_clf_gpt4_turbo", "alpaca_eval_gpt4")


def package_dir() -> Path:
    spec = importlib.util.find_spec("alpaca_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("alpaca_eval benchmark: the alpaca-eval package is missing: pip install alpaca-eval")
    return Path(next(iter(spec.submodule_search_locations)))


def load_annotator(name: str) -> Annotator:
    """The annotator config `name` from the installed package (its configs.yaml and prompt file)."""
    if name not in ANNOTATORS:
        raise ConfigError(f"alpaca_eval annotator: unknown annotator {name!r}; choose one of {', '.join(ANNOTATORS)}")
    configs = package_dir() / "evaluators_configs"
    config = yaml.safe_load((configs / name / "configs.yaml").read_text(encoding="utf-8"))[name]
    template_file = config["prompt_template"]
    completions = config["completions_kwargs"]
    return Annotator(name=name, template=(configs / template_file).read_text(encoding="utf-8"),
                     template_file=template_file, max_new_tokens=int(completions["max_tokens"]),
                     parser=config["fn_completion_parser"], parser_kwargs=config.get("completion_parser_kwargs", {}),
                     top_logprobs=completions.get("top_logprobs"))


def reference_file(data_dir: Path | None, reference: str) -> Path:
    if reference not in REFERENCES:
        raise DataError(f"alpaca_eval: unknown reference {reference!r}; choose one of {', '.join(REFERENCES)}")
    return mirror_file(data_dir, REFERENCES[reference], "alpaca_eval", hub_id=HUB_ID)


# ---------------------------------------------------------------- judges

def judge_reading(spec: str, annotator: str) -> str:
    """How the judge's answers are read: "logprobs" (a local judge under a log-probability annotator)
    or "text" (generated text); part of the evaluation hash."""
    return "logprobs" if not is_endpoint(spec) and load_annotator(annotator).reads_logprobs else "text"


def judge_identity(spec: str) -> dict[str, Any]:
    """What identifies a judge in the evaluation hash and the settings: a model's content hash, or an
    endpoint's URL and model name."""
    if is_endpoint(spec):
        url, _, model_name = spec.partition("#")
        return {"judge_endpoint": url, "judge_endpoint_model": model_name or None, "judge_sha": None}
    from harness.models import resolve_model

    return {"judge_sha": resolve_model(spec).sha}


def make_judge(spec: str, model_backend: GenerationBackend, annotator: str = DEFAULT_ANNOTATOR):
    """The judge for `spec`: an endpoint (answers as text); for a local model and a log-probability
    annotator, a `LogprobJudge` (its first-token log-probabilities, as the package's annotator reads
    them); else the model's own backend when it is the same model, or a local backend of the same kind."""
    if is_endpoint(spec):
        return EndpointBackend(spec, who="alpaca_eval judge")
    from harness.generation import TransformersBackend, make_backend
    from harness.models import resolve_model

    judge_model = resolve_model(spec)
    if judge_reading(spec, annotator) == "logprobs":
        from harness.evaluation.logprob_judge import LogprobJudge

        same = judge_model.sha == model_backend.model.sha and isinstance(model_backend, TransformersBackend)
        return LogprobJudge(judge_model, batch_size=model_backend.batch_size, backend=model_backend if same else None)
    if judge_model.sha == model_backend.model.sha:
        return model_backend
    return make_backend(model_backend.name, judge_model, batch_size=model_backend.batch_size)


def _judge_settings(judge) -> dict[str, Any]:
    if isinstance(judge, EndpointBackend):
        return {"judge_model": judge.spec, **judge_identity(judge.spec)}
    return {"judge_model": judge.model.spec, "judge_sha": judge.model.sha}


def _judge(judge, annotator: Annotator, conversations: list) -> tuple[list[str], list[float], dict[str, Any]]:
    """(what the judge answered, as text; the preference each answer shows; how it was read)."""
    from harness.evaluation.logprob_judge import LogprobJudge

    if isinstance(judge, LogprobJudge):
        tops = judge.top_logprobs(conversations, k=annotator.top_logprobs)
        return ([json.dumps(top) for top in tops], [annotator.parse_logprobs(top) for top in tops],
                {"judge_reading": f"first-token top-{annotator.top_logprobs} log-probabilities, the package's "
                                  f"logprob_parser {annotator.parser_kwargs}"})
    sampling = Sampling(max_new_tokens=annotator.max_new_tokens)  # greedy
    texts = judge.chat(conversations, sampling, desc="alpaca_eval judge")
    reading = (f"generated text ({sampling.max_new_tokens} tokens, greedy), the package's {annotator.parser}"
               if not annotator.reads_logprobs else
               "one generated token (greedy) read as the binarised decision: this judge gives no log-probabilities")
    return texts, [annotator.parse(t) for t in texts], {"judge_reading": reading,
                                                        "judge_max_new_tokens": sampling.max_new_tokens}


# ---------------------------------------------------------------- evaluation

def evaluate_alpaca_eval(backend: GenerationBackend, judge, *, data_dir: Path | None, reference: str,
                         limit: int | None, subset_seed: int, max_new_tokens: int | None = None,
                         annotator: str = DEFAULT_ANNOTATOR) -> BenchmarkResult:
    import pandas as pd
    from alpaca_eval.utils import make_prompts, prompt_to_chatml, random_seeded_choice

    chosen_annotator = load_annotator(annotator)
    path = reference_file(data_dir, reference)
    rows = json.loads(path.read_text(encoding="utf-8"))
    items = paired_subset([(str(i), row) for i, row in enumerate(rows)], limit, subset_seed)
    sampling = Sampling(max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS)
    answers = backend.chat([[{"role": "user", "content": row["instruction"]}] for _, row in items], sampling,
                           desc="alpaca_eval answers")
    # output_1 = the reference, output_2 = the model, as the package lays out a comparison
    pairs = pd.DataFrame({"instruction": [row["instruction"] for _, row in items],
                          "output_1": [row["output"] for _, row in items], "output_2": answers,
                          "generator_1": [row.get("generator", reference) for _, row in items],
                          "generator_2": "model", "index": [int(i) for i, _ in items]})
    switched = [random_seeded_choice(seed=SWITCH_COLUMN + instruction + str(ORDER_SEED), choices=[False, True])
                for instruction in pairs.instruction]
    shown = pairs.copy()
    shown.loc[switched, ["output_1", "output_2"]] = pairs.loc[switched, ["output_2", "output_1"]].to_numpy()
    prompts, _ = make_prompts(shown[["instruction", "output_1", "output_2"]], chosen_annotator.template)
    verdicts, shown_preferences, reading = _judge(judge, chosen_annotator, [prompt_to_chatml(p) for p in prompts])
    # the package's switch-back: 3 - x turns a preference for the shown output_1 into one for output_2
    preferences = [3 - p if switch else p for p, switch in zip(shown_preferences, switched)]
    pairs["preference"] = preferences
    # Each judged example under the primary metric (preference - 1: 1 a win, 0 a loss, 0.5 a tie, a weighted
    # judge's probability in between; their mean is `get_winrate`'s win rate), so `compare` pairs them;
    # one the judge's answer could not be read for is recorded as `unparseable` (value 1), not as a loss.
    examples = [ExampleResult(example_id=f"alpaca_eval/{i}", metric="unparseable" if pd.isna(p) else "win_rate",
                              value=1.0 if pd.isna(p) else p - 1.0, prediction=answer,
                              target=json.dumps({"judge": verdict, "model_shown_as": "output_1" if s else "output_2"}))
                for (i, _), answer, verdict, s, p in zip(items, answers, verdicts, switched, preferences)]

    judged = pairs[pairs.preference.notna()]
    total, n = len(pairs), len(judged)
    win, win_se, discrete = _win_rates(judged)
    lc, lc_notes = length_controlled(judged)
    scores = [Score("win_rate", win, win_se, n), Score("lc_win_rate", lc, None, n),
              Score("discrete_win_rate", discrete, None, n),
              Score("unparseable", (total - n) / total if total else float("nan"), None, total)]
    instructions = Path(data_dir) / INSTRUCTIONS_FILE if data_dir else None
    return BenchmarkResult(
        benchmark="alpaca_eval", primary_metric="win_rate", scores=scores, examples=examples,
        settings={"limit": limit, "subset_seed": subset_seed, "max_new_tokens": sampling.max_new_tokens,
                  "decoding": "greedy", "chat_template": True, "reference": reference,
                  "reference_sha256": hash_file(path), **_judge_settings(judge),
                  "annotator": chosen_annotator.name, "annotator_prompt_file": chosen_annotator.template_file,
                  "annotator_prompt_sha256": hash_json(chosen_annotator.template),
                  "annotator_parser": chosen_annotator.parser, **reading, "order_seed": ORDER_SEED,
                  "alpaca_eval_version": _package_version(), "unparseable": total - n, "judged": total,
                  "instructions_sha256": hash_file(instructions) if instructions and instructions.is_file() else None,
                  **lc_notes},
    )


def _package_version() -> str:
    from importlib.metadata import version

    return version("alpaca_eval")


def _win_rates(judged) -> tuple[float, float | None, float]:
    """win rate, its standard error and the discrete win rate (fractions), by `alpaca_eval.metrics.get_winrate`."""
    if judged.empty:
        return float("nan"), None, float("nan")
    from alpaca_eval.metrics import get_winrate

    metrics = get_winrate(judged[["preference"]])
    se = metrics["standard_error"]
    missing = se is None or math.isnan(se)  # one judgment: no standard error
    return metrics["win_rate"] / 100, None if missing else se / 100, metrics["discrete_win_rate"] / 100


def length_controlled(judged) -> tuple[float, dict[str, Any]]:
    """LC win rate from judged pairs (columns preference in 1..2, output_1 = reference, output_2 = model,
    index) with the package's GLM code under its `length_controlled_minimal` formula, and the settings
    that say how it was fitted and what was dropped."""
    from alpaca_eval.metrics.glm_winrate import GLM_INFO, fit_LogisticRegressionCV, make_dmatrix_for_model

    info = GLM_INFO[LC_GLM]
    notes: dict[str, Any] = {
        "lc_glm": LC_GLM, "lc_formula": info["formula"],
        "lc_dropped_terms": [f"instruction_difficulty (of {LC_OFFICIAL_GLM}: fitted across many models)",
                             f"regularize_to_baseline_lambda={GLM_INFO[LC_OFFICIAL_GLM]['regularize_to_baseline_lambda']}"
                             f" (of {LC_OFFICIAL_GLM}: towards the package's gamed baselines)"],
        "lc_standard_error": "none: the minimal GLM predicts one value for every instruction",
    }
    import pandas as pd

    delta = judged.output_1.str.len() - judged.output_2.str.len()
    spread = delta.std()
    if len(judged) < 2 or not spread > 0:
        notes["lc_not_fitted"] = "needs two or more judged pairs whose length differences vary"
        return float("nan"), notes
    if judged.preference.nunique() == 1:
        # The package's fit breaks down here (every target on one side: it returns about 0.5, or 1 for all
        # losses); with nothing to explain the length-controlled rate is the win rate itself.
        notes["lc_not_fitted"] = "every judgment is the same: the LC win rate is the win rate"
        return float(judged.preference.iloc[0]) - 1.0, notes
    train = pd.DataFrame({"preference": judged.preference.astype(float).replace({0.0: 1.5}).to_numpy() - 1,
                          "std_delta_len": (delta / spread).to_numpy(), "not_gamed_baseline": True})
    test = pd.DataFrame({"not_gamed_baseline": [True], "std_delta_len": [0.0]})
    splits = LC_SPLITS if len(judged) >= LC_MIN_FOR_CV else 0
    notes["lc_cv_splits"] = splits
    xy, x_test = make_dmatrix_for_model(train, test, formula=info["formula"])
    with _quiet_sklearn():
        model = fit_LogisticRegressionCV(xy, "preference", is_ytrue_proba=True, n_splits=splits)
    return float(model.predict_proba(x_test)[:, 1].mean()), notes


class _quiet_sklearn:
    """sklearn warns on every CV fold of a degenerate split (e.g. all judgments one way); the fit stands."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)
