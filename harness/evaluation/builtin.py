"""The built-in benchmarks, registered in forgetbench's own pyproject.toml under the entry-point
group `forgetbench.benchmarks` exactly as a third-party package registers its own.

Each class holds its settings (typed Params with the paper's or the leaderboard's defaults), where it
appears in views (`group`, `leaderboard`, `column_order`), its data checks and fingerprint; the
evaluation itself is in the evaluator module it calls (light to import: lm-eval, torch and the
models load only when a benchmark runs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, StrictBool

from harness.benchmark import SCORING_VERSION, Benchmark, BenchmarkContext, BenchmarkParams, LeaderboardNorm
from harness.data import DataSource, locate, source_hash
from harness.errors import ConfigError, DataError
from harness.evaluation import alpaca_eval, general_suite, ifeval, leaderboard_tasks, safety
from harness.evaluation.lm_eval_runner import LmEvalBenchmark, LoglikelihoodParams
from harness.hashing import hash_file, hash_json

# The Open LLM Leaderboard's IFEval budget: lm-eval tasks/leaderboard/ifeval/ifeval.yaml, max_gen_toks: 1280.
IFEVAL_MAX_NEW_TOKENS = 1280


def _lm_eval_fingerprint(benchmark: str, data_dir: Path | None, gpqa_subset: str = "leaderboard") -> dict[str, str]:
    """`data`: the mirror files' hashes (a missing one is a DataError naming it), or for the Hub its id and
    the task's setup; `tasks`: the lm-eval tasks run and what the harness overrides in them."""
    specs = leaderboard_tasks.specs_for(benchmark, gpqa_subset, data_dir)
    hashes = []
    for spec in specs:
        path = leaderboard_tasks.data_file(spec, data_dir)
        hashes.append(hash_file(path) if path is not None else
                      hash_json({"hub": spec.hub_id, "task": spec.task, "overrides": spec.overrides,
                                 "fewshot": "task default"}))
    tasks = [[spec.task, spec.builtin, spec.overrides, spec.local_overrides if data_dir else None] for spec in specs]
    return {"data": hashes[0] if len(hashes) == 1 else hash_json(hashes), "tasks": hash_json(tasks)}


class _LeaderboardTaskSet(LmEvalBenchmark):
    """A built-in benchmark of lm-eval's leaderboard tasks (`harness.evaluation.leaderboard_tasks`), named by
    `task_set`; `task_options` are the settings it passes on (GPQA's subset, MATH's budget). It runs on
    the model's shared lm-eval LM, which decides the generation backend and its batching."""

    task_set: ClassVar[str]

    def task_options(self) -> dict[str, Any]:
        return {}

    def fingerprint(self, ctx: BenchmarkContext) -> dict[str, Any]:
        return _lm_eval_fingerprint(self.task_set, ctx.data_dir, self.task_options().get("gpqa_subset", "leaderboard"))

    def evaluate(self, ctx: BenchmarkContext):
        return leaderboard_tasks.evaluate_benchmark(self.task_set, ctx.model, data_dir=ctx.data_dir, limit=self.params.limit,
                                               subset_seed=ctx.subset_seed, lm=ctx.lm(), **self.task_options())


class MmluPro(_LeaderboardTaskSet):
    """MMLU-Pro through lm-eval's `leaderboard_mmlu_pro` (10-way log-likelihood, `acc`). From the Hub
    5-shot as on the Open LLM Leaderboard; 0-shot on the mirror, which has no validation split to draw
    the shots from (recorded as `fewshot_note`, shown in the paper view's `lb_notes`)."""

    Params = LoglikelihoodParams
    group = "general"
    leaderboard = LeaderboardNorm(("acc",), 1 / 10)  # 10 choices
    column_order = 10
    data_sources = ("mirror eval/mmlu_pro/test.jsonl", "Hub TIGER-Lab/MMLU-Pro")
    task_set = "mmlu_pro"

    @classmethod
    def departure(cls, settings: dict[str, Any]) -> str | None:
        if settings.get("num_fewshot") == 0:
            return f"mmlu_pro: 0-shot ({settings.get('fewshot_note') or 'leaderboard: 5-shot'})"
        return None


class GpqaParams(LoglikelihoodParams):
    subset: Literal["leaderboard", "diamond", "main", "extended"] = Field(
        "leaderboard", description="GPQA set: leaderboard = the Open LLM Leaderboard's three subsets combined, as "
                                   "many as the data source has (the mirror: diamond; the Hub: all three); or one")


