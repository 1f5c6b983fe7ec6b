"""MMLU-Pro, GPQA and MATH Level 5 through lm-eval's own Open LLM Leaderboard tasks.

Through the one lm-eval runner (`harness.evaluation.lm_eval_runner`), as IFEval:
- Task: a small local task YAML `include:`s lm-eval's built-in leaderboard YAML (prompt, choices,
  `process_docs`, `process_results`, metrics all stay lm-eval's) and overrides only the data source
  and the few settings listed per benchmark below. It lives in the cache, named by its content hash;
  only that YAML is indexed (`include_defaults=False`).
- Subset: `limit` documents drawn by `random.Random(subset_seed)` from the sorted document keys
  (MMLU-Pro `question_id`, GPQA `Record ID`, MATH a hash of the problem text), passed to lm-eval
  through `samples=`; the data file stays the unmodified mirror file.
- Model: lm-eval's `forgetbench` model over the harness generation backend (`lm_eval_runner.load_lm`; the same
  scores as lm-eval's HF model, one model load and the persistent generation cache shared with the
  other benchmarks), chat template applied; generation settings (MATH) fixed by the task apart from
  `max_gen_toks`, which is configurable and recorded.

Per benchmark:
- mmlu_pro: `leaderboard_mmlu_pro` (10-way log-likelihood, `acc`). From the Hub it runs as the
  leaderboard does: 5-shot, the shots the first five of the validation split. The mirror holds only the
  test split, so there it runs 0-shot, and the result settings say so (`num_fewshot: 0`, `fewshot_note`);
  the paper view carries the note.
- gpqa: `leaderboard_gpqa_{diamond,main,extended}` (4-way log-likelihood over shuffled choices,
  `acc_norm`, 0-shot as on the leaderboard). `subset: leaderboard` (the default) combines the
  subsets as lm-eval's `leaderboard_gpqa` group does (acc_norm averaged weighted by size, i.e. over all
  their documents together) — all three from the Hub, only diamond from the mirror (it has no
  main/extended); `settings.subsets` names those that went in. Diamond from the mirror's password zip: the task YAML names
  `custom_dataset: !function data_shim.load`, a one-line shim next to it that calls
  `harness.evaluation.leaderboard_tasks.gpqa_diamond_in_memory`, which decrypts the CSV with `zipfile` into a
  `datasets.Dataset.from_list` held in memory. Nothing of the questions is written to disk (in-memory
  data sets have no cache files). main/extended come from the Hub (`Idavidrein/gpqa`, gated).
- math_l5: all seven `leaderboard_math_*_hard` subjects as one task over the full test set; lm-eval's own
  `process_docs` keeps `level == "Level 5"` (1,324 problems), 4-shot from its fixed samples, greedy,
  `until: ["Problem:"]`, scored by its `process_results` (`exact_match`, math-verify based).
"""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import DataError, first_line
from harness.evaluation import lm_eval_runner as runner
from harness.generation import GenerationBackend
from harness.hashing import hash_file, hash_json
from harness.models import ResolvedModel
from harness.paths import mirror_file
from harness.results import BenchmarkResult, ExampleResult, Score

log = logging.getLogger("harness.evaluation")

GPQA_ZIP = Path("eval/gpqa/gpqa_diamond.zip")
GPQA_CSV = "gpqa_diamond.csv"
# Published by the GPQA authors with the data so that questions are not crawlable in plain text.
GPQA_PASSWORD = b"deserted-untie-orchid"
MMLU_PRO_FILE = Path("eval/mmlu_pro/test.jsonl")
MATH_FILE = Path("eval/math/test.jsonl")


@dataclass(frozen=True)
class TaskSpec:
    benchmark: str
    task: str  # lm-eval task name
    builtin: str  # YAML relative to lm_eval/tasks/
    metrics: tuple[str, ...]
    hub_id: str
    local_file: Path | None  # relative to the data directory
    overrides: dict[str, Any] = field(default_factory=dict)  # always applied
    local_overrides: dict[str, Any] = field(default_factory=dict)  # only with the mirror
    key: Callable[[dict], str] = lambda doc: str(doc)
    generative: bool = False
    default_max_new_tokens: int | None = None
    local_note: str | None = None  # how the mirror's run departs from the leaderboard's, for the settings


def _problem_key(doc: dict) -> str:
    return hashlib.sha256(doc["problem"].encode()).hexdigest()[:16]


MMLU_PRO = TaskSpec(
    "mmlu_pro", "leaderboard_mmlu_pro", "leaderboard/mmlu_pro/mmlu_pro.yaml", ("acc",), "TIGER-Lab/MMLU-Pro",
    MMLU_PRO_FILE,
    # the leaderboard's 5 shots come from the validation split, which the mirror does not have
    local_overrides={"dataset_path": "json", "dataset_name": None, "num_fewshot": 0, "fewshot_split": None,
                     "fewshot_config": None},
    key=lambda doc: str(doc["question_id"]),
    local_note="the data source has no validation split to draw the leaderboard's 5 shots from",
)
MATH_L5 = TaskSpec(
    "math_l5", "leaderboard_math_l5_hard", "leaderboard/math/_template_yaml", ("exact_match",),
    "DigitalLearningGmbH/MATH-lighteval", MATH_FILE,
    overrides={"dataset_name": "default", "training_split": None},
    local_overrides={"dataset_path": "json", "dataset_name": None},
    key=_problem_key, generative=True, default_max_new_tokens=1024,
)


