"""The one way forgetbench runs an lm-eval task: every lm-eval-backed benchmark (IFEval, MMLU-Pro, GPQA,
MATH-L5, the small-model general suite, `lm_eval:<task>`) goes through these steps.

1. The task: lm-eval's own stock task YAML. Where only the data source changes (the local mirror),
   `local_task_yaml` writes a small YAML that `include:`s the stock one and overrides the data keys;
   it lives in the cache, named by its content hash, and only it is indexed (fast).
2. The subset: `draw_subset` draws `limit` documents by `random.Random(subset_seed)` over the task's
   document keys (harness.subsets.paired_subset), so every model sees the same documents.
3. The run: `run_tasks` calls lm-eval's `simple_evaluate` once for one or several tasks with the
   chosen documents (`samples=`), the model as an lm-eval LM (the harness's `forgetbench` model over
   the shared generation backend, or any lm-eval LM in tests) and the chat-template setting.
4. The result: `task_result` turns lm-eval's aggregate metrics into Scores and its logged samples
   into per-example results.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from harness.benchmark import SCORING_VERSION, Benchmark, BenchmarkParams
from harness.errors import DataError
from harness.hashing import hash_file, hash_json, short
from harness.paths import cache_dir, ensure_text
from harness.results import BenchmarkResult, ExampleResult, Score
from harness.subsets import paired_subset

log = logging.getLogger("harness.evaluation")

# Which lm-eval LM `BenchmarkContext.lm()` builds; part of every lm-eval result's cache key, so results
# scored through one LM implementation are never reused for another. Change it with that seam.
LM_EVAL_MODEL = "forgetbench (harness.evaluation.lm_model over the harness generation backend)"
_IDENTITY_FILTER = "none"  # lm-eval's name for a task's only (identity) filter


class LmEvalBenchmark(Benchmark):
    """Base of the benchmarks scored by lm-eval: their scoring code is lm-eval's release and the LM
    implementation the context builds."""

    def scoring_code(self) -> dict[str, Any]:
        return {"lm_eval": version("lm_eval"), "lm": LM_EVAL_MODEL, "harness_scoring": SCORING_VERSION}


class LoglikelihoodParams(BenchmarkParams):
    """Parameters of a benchmark scored by log-likelihood: nothing is generated, so a budget (e.g. the
    `--max-new-tokens` that `forgetbench eval` gives every benchmark) is ignored and not part of its key."""

    max_new_tokens: None = Field(None, description="not used: scored by log-likelihood (a value given is ignored)")

    @field_validator("max_new_tokens", mode="before")
    @classmethod
    def _ignored(cls, value: Any) -> None:
        return None


@contextlib.contextmanager
def quiet_lm_eval(level: int = logging.WARNING):
    """Hold lm-eval's and transformers' INFO chatter back to warnings (or `level`) for the duration."""
    loggers = [logging.getLogger(name) for name in ("lm_eval", "transformers", "datasets")]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous):
            logger.setLevel(level)


def stock_yaml(relative: str) -> Path:
    """A task YAML of lm-eval's own release, `relative` to `lm_eval/tasks/`."""
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent / relative


def local_task_yaml(folder_name: str, file_name: str, body: dict[str, Any], shim: str | None = None,
                    functions: dict[str, str] | None = None) -> Path:
    """Write (once, content-addressed in the cache) a task YAML holding `body`, usually `include:` of a
    stock YAML plus the data keys it overrides. `shim`, when given, is a Python module `data_shim.py`
    beside it; `functions` maps body keys to `!function data_shim.NAME` references into it."""
    import yaml

    markers = {key: f"__FUNCTION_{key.upper()}__" for key in (functions or {})}
    text = yaml.safe_dump({**body, **markers}, sort_keys=False)
    for key, marker in markers.items():
        text = text.replace(marker, f"!function data_shim.{functions[key]}")
    folder = cache_dir() / "lm_eval_tasks" / f"{folder_name}-{short(hash_json([text, shim]))}"
    if shim is not None:
        ensure_text(folder / "data_shim.py", shim)
    target = folder / file_name
    ensure_text(target, text)
    return target