class Gpqa(_LeaderboardTaskSet):
    """GPQA through lm-eval's `leaderboard_gpqa_*` tasks (4-way log-likelihood over shuffled choices,
    `acc_norm`, 0-shot). `subset: leaderboard` pools the subsets the data source has as lm-eval's
    `leaderboard_gpqa` group does (weighted by size); the settings name those that went in."""

    Params = GpqaParams
    group = "general"
    leaderboard = LeaderboardNorm(("acc_norm",), 1 / 4)  # 4 choices
    column_order = 20
    data_sources = ("mirror eval/gpqa/gpqa_diamond.zip (diamond, decrypted in memory)", "Hub Idavidrein/gpqa (gated)")
    task_set = "gpqa"

    def task_options(self) -> dict[str, Any]:
        return {"gpqa_subset": self.params.subset}

    def check_data(self, ctx: BenchmarkContext) -> None:
        self.fingerprint(ctx)
        if ctx.data_dir is not None and "diamond" in leaderboard_tasks.gpqa_subsets(self.params.subset, ctx.data_dir):
            # a wrong password or a broken zip fails here, before any model work
            leaderboard_tasks.gpqa_diamond_in_memory(str(Path(ctx.data_dir) / leaderboard_tasks.GPQA_ZIP))

    @classmethod
    def departure(cls, settings: dict[str, Any]) -> str | None:
        subsets = settings.get("subsets") or ([settings["task"].rsplit("_", 1)[-1]] if settings.get("task") else [])
        return f"gpqa: {'+'.join(subsets) or 'unknown subsets'}"


class MathL5Params(BenchmarkParams):
    max_new_tokens: int = Field(leaderboard_tasks.MATH_L5.default_max_new_tokens, gt=0,
                                description="generation budget (max_gen_toks)")


class MathL5(_LeaderboardTaskSet):
    """MATH Level 5 through lm-eval's seven `leaderboard_math_*_hard` subjects as one task: 4-shot from its
    fixed samples, greedy, `until: ["Problem:"]`, scored by its `process_results` (`exact_match`)."""

    Params = MathL5Params
    group = "general"
    leaderboard = LeaderboardNorm(("exact_match",), 0.0)  # generative
    column_order = 40
    data_sources = ("mirror eval/math/test.jsonl", "Hub DigitalLearningGmbH/MATH-lighteval")
    task_set = "math_l5"

    def task_options(self) -> dict[str, Any]:
        return {"max_new_tokens": self.params.max_new_tokens}


class GeneralSuiteParams(LoglikelihoodParams):
    chat_template: StrictBool = Field(False, description="apply the model's chat template to each context (off: as "
                                                         "lm-eval's CLI and the model card score these)")


class _SmallModelSuiteTask(LmEvalBenchmark):
    """A benchmark of the small-model general suite (harness.evaluation.general_suite): lm-eval's stock
    task, only its data source swapped for the mirror offline."""

    Params = GeneralSuiteParams
    group = "general"
    suite_task: ClassVar[str]

    def options(self) -> dict[str, Any]:
        return {}

    def fingerprint(self, ctx: BenchmarkContext) -> dict[str, Any]:
        spec = general_suite.SUITE[self.suite_task]
        return {"tasks": hash_json(general_suite.task_names(self.suite_task, **self.options())),
                **general_suite.data_fingerprint(spec, ctx.data_dir)}

    def evaluate(self, ctx: BenchmarkContext):
        return general_suite.evaluate_suite_task(general_suite.SUITE[self.suite_task], ctx.lm(), data_dir=ctx.data_dir,
                                                 limit=self.params.limit, subset_seed=ctx.subset_seed,
                                                 chat_template=self.params.chat_template, **self.options())

    @classmethod
    def departure(cls, settings: dict[str, Any]) -> str | None:
        notes = [settings.get("data_note")] + ([f"{cls.suite_task}: chat template"] if settings.get("chat_template") else [])
        return "; ".join(n for n in notes if n) or None


class ArcEasy(_SmallModelSuiteTask):
    """ARC-Easy (test) through lm-eval's stock `arc_easy` (`Question: ... Answer:`, log-likelihood of
    each choice's text), primary `acc_norm`."""

    leaderboard = LeaderboardNorm(("acc_norm",), 1 / 4, suite="small", clip=False)
    column_order = 110
    data_sources = ("mirror eval/arc_easy/ARC-Easy-Test.jsonl", "Hub allenai/ai2_arc (ARC-Easy)")
    suite_task = "arc_easy"


