"""AlpacaEval: pairwise preference of a judge between the model's output and the reference output,
with the `alpaca_eval` package's own annotator prompts, order randomisation, win rate and
length-controlled (LC) win-rate code.

- The model under test answers the instructions (seeded subset of the 805; greedy, chat template,
  harness generation backend, cached).
- Annotator (`EvalConfig.alpaca_annotator`): the prompt file and answer format of one of the package's
  annotator configs (`alpaca_eval/evaluators_configs/<name>/configs.yaml`), read from the installed
  package, never copied:
  * `alpaca_eval_clf_gpt4_turbo` (default): AlpacaEval 2.0's prompt (`alpaca_eval_clf.txt`, the one its
    default annotator `weighted_alpaca_eval_gpt4_turbo` uses). The judge names the better output with one
    token, `m` (output_1) or `M` (output_2). The package reads that token's log-probabilities; a
    generation judge has none, so the judge decodes that one token greedily, which gives the binarised
    decision of `alpaca_eval_clf_gpt4_turbo` (`is_binarize: true`) whenever the top token is `m` or `M`.
    Chosen as default because a one-token answer is what a generation judge (and a small offline one)
    can give reliably.
  * `alpaca_eval_gpt4`: AlpacaEval 1.0's generation annotator (`alpaca_eval.txt`, a ranking written as a
    Python list, its `max_tokens` and greedy decoding, the package's `ranking_parser`).
  The filled prompt (`alpaca_eval.utils.make_prompts`) is split into chat messages with
  `alpaca_eval.utils.prompt_to_chatml`, as the package does for chat APIs.
- Judge (`EvalConfig.judge_model`): a model spec (default the built-in SmolLM2, offline) or an
  OpenAI-compatible endpoint `http(s)://host/v1#model`, sent through the committee recipe's endpoint
  client (`recipes._reconstruct.EndpointBackend`, cached the same way).
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
from harness.evaluation.domain import seeded_subset
from harness.generation import GenerationBackend, Sampling
from harness.hashing import hash_file, hash_json
from harness.results import BenchmarkResult, ExampleResult, Score

log = logging.getLogger("harness.evaluation")

INSTRUCTIONS_FILE = Path("eval/alpaca_eval/instructions.jsonl")
REFERENCES = {"text_davinci_003": Path("eval/alpaca_eval/reference_text_davinci_003.json"),
              "gpt4_1106_preview": Path("eval/alpaca_eval/reference_gpt4_1106_preview.json")}
HUB_ID = "tatsu-lab/alpaca_eval"
DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_ANNOTATOR = "alpaca_eval_clf_gpt4_turbo"
SWITCH_COLUMN = "is_switched_outputs"  # the pairwise annotator's switch column; part of the order seed
ORDER_SEED = 0  # the package's annotator seed default
LC_GLM = "length_controlled_minimal"
LC_OFFICIAL_GLM = "length_controlled_v1"
LC_SPLITS = 5
LC_MIN_FOR_CV = 2 * LC_SPLITS


@dataclass(frozen=True)
class Annotator:
    """One of the package's annotator configs, as a generation judge uses it."""

    name: str
    template: str  # the prompt file's text
    template_file: str  # relative to alpaca_eval/evaluators_configs
    max_new_tokens: int
    parser: str  # the package's fn_completion_parser

    def parse(self, completion: str) -> float:
        """The package's preference (1: output_1 shown first wins, 2: output_2) or NaN when unparseable."""
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
        # logprob_parser's tokens (numerator "m" = output_1, denominators "m", "M"), read from the answer text
        return {"m": 1.0, "M": 2.0}.get(text, float("nan"))


ANNOTATORS = ("alpaca_eval_clf_gpt4_turbo", "alpaca_eval_gpt4")


