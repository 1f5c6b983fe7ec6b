"""`forgetbench eval`: evaluate one model (a seed model or any checkpoint) on its own and record it.

The run is recorded like a study's run: recipe "baseline" when the model is the base model (so a
later study with the same evaluation settings reuses it through `find_baseline`), otherwise recipe
"eval" with the model spec in the run's extra provenance."""
from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from harness.config import EvalConfig
from harness.domains import Domain
from harness.errors import ConfigError
from harness.evaluation.suite import check_eval_data, eval_config_hash, eval_inputs, evaluate_model
from harness.hashing import hash_json
from harness.models import resolve_model
from harness.provenance import now, run_record
from harness.results import BenchmarkResult

log = logging.getLogger("forgetbench")


def default_suite() -> list[str]:
    """`forgetbench eval` without `--suite`: every registered benchmark that needs no parameter (the
    eight built-ins, and any a package registers)."""
    from harness.benchmark import column_key, registry

    return sorted((name for name, cls in registry().items()
                   if not any(info.is_required() for info in cls.Params.model_fields.values())), key=column_key)


def parse_suite(names: str | None) -> list[str]:
    if not names:
        return default_suite()
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    if not chosen:
        raise ConfigError(f"--suite: no benchmark named in {names!r}")
    return chosen


# `forgetbench eval` options that fill one parameter of the benchmarks that have it.
OPTION_PARAMS = {"judge_model": "judge_model", "alpaca_annotator": "annotator", "alpaca_reference": "reference",
                 "gpqa_subset": "subset", "safety_keywords": "keywords", "safety_decoding": "decoding"}


def build_eval_config(suite: list[str], limit: int | None, max_new_tokens: int | None, batch_size: int | None,
                      subset_seed: int, include_path: Path | None = None, **options: str | None) -> EvalConfig:
    """The suite's config: each benchmark's parameters filled from the command line (`options`: the
    keys of OPTION_PARAMS; None leaves the benchmark's default). An option reaches every benchmark
    of the suite that has that parameter, and no other."""
    from harness.benchmark import get_benchmark, split_label
    from harness.study_file import benchmark_problems

    benchmarks: dict[str, dict] = {}
    try:
        for label in suite:
            fields = get_benchmark(split_label(label)[0]).Params.model_fields
            given = {"limit": limit, "max_new_tokens": max_new_tokens,
                     **{OPTION_PARAMS[k]: v for k, v in options.items()}}
            benchmarks[label] = {k: v for k, v in given.items() if v is not None and k in fields}
        problems = benchmark_problems(benchmarks)
        if problems:
            raise ConfigError(problems)
        return EvalConfig(benchmarks=benchmarks, batch_size=batch_size, subset_seed=subset_seed,
                          include_path=include_path.resolve() if include_path else None)
    except ValidationError as exc:  # one line per problem, not pydantic's multi-line dump
        raise ConfigError([f"--suite: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]) from None
    except ConfigError as exc:
        raise ConfigError([f"--suite: {line}" for line in exc.lines]) from None


def evaluate_and_record(model_spec: str, eval_cfg: EvalConfig, *, domain: Domain, data_dir: Path | None,
                        leaderboard_path: Path, base_model: str, study: str = "eval",
                        backend: str = "transformers") -> tuple[str, list[BenchmarkResult]]:
    from leaderboard.store import Leaderboard

    check_eval_data(eval_cfg, domain, data_dir, backend, base_model)  # missing data fails before any model work
    model = resolve_model(model_spec)
    base = model if base_model == model_spec else resolve_model(base_model)
    is_baseline = model.sha == base.sha
    eval_hash = eval_config_hash(eval_cfg, domain, data_dir, backend, base_model)
    started = now()
    results = evaluate_model(model, eval_cfg, domain, data_dir, backend, base_model)
    recipe = "baseline" if is_baseline else "eval"
    record = run_record(
        {"study": study, "recipe": recipe, "model": model.sha, "eval": eval_hash}, study=study, recipe=recipe, seed=0,
        recipe_params={} if is_baseline else {"model": model_spec}, base_model=base_model,
        base_model_sha=base.sha, checkpoint_sha=model.sha, mix_sha=None,
        config_hash=hash_json({"eval": eval_cfg.model_dump(mode="json"), **domain.key(), "model": model_spec}),
        finetune_config_hash=None, eval_config_hash=eval_hash,
        data_hashes=_data_hashes(eval_inputs(eval_cfg, domain, data_dir, backend, base_model)), started_at=started,
        domain=domain.name, generation_backend=backend,
        extra={"command": "eval", "model_spec": model_spec, "eval": eval_cfg.model_dump(mode="json"),
               "wall_seconds": {r.benchmark: r.settings.get("wall_seconds") for r in results}},
    )
    Leaderboard(leaderboard_path).record(record, results)
    return record.run_id, results


def _data_hashes(inputs: dict) -> dict[str, str]:
    """`benchmark.entry` for every string in each benchmark's data fingerprint (file hashes, judge)."""
    flat: dict[str, str] = {}
    for identity in inputs["benchmarks"]:
        for key, value in identity["fingerprint"].items():
            if isinstance(value, str):
                flat[f"{identity['benchmark']}.{key}"] = value
    return flat