class ArcChallenge(_SmallModelSuiteTask):
    """ARC-Challenge (test) through lm-eval's stock `arc_challenge`, primary `acc_norm`."""

    leaderboard = LeaderboardNorm(("acc_norm",), 1 / 4, suite="small", clip=False)
    column_order = 120
    data_sources = ("mirror eval/arc_challenge/ARC-Challenge-Test.jsonl", "Hub allenai/ai2_arc (ARC-Challenge)")
    suite_task = "arc_challenge"


class Hellaswag(_SmallModelSuiteTask):
    """HellaSwag (validation) through lm-eval's stock `hellaswag` (its own `process_docs`), primary
    `acc_norm`. Offline from the mirror's derived llama.cpp text form, which departs from the Hub's
    (wikiHow markup stripped, `ctx_b` not capitalised): noted in `lb_notes`."""

    leaderboard = LeaderboardNorm(("acc_norm",), 1 / 4, suite="small", clip=False)
    column_order = 130
    data_sources = ("mirror eval/hellaswag/hellaswag_val_full.txt.bz2 (derived text form)", "Hub Rowan/hellaswag")
    suite_task = "hellaswag"


class Piqa(_SmallModelSuiteTask):
    """PIQA (validation) through lm-eval's stock `piqa`, primary `acc_norm`."""

    leaderboard = LeaderboardNorm(("acc_norm",), 1 / 2, suite="small", clip=False)
    column_order = 140
    data_sources = ("mirror eval/piqa/valid.jsonl + valid-labels.lst", "Hub baber/piqa")
    suite_task = "piqa"


class Winogrande(_SmallModelSuiteTask):
    """WinoGrande 1.1 (dev = winogrande_xl validation) through lm-eval's stock `winogrande` (partial
    scoring: the sentence's end after each filled-in option), primary `acc`."""

    leaderboard = LeaderboardNorm(("acc",), 1 / 2, suite="small", clip=False)
    column_order = 150
    data_sources = ("mirror eval/winogrande/dev.jsonl", "Hub allenai/winogrande (winogrande_xl)")
    suite_task = "winogrande"


class Boolq(_SmallModelSuiteTask):
    """BoolQ (dev = validation) through lm-eval's stock `boolq` (super_glue: "no"/"yes"), primary `acc`."""

    leaderboard = LeaderboardNorm(("acc",), 1 / 2, suite="small", clip=False)
    column_order = 160
    data_sources = ("mirror eval/boolq/dev.jsonl", "Hub aps/super_glue (boolq)")
    suite_task = "boolq"


class MmluParams(GeneralSuiteParams):
    form: Literal["continuation", "letter"] = Field(
        "continuation", description="continuation = lm-eval's cloze form `mmlu_continuation` (each answer's text, as "
                                    "small models are measured); letter = `mmlu` (A/B/C/D after the listed choices)")


class Mmlu(_SmallModelSuiteTask):
    """MMLU (test, 57 subjects) through lm-eval's stock per-subject tasks, pooled over every drawn
    question as lm-eval's `mmlu` group aggregates; cloze form by default; primary `acc`; 0-shot."""

    Params = MmluParams
    leaderboard = LeaderboardNorm(("acc",), 1 / 4, suite="small", clip=False)
    column_order = 170
    data_sources = ("mirror eval/mmlu/test/*_test.csv (+ dev/ for shots)", "Hub cais/mmlu")
    suite_task = "mmlu"

    def options(self) -> dict[str, Any]:
        return {"mmlu_form": self.params.form}


# Only located and hashed here (lm-eval reads the file itself), so no row adapter is needed.
IFEVAL_SOURCE = DataSource("ifeval", adapter=None, local_path=str(ifeval.DATA_FILE), hub_id=ifeval.HUB_ID)  # type: ignore[arg-type]


class IFEvalParams(BenchmarkParams):
    max_new_tokens: int = Field(IFEVAL_MAX_NEW_TOKENS, gt=0,
                                description="generation budget (the Open LLM Leaderboard's 1280)")