def package_dir() -> Path:
    spec = importlib.util.find_spec("alpaca_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("alpaca_eval benchmark: the alpaca-eval package is missing: pip install alpaca-eval")
    return Path(next(iter(spec.submodule_search_locations)))


def load_annotator(name: str) -> Annotator:
    """The annotator config `name` from the installed package (its configs.yaml and prompt file)."""
    if name not in ANNOTATORS:
        raise ConfigError(f"alpaca_annotator: unknown annotator {name!r}; choose one of {', '.join(ANNOTATORS)}")
    configs = package_dir() / "evaluators_configs"
    config = yaml.safe_load((configs / name / "configs.yaml").read_text(encoding="utf-8"))[name]
    template_file = config["prompt_template"]
    return Annotator(name=name, template=(configs / template_file).read_text(encoding="utf-8"),
                     template_file=template_file, max_new_tokens=int(config["completions_kwargs"]["max_tokens"]),
                     parser=config["fn_completion_parser"])


def reference_file(data_dir: Path | None, reference: str) -> Path:
    if reference not in REFERENCES:
        raise DataError(f"alpaca_eval: unknown reference {reference!r}; choose one of {', '.join(REFERENCES)}")
    if data_dir is None:
        raise DataError(f"alpaca_eval: reads the data mirror ({REFERENCES[reference]}; Hub equivalent {HUB_ID}): "
                        "pass --data-dir or set FORGETBENCH_DATA_DIR")
    path = Path(data_dir) / REFERENCES[reference]
    if not path.is_file():
        raise DataError(f"alpaca_eval: data file {path} not found: put it there (--data-dir or FORGETBENCH_DATA_DIR); "
                        f"Hub equivalent {HUB_ID}")
    return path


# ---------------------------------------------------------------- judges

def is_endpoint(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def judge_identity(spec: str) -> dict[str, Any]:
    """What identifies a judge in the evaluation hash and the settings: a model's content hash, or an
    endpoint's URL and model name."""
    if is_endpoint(spec):
        url, _, model_name = spec.partition("#")
        return {"judge_endpoint": url, "judge_endpoint_model": model_name or None, "judge_sha": None}
    from harness.models import resolve_model

    return {"judge_sha": resolve_model(spec).sha}


class EndpointJudge:
    """An OpenAI-compatible endpoint as the judge, through the committee's endpoint client."""

    def __init__(self, spec: str):
        from recipes._reconstruct import EndpointBackend

        self.spec = spec
        self.client = EndpointBackend(spec)

    def chat(self, conversations, sampling: Sampling, desc: str = "") -> list[str]:
        try:
            return self.client.chat(conversations, sampling, desc)
        except DataError as exc:  # the client names a committee member; name the judge instead
            raise DataError(f"alpaca_eval judge {self.client.url}: {str(exc).split(': ', 1)[-1]}") from None


def make_judge(spec: str, model_backend: GenerationBackend):
    """The judge for `spec`: an endpoint, the model's own backend when it is the same model, or a local
    backend of the same kind as the model's."""
    if is_endpoint(spec):
        return EndpointJudge(spec)
    from harness.generation import make_backend
    from harness.models import resolve_model

    judge_model = resolve_model(spec)
    if judge_model.sha == model_backend.model.sha:
        return model_backend
    return make_backend(model_backend.name, judge_model, batch_size=model_backend.batch_size)


def _judge_settings(judge) -> dict[str, Any]:
    if isinstance(judge, EndpointJudge):
        return {"judge_model": judge.spec, **judge_identity(judge.spec)}
    return {"judge_model": judge.model.spec, "judge_sha": judge.model.sha}


# ---------------------------------------------------------------- evaluation

def evaluate_alpaca_eval(backend: GenerationBackend, judge, *, data_dir: Path | None, reference: str,
                         limit: int | None, subset_seed: int, max_new_tokens: int | None = None,
                         annotator: str = DEFAULT_ANNOTATOR) -> BenchmarkResult:
    import pandas as pd
    from alpaca_eval.utils import make_prompts, prompt_to_chatml, random_seeded_choice

    chosen_annotator = load_annotator(annotator)
    path = reference_file(data_dir, reference)
    rows = json.loads(path.read_text(encoding="utf-8"))
    items = seeded_subset([(str(i), row) for i, row in enumerate(rows)], limit, subset_seed)
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
    judge_sampling = Sampling(max_new_tokens=chosen_annotator.max_new_tokens)  # greedy
    verdicts = judge.chat([prompt_to_chatml(p) for p in prompts], judge_sampling, desc="alpaca_eval judge")

    preferences = []
    for verdict, switch in zip(verdicts, switched):
        shown_preference = chosen_annotator.parse(verdict)
        preferences.append(3 - shown_preference if switch else shown_preference)  # the package's switch-back
    pairs["preference"] = preferences
    examples = [ExampleResult(example_id=f"alpaca_eval/{i}", metric="win", value=p - 1.0, prediction=answer,
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
                  "annotator_parser": chosen_annotator.parser, "judge_max_new_tokens": judge_sampling.max_new_tokens,
                  "judge_decoding": "greedy", "order_seed": ORDER_SEED,
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