def gpqa_spec(subset: str) -> TaskSpec:
    return TaskSpec(
        "gpqa", f"leaderboard_gpqa_{subset}", f"leaderboard/gpqa/gpqa_{subset}_zeroshot.yaml", ("acc_norm",),
        "Idavidrein/gpqa", GPQA_ZIP if subset == "diamond" else None,
        key=lambda doc: str(doc.get("Record ID") or hashlib.sha256(doc["Question"].encode()).hexdigest()[:16]),
    )


GPQA_SUBSETS = ("diamond", "extended", "main")  # lm-eval's leaderboard_gpqa group
GPQA_MIRROR_SUBSETS = ("diamond",)  # what the data mirror holds (eval/gpqa/gpqa_diamond.zip)


def gpqa_subsets(choice: str, data_dir: Path | None) -> tuple[str, ...]:
    """The GPQA subsets a `subset` choice evaluates: `leaderboard` is all three the data source has."""
    if choice != "leaderboard":
        return (choice,)
    return GPQA_MIRROR_SUBSETS if data_dir is not None else GPQA_SUBSETS


def specs_for(benchmark: str, gpqa_subset: str = "leaderboard", data_dir: Path | None = None) -> list[TaskSpec]:
    """The lm-eval tasks one benchmark runs (several only for the combined GPQA subsets)."""
    if benchmark == "gpqa":
        return [gpqa_spec(subset) for subset in gpqa_subsets(gpqa_subset, data_dir)]
    return [{"mmlu_pro": MMLU_PRO, "math_l5": MATH_L5}[benchmark]]


def data_file(spec: TaskSpec, data_dir: Path | None) -> Path | None:
    """The mirror file for `spec`, None for the Hub; DataError (one line) naming it when missing."""
    if spec.local_file is None:
        return None
    path = mirror_file(data_dir, spec.local_file, spec.benchmark, hub_id=spec.hub_id, hub_fallback=True)
    return None if path is None else path.resolve()


def gpqa_diamond_in_memory(zip_path: str, **_: Any):
    """GPQA diamond decrypted from the password zip straight into an in-memory `DatasetDict`."""
    import datasets

    try:
        with zipfile.ZipFile(zip_path) as archive:
            raw = archive.read(GPQA_CSV, pwd=GPQA_PASSWORD)
    except (OSError, KeyError, RuntimeError, zipfile.BadZipFile) as exc:
        raise DataError(f"gpqa: cannot read {GPQA_CSV} from {zip_path} ({exc})") from None
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))
    return datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})


def evaluate_lm_eval_task(spec: TaskSpec, model: ResolvedModel, *, data_dir: Path | None, limit: int | None,
                          subset_seed: int, max_new_tokens: int | None = None,
                          batch_size: int | None = None, lm: Any = None,
                          backend: str | GenerationBackend = "transformers") -> BenchmarkResult:
    """Run `spec`'s lm-eval task on `model` (or on `lm`, an lm-eval LM instance, for tests); `backend`
    a backend name or an existing `GenerationBackend` (see `lm_eval_runner.load_lm`)."""
    from lm_eval.tasks import TaskManager

    path = data_file(spec, data_dir)
    started = time.monotonic()
    task_manager = TaskManager(include_defaults=False)
    yaml_path = _task_yaml(spec, path)
    with runner.quiet_lm_eval():
        try:
            task = runner.keep_docs(task_manager.load([str(yaml_path)])["tasks"][spec.task])
        except DataError:
            raise
        except Exception as exc:  # offline / gated / renamed Hub set: one line for the user
            if path is not None:
                raise
            raise DataError(
                f"{spec.benchmark}: could not load {spec.hub_id} from the Hub ({first_line(exc)}); with no network, point "
                f"--data-dir or FORGETBENCH_DATA_DIR at a data mirror holding {spec.local_file}"
            ) from None
    indices, keys = runner.draw_subset(task.eval_docs, limit, subset_seed, key=spec.key)
    gen_tokens = None
    if spec.generative:
        gen_tokens = max_new_tokens or spec.default_max_new_tokens
        runner.set_generation_budget(task, gen_tokens)
    log.info("%s: %d of %d documents (%s); loading %s", spec.benchmark, len(indices), len(keys),
             path or spec.hub_id, model.label if model is not None else type(lm).__name__)
    lm = lm if lm is not None else runner.load_lm(model, batch_size, backend)
    output = runner.run_tasks(lm, task_manager, {spec.task: task}, {spec.task: indices}, {spec.task: len(keys)},
                              chat_template=True)
    result = runner.task_result(spec.benchmark, spec.task, output, primary=spec.metrics[0], generative=spec.generative,
                                metrics=spec.metrics, chosen=indices, key=spec.key, keys=keys)
    config = task.config
    from lm_eval import __version__ as lm_eval_version

    result.settings.update(
        task=spec.task, limit=limit, subset_seed=subset_seed, **runner.generation_settings(lm),
        num_fewshot=config.num_fewshot or 0, output_type=config.output_type, chat_template=True,
        generation_kwargs=dict(config.generation_kwargs or {}) if spec.generative else None,
        max_new_tokens=gen_tokens, data_source=str(path) if path else f"hub:{spec.hub_id}",
        fewshot_note=spec.local_note if path else None,
        data_sha256=hash_file(path) if path else None, docs_sha256=hash_json(keys),
        lm_eval_version=lm_eval_version, seconds=round(time.monotonic() - started, 1),
    )
    primary = result.scores[0]
    log.info("%s: %s = %.3f over %d in %.0f s", spec.benchmark, primary.metric, primary.value, primary.n,
             time.monotonic() - started)
    return result