class IFEval(LmEvalBenchmark):
    """IFEval through lm-eval's own `ifeval` task and instruction checkers: greedy, chat template, the
    leaderboard's 1280-token budget. Leaderboard score: the mean of prompt- and instruction-level
    strict accuracy."""

    Params = IFEvalParams
    group = "general"
    leaderboard = LeaderboardNorm(("prompt_level_strict_acc", "inst_level_strict_acc"), 0.0)
    column_order = 30
    data_sources = ("mirror eval/ifeval/input_data.jsonl", "Hub google/IFEval")

    def fingerprint(self, ctx: BenchmarkContext) -> dict[str, Any]:
        locate(IFEVAL_SOURCE, ctx.data_dir)  # a mirror without the file: DataError naming it
        return {"data": source_hash(IFEVAL_SOURCE, ctx.data_dir)}

    def evaluate(self, ctx: BenchmarkContext):
        return ifeval.evaluate_ifeval(ctx.model, data_dir=ctx.data_dir, limit=self.params.limit, subset_seed=ctx.subset_seed,
                               max_new_tokens=self.params.max_new_tokens, lm=ctx.lm())


class SafetyParams(BenchmarkParams):
    max_new_tokens: int = Field(safety.DEFAULT_MAX_NEW_TOKENS, gt=0, description="generation budget (sail-sg/sdft's 512)")
    keywords: Literal["sail-sg", "extended"] = Field(
        "sail-sg", description="refusal keywords: sail-sg/sdft's 29 (the SDFT paper's) or forgetbench's extended list")
    decoding: Literal["paper", "greedy"] = Field(
        "paper", description="paper = sampled, temperature 0.95, top_p 0.7, top_k 50 (sail-sg/sdft); greedy")


class SafetyRaw(Benchmark):
    """AdvBench harmful behaviours answered as asked; safe rate = share of responses holding a refusal
    keyword (sail-sg/sdft's list), generated with the SDFT paper's sampled decoding."""

    Params = SafetyParams
    group = "side"
    column_order = 10
    jailbreak: ClassVar[bool] = False
    data_sources = ("mirror eval/advbench/harmful_behaviors.csv", "Hub walledai/AdvBench")

    def fingerprint(self, ctx: BenchmarkContext) -> dict[str, Any]:
        return safety.check_safety_data(ctx.data_dir, self.jailbreak)

    def evaluate(self, ctx: BenchmarkContext):
        return safety.evaluate_safety(ctx.generator(), data_dir=ctx.data_dir, jailbreak=self.jailbreak, limit=self.params.limit,
                               subset_seed=ctx.subset_seed, max_new_tokens=self.params.max_new_tokens,
                               keywords=self.params.keywords, decoding=self.params.decoding)


class SafetyJailbreak(SafetyRaw):
    """AdvBench harmful behaviours with the mirror's fixed GCG jailbreak suffix appended; safe rate as
    for safety_raw."""

    column_order = 20
    jailbreak = True
    data_sources = ("mirror eval/advbench/harmful_behaviors.csv + eval/advbench/jailbreak_suffix.txt",)


class AlpacaEvalParams(BenchmarkParams):
    max_new_tokens: int = Field(alpaca_eval.DEFAULT_MAX_NEW_TOKENS, gt=0, description="the model's answer budget")
    judge_model: str = Field("smollm2-135m-instruct", description="judge: a model spec, or an OpenAI-compatible "
                                                                  "endpoint http(s)://host/v1#model")
    annotator: Literal[alpaca_eval.ANNOTATORS] = Field(
        alpaca_eval.DEFAULT_ANNOTATOR, description="alpaca_eval annotator whose prompt and answer reading the "
                                                       "judge uses (the package's own configs and prompt files)")
    reference: Literal[tuple(alpaca_eval.REFERENCES)] = Field(
        "text_davinci_003", description="AlpacaEval reference outputs the model is compared with")


class AlpacaEval(Benchmark):
    """AlpacaEval: a judge's preference between the model's answer and the reference answer, with the
    alpaca_eval package's annotator prompt, order randomisation, win rate and length-controlled GLM."""

    Params = AlpacaEvalParams
    group = "side"
    column_order = 30
    data_sources = ("mirror eval/alpaca_eval/reference_<reference>.json", "Hub tatsu-lab/alpaca_eval")

    def check_data(self, ctx: BenchmarkContext) -> None:
        alpaca_eval.reference_file(ctx.data_dir, self.params.reference)

    def fingerprint(self, ctx: BenchmarkContext) -> dict[str, Any]:
        judge = alpaca_eval.judge_identity(self.params.judge_model)
        return {"reference_sha256": hash_file(alpaca_eval.reference_file(ctx.data_dir, self.params.reference)),
                "judge_sha": judge["judge_sha"] or hash_json(judge),
                "judge_reading": alpaca_eval.judge_reading(self.params.judge_model, self.params.annotator)}

    def scoring_code(self) -> dict[str, Any]:
        from importlib.metadata import version

        # prompts, win-rate code; 2: per-example outcomes recorded under the primary metric `win_rate`
        return {"alpaca_eval": version("alpaca_eval"), "harness_scoring": SCORING_VERSION, "alpaca_examples": 2}

    def evaluate(self, ctx: BenchmarkContext):
        backend = ctx.generator()
        judge = alpaca_eval.make_judge(self.params.judge_model, backend, self.params.annotator)
        return alpaca_eval.evaluate_alpaca_eval(backend, judge, data_dir=ctx.data_dir, reference=self.params.reference,
                                    limit=self.params.limit, subset_seed=ctx.subset_seed,
                                    max_new_tokens=self.params.max_new_tokens, annotator=self.params.annotator)


