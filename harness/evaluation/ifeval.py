"""IFEval through lm-eval's own `ifeval` task and scoring, offline when given the local data mirror.

How it runs:
- Task: lm-eval's built-in `ifeval.yaml` (prompt, generation settings, `process_results` and the
  instruction checkers all stay lm-eval's). For local data a small task YAML `include:`s it and only
  swaps the data set for the mirror's JSONL; it lives in the cache, named by its own content hash.
  Only that one YAML is indexed (`include_defaults=False`), which skips lm-eval's ~15 s task scan.
- Subset: `limit` prompts drawn by `random.Random(subset_seed)` from the sorted IFEval keys, so every
  model sees the same prompts (paired runs). They reach lm-eval through its documented `samples=`
  argument ({task: [doc indices]}), so the data file stays the unmodified mirror file.
- Model: lm-eval's `forgetbench` model over the harness generation backend (`lmeval_tasks.load_lm`;
  float32, CPU or CUDA when present; the same responses as lm-eval's HF model `HFLM`), greedy (the
  task's own settings), the model's chat template applied, `max_gen_toks` set to `max_new_tokens`
  (default 1280, the Open LLM Leaderboard's budget in lm-eval's `leaderboard/ifeval/ifeval.yaml`).
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from harness.errors import DataError, first_line
from harness.evaluation.punkt import ensure_punkt_tab
from harness.generation import GenerationBackend
from harness.hashing import hash_file, hash_json, short
from harness.models import ResolvedModel
from harness.paths import cache_dir, ensure_text, mirror_file
from harness.results import BenchmarkResult, ExampleResult, Score
from harness.subsets import paired_subset

log = logging.getLogger("harness.evaluation")

TASK = "ifeval"
HUB_ID = "google/IFEval"
DATA_FILE = Path("eval/ifeval/input_data.jsonl")
METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")
PRIMARY = METRICS[0]
_FILTER = "none"  # lm-eval's name for the task's only (identity) filter


def evaluate_ifeval(model: ResolvedModel, *, data_dir: Path | None, limit: int | None, subset_seed: int,
                    max_new_tokens: int = 1280, batch_size: int | None = None,
                    backend: str | GenerationBackend = "transformers", lm: Any = None) -> BenchmarkResult:
    """Generate IFEval responses with `model` and score them with lm-eval's IFEval scoring; `backend`
    a backend name or an existing `GenerationBackend` (see `lmeval_tasks.load_lm`), or `lm` an lm-eval
    model instance (for tests)."""
    data_file = _data_file(data_dir)
    ensure_punkt_tab()  # before lm-eval imports its IFEval utilities (they try to download it)
    _seed_langdetect()
    with quiet_lm_eval():
        from lm_eval import __version__ as lm_eval_version
        from lm_eval import simple_evaluate

        started = time.monotonic()
        task_manager, task = _load_task(data_file)
        keys = list(task.eval_docs["key"])
        indices = paired_subset(range(len(keys)), limit, subset_seed, keys=keys)
        task.set_config(key="generation_kwargs", value={"max_gen_toks": max_new_tokens}, update=True)
        log.info("ifeval: %d of %d prompts (%s); loading %s", len(indices), len(task.eval_docs),
                 data_file or HUB_ID, model.label)
        from harness.evaluation.lmeval_tasks import load_lm  # imported here: lmeval_tasks imports this module

        lm = lm if lm is not None else load_lm(model, batch_size, backend)
        log.info("ifeval: generating (max %d new tokens)", max_new_tokens)
        output = simple_evaluate(
            model=lm, tasks=[task], task_manager=task_manager,
            samples=None if len(indices) == len(keys) else {TASK: indices},
            apply_chat_template=True, log_samples=True,
        )
    result = _to_result(output, indices, keys)
    result.settings.update(
        task=TASK, max_new_tokens=max_new_tokens, limit=limit, subset_seed=subset_seed, **generation_settings(lm),
        generation_kwargs=dict(task.config.generation_kwargs or {}),
        data_source=str(data_file) if data_file else f"hub:{HUB_ID}",
        data_sha256=hash_file(data_file) if data_file else None,
        # The mirror file's hash already pins the documents; hash the loaded documents only for the Hub.
        docs_sha256=None if data_file else hash_json(list(task.eval_docs)), lm_eval_version=lm_eval_version,
    )
    log.info("ifeval: %s = %.3f over %d prompts in %.0f s", PRIMARY, result.scores[0].value,
             result.scores[0].n, time.monotonic() - started)
    return result


def _data_file(data_dir: Path | None) -> Path | None:
    """The mirror's IFEval JSONL, None for the Hub; DataError (one line) if the mirror lacks it."""
    path = mirror_file(data_dir, DATA_FILE, "IFEval", hub_id=HUB_ID, hub_fallback=True)
    return None if path is None else path.resolve()