def evaluate_benchmark(benchmark: str, model: ResolvedModel, *, gpqa_subset: str = "leaderboard",
                       data_dir: Path | None, batch_size: int | None = None,
                       backend: str | GenerationBackend = "transformers", lm: Any = None,
                       **options: Any) -> BenchmarkResult:
    """One benchmark: its task, or for GPQA its subsets (one model load) combined by `combine_subsets`."""
    specs = specs_for(benchmark, gpqa_subset, data_dir)
    if len(specs) == 1:
        result = evaluate_lm_eval_task(specs[0], model, data_dir=data_dir, batch_size=batch_size, backend=backend,
                                       lm=lm, **options)
        if benchmark == "gpqa":
            result.settings["subsets"] = list(gpqa_subsets(gpqa_subset, data_dir))
            result.settings["gpqa_subset"] = gpqa_subset
        return result
    for spec in specs:
        data_file(spec, data_dir)  # a missing file fails before the model loads
    lm = lm if lm is not None else runner.load_lm(model, batch_size, backend)
    parts = {spec.task.rsplit("_", 1)[-1]: evaluate_lm_eval_task(spec, model, data_dir=data_dir, batch_size=batch_size,
                                                                  backend=backend, lm=lm, **options)
             for spec in specs}
    result = combine_subsets(parts)
    result.settings["gpqa_subset"] = gpqa_subset
    return result


def combine_subsets(parts: dict[str, BenchmarkResult]) -> BenchmarkResult:
    """GPQA's leaderboard score from its subsets' results, as lm-eval's `leaderboard_gpqa` group aggregates
    (`weight_by_size: true`): the primary metric averaged over all documents of all subsets (a question in
    two subsets counts twice, as there). Example ids get their subset as prefix; per-subset scores and
    settings are kept in the settings."""
    first = next(iter(parts.values()))
    metric = first.primary_metric
    examples = [ExampleResult(f"{subset}/{e.example_id}", e.metric, e.value, e.prediction, e.target)
                for subset, result in parts.items() for e in result.examples]
    scores = []
    for name in (s.metric for s in first.scores):
        subset_scores = [next(s for s in r.scores if s.metric == name) for r in parts.values()]
        n = sum(s.n for s in subset_scores)
        value = sum(s.value * s.n for s in subset_scores) / n if n else float("nan")
        values = [e.value for e in examples if e.metric == name]
        stderr = (math.sqrt(sum((v - value) ** 2 for v in values) / (len(values) - 1) / len(values))
                  if len(values) > 1 else None)
        scores.append(Score(name, value, stderr, n))
    shared = {k: v for k, v in first.settings.items() if all(r.settings.get(k) == v for r in parts.values())}
    settings = {**shared, "task": "leaderboard_gpqa", "subsets": list(parts),
                "subset_scores": {subset: {s.metric: s.value for s in r.scores} | {"n": r.scores[0].n}
                                  for subset, r in parts.items()},
                "subset_settings": {subset: r.settings for subset, r in parts.items()}}
    return BenchmarkResult(benchmark=first.benchmark, primary_metric=metric, scores=scores, examples=examples,
                           settings=settings)


def _task_yaml(spec: TaskSpec, path: Path | None) -> Path:
    """Local task YAML including the built-in one; data and listed settings overridden."""
    body: dict[str, Any] = {"include": str(runner.stock_yaml(spec.builtin)), "task": spec.task, **spec.overrides}
    if path is not None and spec.benchmark == "gpqa":
        body.update({"dataset_path": "csv", "dataset_name": None, "dataset_kwargs": {"zip_path": str(path)}})
        return runner.local_task_yaml(spec.benchmark, f"{spec.benchmark}.yaml", body, functions={"custom_dataset": "load"},
                                      shim="from harness.evaluation.leaderboard_tasks import gpqa_diamond_in_memory as load\n")
    if path is not None:
        body.update(spec.local_overrides)
        body["dataset_kwargs"] = {"data_files": {"test": str(path)}}
        body["test_split"] = "test"
    return runner.local_task_yaml(spec.benchmark, f"{spec.benchmark}.yaml", body)
