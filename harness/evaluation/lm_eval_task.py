"""`lm_eval:<task>`, any lm-eval task by name, through the one lm-eval runner
(harness.evaluation.lm_eval_runner): lm-eval's own task loading, prompts and scoring.

- Task: looked up by name in the `--include-path` / `eval.include_path` folder first (indexed alone,
  which is fast), then among lm-eval's built-in tasks (a one-off scan of ~15 s), as lm-eval's own
  CLI takes `--include_path`. A group or tag (several tasks) is refused: name one task.
- Subset: `limit` documents drawn by `random.Random(subset_seed)` (harness.subsets.paired_subset)
  over the task's evaluation documents by position, passed through `simple_evaluate(samples=...)`.
- Model: the evaluated model as an lm-eval LM (`BenchmarkContext.lm()`, shared by every lm-eval
  benchmark of the model), chat template applied as for the built-ins.
- Scores: every metric lm-eval reports for the task, each as a Score named like lm-eval's result key
  with the identity filter dropped (`acc`, `acc_norm`; `exact_match,strict-match` under a filter);
  the primary is the task's first metric (`metric_list[0]`) under its first filter. Per-example
  results come from lm-eval's logged samples (`example_id` = the document's position).
- Fingerprint: the task's YAML folder (the whole include folder for a task of your own), every file
  hashed, plus any local `dataset_kwargs.data_files` the task's YAML names; so editing a task or its
  data never reuses a stale result. Offline whenever the data are local (e.g. `dataset_path: json`).
"""
from __future__ import annotations

import functools
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.benchmark import BenchmarkContext, BenchmarkParams
from harness.errors import ConfigError, DataError, first_line
from harness.evaluation import lm_eval_runner as runner
from harness.evaluation.lm_eval_runner import LmEvalBenchmark, folder_hashes
from harness.hashing import hash_file, hash_json
from harness.results import BenchmarkResult


class LmEvalTaskParams(BenchmarkParams):
    task: str = Field(..., min_length=1, description="lm-eval task name: built-in, or in the include path")
    num_fewshot: int | None = Field(None, ge=0, description="shots; the task's own default if unset")
    max_new_tokens: int | None = Field(None, gt=0, description="generation budget (max_gen_toks) of a generative "
                                                               "task; the task's own if unset")


class LmEvalTask(LmEvalBenchmark):
    """Any lm-eval task by name, scored by lm-eval: `lm_eval:hellaswag`, or a task of your own YAML
    folder given as `--include-path DIR` (`eval.include_path` in a study). Every metric the task
    reports is recorded; the primary is its first. Runs offline when its data are local."""

    Params = LmEvalTaskParams
    shorthand = "task"
    group = "general"
    data_sources = ("the task's own (`dataset_path` / `dataset_kwargs` of its YAML)",)

    def check_data(self, ctx: BenchmarkContext) -> None:
        self.fingerprint(ctx)

    def fingerprint(self, ctx: BenchmarkContext) -> dict[str, Any]:
        manager = find_task(self.params.task, ctx.include_path)
        entry = manager.task_index[self.params.task]
        folder = Path(entry.yaml_path).parent if entry.yaml_path else None
        root = ctx.include_path if ctx.include_path and folder and _inside(folder, ctx.include_path) else folder
        return {"task": self.params.task, "task_files": folder_hashes(root) if root else None,
                "data_files": _data_file_hashes(entry.cfg or {}, self.label)}

    def evaluate(self, ctx: BenchmarkContext) -> BenchmarkResult:
        name = self.params.task
        manager = find_task(name, ctx.include_path)
        with runner.quiet_lm_eval():
            try:
                task = runner.keep_docs(manager.load([name])["tasks"][name])
            except Exception as exc:  # data missing offline, a broken YAML: one line for the user
                raise DataError(f"{self.label}: lm-eval could not load the task ({first_line(exc)})") from None
        if self.params.num_fewshot is not None:
            task.set_config(key="num_fewshot", value=self.params.num_fewshot)
        generative = task.config.output_type == "generate_until"
        if generative:
            runner.set_generation_budget(task, self.params.max_new_tokens)
        docs = task.eval_docs
        indices, _ = runner.draw_subset(docs, self.params.limit, ctx.subset_seed)
        ctx.log.info("%s: %d of %d documents", self.label, len(indices), len(docs))
        output = runner.run_tasks(ctx.lm(), manager, {name: task}, {name: indices}, {name: len(docs)}, chat_template=True)
        result = runner.task_result(self.label, name, output, primary=first_metric(task), generative=generative)
        config = task.config
        result.settings.update(
            task=name, limit=self.params.limit, subset_seed=ctx.subset_seed, output_type=config.output_type,
            num_fewshot=config.num_fewshot or 0, chat_template=True,
            generation_kwargs=dict(config.generation_kwargs or {}) if generative else None,
            include_path=str(ctx.include_path) if ctx.include_path else None,
            docs_sha256=hash_json([docs[i] for i in indices]), lm_eval_version=version("lm_eval"),
        )
        return result


@functools.lru_cache(maxsize=8)
def _task_manager(include_path: str | None, defaults: bool, content: str | None):
    """lm-eval's task index; `content` (the include folder's hash) keys it, so an edited folder is indexed anew."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, include_defaults=defaults)


def find_task(name: str, include_path: Path | None):
    """lm-eval's TaskManager that knows the task `name`: the include folder alone when it has it,
    else lm-eval's built-in tasks (plus the include folder). ConfigError when none has it, or when
    the name is a group or tag rather than one task."""
    if include_path is not None and not Path(include_path).is_dir():
        raise ConfigError(f"include_path {include_path}: not a folder of lm-eval task YAMLs")
    content = folder_hashes(include_path) if include_path else None
    with runner.quiet_lm_eval():
        # the include folder alone first (fast), lm-eval's ~13,000 built-in tasks only when needed
        searches = ([(str(include_path), False)] if include_path else []) + \
                   [(str(include_path) if include_path else None, True)]
        for folder, defaults in searches:
            manager = _task_manager(folder, defaults, content)
            if name in manager.all_subtasks:
                return manager
            if name in manager.all_groups or name in manager.all_tags:
                raise ConfigError(f"lm_eval:{name}: names a group of lm-eval tasks; name its tasks one by one "
                                  f"(lm-eval's `lm-eval ls tasks` lists them)")
    where = f" (looked in {include_path} and lm-eval's built-in tasks)" if include_path else \
        " among lm-eval's built-in tasks (a task of your own: --include-path DIR / eval.include_path)"
    raise ConfigError(f"lm_eval:{name}: no lm-eval task of that name{where}")


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def _data_file_hashes(cfg: dict[str, Any], label: str) -> dict[str, str] | None:
    """Content hashes of the local files a task's `dataset_kwargs.data_files` names (None if it names none);
    a named file that does not exist is a DataError naming it."""
    files = ((cfg.get("dataset_kwargs") or {}).get("data_files")) if isinstance(cfg.get("dataset_kwargs"), dict) else None
    if not files:
        return None
    paths = files.values() if isinstance(files, dict) else [files]
    flat = [p for group in paths for p in ([group] if isinstance(group, str) else group)]
    hashes = {}
    for path in flat:
        if "://" in path:  # a remote file: its address is its identity
            hashes[path] = path
            continue
        if not Path(path).is_file():
            raise DataError(f"{path}: data file of {label} not found")
        hashes[path] = hash_file(path)
    return hashes


def first_metric(task) -> str:
    metrics = task.config.metric_list or []
    return metrics[0]["metric"] if metrics else ""