class DomainParams(BenchmarkParams):
    max_new_tokens: int | None = Field(None, gt=0, description="generation budget; the domain's own if unset")


class DomainTask(Benchmark):
    """The study's domain task: the model answers held-out domain questions (greedy, chat template) and
    the domain's extractor checks each answer against the reference."""

    Params = DomainParams
    group = "domain"
    data_sources = ("the study's domain (its test split)",)

    def check_data(self, ctx: BenchmarkContext) -> None:
        domain = ctx.domain
        if not domain.test_rows(ctx.data_dir):
            path = locate(domain.test, ctx.data_dir)
            raise DataError(f"{path or domain.test.describe()}: domain {domain.name!r} has no test rows to evaluate")

    def fingerprint(self, ctx: BenchmarkContext) -> dict[str, Any]:
        return {**ctx.domain.key(), "test_sha256": source_hash(ctx.domain.test, ctx.data_dir)}

    def evaluate(self, ctx: BenchmarkContext):
        from harness.evaluation.domain import evaluate_domain

        return evaluate_domain(ctx.generator(), ctx.domain, data_dir=ctx.data_dir, limit=self.params.limit,
                               subset_seed=ctx.subset_seed, max_new_tokens=self.params.max_new_tokens)


class DriftParams(BenchmarkParams):
    limit: int | None = Field(128, gt=0, description="prompts scored (a seeded subset of AlpacaEval's 805 "
                                                     "instructions, the same for every model)")
    max_new_tokens: int = Field(64, gt=0, description="length of the seed model's greedy answers")
    reference_model: str | None = Field(None, description="the model whose answers are the reference: the study's "
                                                          "seed model when unset")


class Drift(Benchmark):
    """Drift from the seed model: the evaluated model's mean log-probability per token of the seed
    model's own greedy answers to general prompts (AlpacaEval instructions), one value per prompt, so
    `compare` gives its change a paired CI and p-value. Lower than the seed model's own value: the model
    moved away from it (SDFT's proposed cause of forgetting). Not a forgetting score: group side."""

    Params = DriftParams
    group = "side"
    column_order = 40
    data_sources = ("mirror eval/alpaca_eval/reference_text_davinci_003.json (instructions)",
                    "Hub tatsu-lab/alpaca_eval")

    def reference(self, ctx: BenchmarkContext) -> str:
        spec = self.params.reference_model or ctx.base_model
        if spec is None:
            raise ConfigError("drift: no seed model to compare with; set eval.benchmarks.drift.reference_model")
        return spec

    def check_data(self, ctx: BenchmarkContext) -> None:
        from harness.evaluation.drift import prompts_file

        prompts_file(ctx.data_dir)
        self.reference(ctx)

    def fingerprint(self, ctx: BenchmarkContext) -> dict[str, Any]:
        from harness.evaluation.drift import prompts_file, reference_identity

        return {"prompts_sha256": hash_file(prompts_file(ctx.data_dir)), **reference_identity(self.reference(ctx))}

    def evaluate(self, ctx: BenchmarkContext):
        from harness.evaluation.drift import evaluate_drift
        from harness.generation import make_backend
        from harness.models import resolve_model

        model = ctx.generator()
        reference = resolve_model(self.reference(ctx))
        seed = model if reference.sha == model.model.sha else make_backend(ctx.backend_name, reference,
                                                                            batch_size=ctx.batch_size)
        return evaluate_drift(model, seed, data_dir=ctx.data_dir, limit=self.params.limit, subset_seed=ctx.subset_seed,
                              max_new_tokens=self.params.max_new_tokens)