def load_lm(model, batch_size: int | None = None, backend: Any = "transformers"):
    """lm-eval's `forgetbench` model (`harness.evaluation.lm_model`) for `model`: over `backend` itself
    when it is a `GenerationBackend` (its model load and cache shared with everything else using it;
    `model` and `batch_size` are then unused), else over a new backend of that name (`transformers`,
    `vllm`, `vllm-lora`; `batch_size` caps its batches, None: memory decides)."""
    from harness.evaluation.lm_model import lm_for
    from harness.generation import GenerationBackend, make_backend

    if isinstance(backend, GenerationBackend):
        return lm_for(backend)
    return lm_for(make_backend(backend, model, batch_size=batch_size))


def keep_docs(task):
    """`task` with its evaluation documents processed once: lm-eval runs a task's `process_docs` on
    every `test_docs()` / `validation_docs()` call (eight per evaluation; HellaSwag's over 10,042
    documents cost ~1.7 s each). The same documents, in the same order. Returns `task`."""
    for split in ("test_docs", "validation_docs"):
        if getattr(task, f"has_{split}")() and split not in vars(task):
            docs = getattr(task, split)()
            setattr(task, split, lambda docs=docs: docs)
            break
    return task


def draw_subset(docs, limit: int | None, subset_seed: int, key: Callable[[dict], str] | None = None
                ) -> tuple[list[int], list]:
    """The positions of `limit` documents drawn by `subset_seed` over their keys (positions without
    `key`), and every document's key."""
    keys = [key(doc) for doc in docs] if key is not None else list(range(len(docs)))
    return paired_subset(range(len(keys)), limit, subset_seed, keys=keys if key is not None else None), keys


def run_tasks(lm, manager, tasks: dict[str, Any], chosen: dict[str, list[int]], sizes: dict[str, int], *,
              chat_template: bool) -> dict[str, Any]:
    """lm-eval's `simple_evaluate` over `tasks` (name -> loaded Task) on the `chosen` documents of each
    (a task whose every one of its `sizes` documents is chosen runs whole), samples logged."""
    import lm_eval.evaluator

    with quiet_lm_eval(), _without_git_probe(lm_eval.evaluator):
        samples = {name: indices for name, indices in chosen.items() if len(indices) < sizes[name]}
        return lm_eval.evaluator.simple_evaluate(model=lm, tasks=list(tasks.values()), task_manager=manager,
                                                 samples=samples or None, apply_chat_template=chat_template,
                                                 log_samples=True)


@contextlib.contextmanager
def _without_git_probe(evaluator):
    """lm-eval asks `git describe` for the working directory's commit on every evaluation and lets git
    print `fatal: not a git repository` outside a checkout; the harness records its own provenance, so
    that probe is skipped for the duration (its result, `git_hash`, is never read)."""
    probe = evaluator.get_git_commit_hash
    evaluator.get_git_commit_hash = lambda: None
    try:
        yield
    finally:
        evaluator.get_git_commit_hash = probe


def set_generation_budget(task, max_gen_toks: int | None) -> None:
    if max_gen_toks is not None:
        task.set_config(key="generation_kwargs", value={"max_gen_toks": max_gen_toks}, update=True)


def generation_settings(lm: Any) -> dict[str, Any]:
    """What an lm-eval benchmark's generations depended on, for its result's settings: the lm-eval model
    and, for the harness's own (`forgetbench`), the generation backend. Batch sizes are not recorded:
    they do not change what greedy decoding produces."""
    backend = getattr(lm, "backend", None)
    return {"lm_eval_model": "forgetbench" if backend is not None else type(lm).__name__,
            "generation_backend": getattr(backend, "name", None)}


def lm_eval_stderr(value: Any) -> float | None:
    """lm-eval writes "N/A" where it has no standard error (its instruction-level aggregation)."""
    return float(value) if isinstance(value, (int, float)) else None


