"""IFEval through lm-eval's own `ifeval` task and scoring, offline when given the local data mirror.

How it runs (through the one lm-eval runner, harness.evaluation.lm_eval_runner):
- Task: lm-eval's built-in `ifeval.yaml` (prompt, generation settings, `process_results` and the
  instruction checkers all stay lm-eval's). For local data a small task YAML `include:`s it and only
  swaps the data set for the mirror's JSONL; it lives in the cache, named by its own content hash.
  Only that one YAML is indexed (`include_defaults=False`), which skips lm-eval's ~15 s task scan.
- Subset: `limit` prompts drawn by `random.Random(subset_seed)` from the sorted IFEval keys, so every
  model sees the same prompts (paired runs). They reach lm-eval through its documented `samples=`
  argument ({task: [doc indices]}), so the data file stays the unmodified mirror file.
- Model: lm-eval's `forgetbench` model over the harness generation backend (`lm_eval_runner.load_lm`;
  float32, CPU or CUDA when present; the same responses as lm-eval's HF model `HFLM`), greedy (the
  task's own settings), the model's chat template applied, `max_gen_toks` set to `max_new_tokens`
  (default 1280, the Open LLM Leaderboard's budget in lm-eval's `leaderboard/ifeval/ifeval.yaml`).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from harness.errors import DataError, first_line
from harness.evaluation import lm_eval_runner as runner
from harness.evaluation.punkt import ensure_punkt_tab
from harness.generation import GenerationBackend
from harness.hashing import hash_file, hash_json
from harness.models import ResolvedModel
from harness.paths import mirror_file
from harness.results import BenchmarkResult

log = logging.getLogger("harness.evaluation")

TASK = "ifeval"
HUB_ID = "google/IFEval"
DATA_FILE = Path("eval/ifeval/input_data.jsonl")
METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")
PRIMARY = METRICS[0]


def evaluate_ifeval(model: ResolvedModel, *, data_dir: Path | None, limit: int | None, subset_seed: int,
                    max_new_tokens: int = 1280, batch_size: int | None = None,
                    backend: str | GenerationBackend = "transformers", lm: Any = None) -> BenchmarkResult:
    """Generate IFEval responses with `model` and score them with lm-eval's IFEval scoring; `backend`
    a backend name or an existing `GenerationBackend` (see `lm_eval_runner.load_lm`), or `lm` an lm-eval
    model instance (for tests)."""
    data_file = _data_file(data_dir)
    ensure_punkt_tab()  # before lm-eval imports its IFEval utilities (they try to download it)
    _seed_langdetect()
    started = time.monotonic()
    with runner.quiet_lm_eval():
        task_manager, task = _load_task(data_file)
    indices, keys = runner.draw_subset(task.eval_docs, limit, subset_seed, key=_key)
    runner.set_generation_budget(task, max_new_tokens)
    log.info("ifeval: %d of %d prompts (%s); loading %s", len(indices), len(keys), data_file or HUB_ID, model.label)
    lm = lm if lm is not None else runner.load_lm(model, batch_size, backend)
    log.info("ifeval: generating (max %d new tokens)", max_new_tokens)
    output = runner.run_tasks(lm, task_manager, {TASK: task}, {TASK: indices}, {TASK: len(keys)}, chat_template=True)
    result = runner.task_result(TASK, TASK, output, primary=PRIMARY, generative=True, metrics=METRICS, chosen=indices,
                                key=_key, keys=keys, target=lambda sample: ",".join(sample["doc"]["instruction_id_list"]))
    result.settings.update(
        task=TASK, max_new_tokens=max_new_tokens, limit=limit, subset_seed=subset_seed, **runner.generation_settings(lm),
        generation_kwargs=dict(task.config.generation_kwargs or {}),
        data_source=str(data_file) if data_file else f"hub:{HUB_ID}",
        data_sha256=hash_file(data_file) if data_file else None,
        # The mirror file's hash already pins the documents; hash the loaded documents only for the Hub.
        docs_sha256=None if data_file else hash_json(list(task.eval_docs)), lm_eval_version=_lm_eval_version(),
    )
    log.info("ifeval: %s = %.3f over %d prompts in %.0f s", PRIMARY, result.scores[0].value,
             result.scores[0].n, time.monotonic() - started)
    return result


def _key(doc: dict) -> int:
    return doc["key"]


def _lm_eval_version() -> str:
    from lm_eval import __version__

    return __version__


def _data_file(data_dir: Path | None) -> Path | None:
    """The mirror's IFEval JSONL, None for the Hub; DataError (one line) if the mirror lacks it."""
    path = mirror_file(data_dir, DATA_FILE, "IFEval", hub_id=HUB_ID, hub_fallback=True)
    return None if path is None else path.resolve()


def _load_task(data_file: Path | None):
    """lm-eval's `ifeval` Task, on the local file when given; only this task is indexed (fast)."""
    from lm_eval.tasks import TaskManager

    builtin = runner.stock_yaml("ifeval/ifeval.yaml")
    task_manager = TaskManager(include_defaults=False)
    if data_file is not None:
        return task_manager, runner.keep_docs(task_manager.load([str(_local_task_yaml(builtin, data_file))])["tasks"][TASK])
    try:
        return task_manager, runner.keep_docs(task_manager.load([str(builtin)])["tasks"][TASK])
    except Exception as exc:  # offline, no cache, Hub down: all end the same way for the user
        raise DataError(
            f"IFEval: could not load {HUB_ID} from the Hub ({first_line(exc)}); with no network, point --data-dir "
            f"or FORGETBENCH_DATA_DIR at a data mirror holding {DATA_FILE}"
        ) from None


def _local_task_yaml(builtin: Path, data_file: Path) -> Path:
    """A task YAML that includes the built-in one and reads `data_file` with the `json` loader."""
    return runner.local_task_yaml("ifeval", "ifeval.yaml", {
        "include": str(builtin), "task": TASK, "dataset_path": "json", "dataset_name": None,
        "dataset_kwargs": {"data_files": {"train": str(data_file)}}})


def _seed_langdetect() -> None:
    """Make langdetect (used by lm-eval's language and all-caps/lowercase checkers) deterministic.

    Unseeded, it draws from OS entropy on every call, so the same response can score differently
    between runs; `DetectorFactory.seed = 0` is langdetect's documented fix.
    """
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0
