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


def parse_params(options: list[str]) -> dict[str, dict]:
    """`--param BENCH.KEY=VALUE` options as {bench: {key: value}}, each VALUE read as a YAML scalar."""
    import yaml

    params: dict[str, dict] = {}
    for option in options:
        target, equals, text = option.partition("=")
        bench, dot, key = target.rpartition(".")
        if not (equals and dot and bench and key):
            raise ConfigError(f"--param {option}: expected BENCH.KEY=VALUE, e.g. gpqa.subset=diamond")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        params.setdefault(bench, {})[key] = value
    return params


def build_eval_config(suite: list[str], limit: int | None, max_new_tokens: int | None, batch_size: int | None,
                      subset_seed: int, include_path: Path | None = None,
                      params: dict[str, dict] | None = None) -> EvalConfig:
    """The suite's config: `limit` and `max_new_tokens` reach every benchmark of the suite that takes
    them; `params` ({bench: {key: value}}, from `--param`) set one benchmark's own parameters, and
    name a benchmark of the suite."""
    from harness.benchmark import get_benchmark, split_label
    from harness.study_file import benchmark_problems

    params = params or {}
    stray = sorted(set(params) - set(suite))
    if stray:
        raise ConfigError(f"--param {stray[0]}.…: {stray[0]} is not a benchmark of the suite ({', '.join(suite)})")
    benchmarks: dict[str, dict] = {}
    try:
        for label in suite:
            fields = get_benchmark(split_label(label)[0]).Params.model_fields
            given = {"limit": limit, "max_new_tokens": max_new_tokens}
            benchmarks[label] = {**{k: v for k, v in given.items() if v is not None and k in fields},
                                 **params.get(label, {})}
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
                        leaderboard, base_model: str, study: str = "eval",
                        backend: str = "transformers") -> tuple[str, list[BenchmarkResult]]:
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
    leaderboard.record(record, results)
    return record.run_id, results


def _data_hashes(inputs: dict) -> dict[str, str]:
    """`benchmark.entry` for every string in each benchmark's data fingerprint (file hashes, judge)."""
    flat: dict[str, str] = {}
    for identity in inputs["benchmarks"]:
        for key, value in identity["fingerprint"].items():
            if isinstance(value, str):
                flat[f"{identity['benchmark']}.{key}"] = value
    return flat