def metric_label(key: str) -> tuple[str, str]:
    """lm-eval's result key `metric,filter` -> (the Score's metric name, the filter)."""
    metric, _, filter_name = key.partition(",")
    return (metric if filter_name in ("", _IDENTITY_FILTER) else f"{metric},{filter_name}"), filter_name


def prediction(sample: dict, generative: bool) -> str:
    """What the model answered: the generated text, or the choice with the highest log-likelihood."""
    if generative:
        return str(sample["filtered_resps"][0])
    scores = [float(r[0]) if isinstance(r, (list, tuple)) else float(r) for r in sample["filtered_resps"]]
    choices = sample.get("arguments") or []
    best = max(range(len(scores)), key=scores.__getitem__) if scores else -1
    try:
        return str(choices[best][1]).strip() if best >= 0 else ""
    except (IndexError, KeyError, TypeError):
        return str(best)


def _per_doc(value: Any) -> float | None:
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return sum(value) / len(value)
    return float(value) if isinstance(value, (int, float)) else None  # corpus-level metrics have no per-doc value


def task_result(label: str, task_name: str, output: dict[str, Any], *, primary: str, generative: bool,
                metrics: tuple[str, ...] | None = None, chosen: list[int] | None = None,
                key: Callable[[dict], Any] | None = None, keys: list | None = None,
                target: Callable[[dict], str] | None = None) -> BenchmarkResult:
    """One task's lm-eval output as a BenchmarkResult.

    Scores: `metrics` (identity filter) in that order when given, else every numeric metric lm-eval
    reported, `primary` (under its first filter) first. Examples: one per logged sample and metric, id
    the document's key (`keys`, drawn by `key`, as `draw_subset` gives them) or else its position, target
    `target(sample)` or lm-eval's; a logged document that is not among `chosen` (or whose `key` is not
    the one drawn) is an error."""
    numbers = output["results"][task_name]
    n = output["n-samples"][task_name]["effective"]
    if metrics is not None:
        scores = [Score(metric=m, value=float(numbers[f"{m},{_IDENTITY_FILTER}"]),
                        stderr=lm_eval_stderr(numbers.get(f"{m}_stderr,{_IDENTITY_FILTER}")), n=n) for m in metrics]
    else:
        scores = []
        for result_key, value in numbers.items():
            metric, filter_name = metric_label(result_key)
            if not filter_name or "_stderr" in result_key or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            stderr = numbers.get(f"{result_key.partition(',')[0]}_stderr,{filter_name}")
            scores.append(Score(metric=metric, value=float(value), stderr=lm_eval_stderr(stderr), n=n))
        if not scores:
            raise DataError(f"{label}: lm-eval reported no numeric metric")
    primary_metric = next((s.metric for s in scores if s.metric.partition(",")[0] == primary), scores[0].metric)
    wanted = set(chosen) if chosen is not None else None
    examples = []
    for sample in sorted(output["samples"][task_name], key=lambda s: (s["doc_id"], s.get("filter", ""))):
        doc_id = sample["doc_id"]
        if (wanted is not None and doc_id not in wanted) or (key is not None and key(sample["doc"]) != keys[doc_id]):
            raise RuntimeError(f"lm-eval logged doc {doc_id}: not a requested {label} document")
        identity = str(keys[doc_id]) if keys is not None else str(doc_id)
        filter_name = sample.get("filter", _IDENTITY_FILTER)
        for name in metrics if metrics is not None else sample.get("metrics", []):
            value = _per_doc(sample.get(name))
            if value is None:
                continue
            examples.append(ExampleResult(example_id=identity, metric=metric_label(f"{name},{filter_name}")[0],
                                          value=value, prediction=prediction(sample, generative),
                                          target=target(sample) if target else str(sample.get("target", ""))))
    scores.sort(key=lambda s: s.metric != primary_metric)
    return BenchmarkResult(benchmark=label, primary_metric=primary_metric, scores=scores, examples=examples)


def folder_hashes(folder: Path) -> str:
    """One hash of every file under `folder` (relative path -> content hash; caches skipped)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return hash_json({str(p.relative_to(folder)): hash_file(p) for p in files})