def _load_task(data_file: Path | None):
    """lm-eval's `ifeval` Task, on the local file when given; only this task is indexed (fast)."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    builtin = Path(lm_eval.tasks.__file__).parent / "ifeval" / "ifeval.yaml"
    task_manager = TaskManager(include_defaults=False)
    if data_file is not None:
        return task_manager, task_manager.load([str(_local_task_yaml(builtin, data_file))])["tasks"][TASK]
    try:
        return task_manager, task_manager.load([str(builtin)])["tasks"][TASK]
    except Exception as exc:  # offline, no cache, Hub down: all end the same way for the user
        raise DataError(
            f"IFEval: could not load {HUB_ID} from the Hub ({first_line(exc)}); with no network, point --data-dir "
            f"or FORGETBENCH_DATA_DIR at a data mirror holding {DATA_FILE}"
        ) from None


def _local_task_yaml(builtin: Path, data_file: Path) -> Path:
    """A task YAML that includes the built-in one and reads `data_file` with the `json` loader."""
    import yaml

    text = yaml.safe_dump({"include": str(builtin), "task": TASK, "dataset_path": "json", "dataset_name": None,
                           "dataset_kwargs": {"data_files": {"train": str(data_file)}}}, sort_keys=False)
    path = cache_dir() / "lm_eval_tasks" / f"ifeval-{short(hash_json(text))}" / "ifeval.yaml"
    ensure_text(path, text)
    return path


def _to_result(output: dict[str, Any], indices: list[int], keys: list[int]) -> BenchmarkResult:
    """lm-eval's aggregate scores plus one ExampleResult per logged sample and metric."""
    numbers = output["results"][TASK]
    n = output["n-samples"][TASK]["effective"]
    scores = [Score(metric=m, value=float(numbers[f"{m},{_FILTER}"]),
                    stderr=lm_eval_stderr(numbers.get(f"{m}_stderr,{_FILTER}")), n=n) for m in METRICS]
    examples, wanted = [], set(indices)
    for sample in sorted(output["samples"][TASK], key=lambda s: s["doc_id"]):
        key, response = sample["doc"]["key"], sample["filtered_resps"][0]
        if key != keys[sample["doc_id"]] or sample["doc_id"] not in wanted:
            raise RuntimeError(f"lm-eval logged doc {sample['doc_id']} with key {key}: not a requested prompt")
        for metric in METRICS:
            value = sample[metric]
            value = sum(value) / len(value) if isinstance(value, list) else float(value)
            examples.append(ExampleResult(example_id=str(key), metric=metric, value=value, prediction=response,
                                          target=",".join(sample["doc"]["instruction_id_list"])))
    return BenchmarkResult(benchmark=TASK, primary_metric=PRIMARY, scores=scores, examples=examples)


def _seed_langdetect() -> None:
    """Make langdetect (used by lm-eval's language and all-caps/lowercase checkers) deterministic.

    Unseeded, it draws from OS entropy on every call, so the same response can score differently
    between runs; `DetectorFactory.seed = 0` is langdetect's documented fix.
    """
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0


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


@contextlib.contextmanager
def quiet_lm_eval():
    """Hold lm-eval's and transformers' INFO chatter back to warnings for the duration."""
    loggers = [logging.getLogger(name) for name in ("lm_eval", "transformers", "datasets")]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous):
            logger.setLevel(level)
