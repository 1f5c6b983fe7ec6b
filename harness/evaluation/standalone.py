"""`forgetbench eval`: evaluate one model (a seed model or any checkpoint) on its own and record it.

The run is recorded like a study's run: recipe "baseline" when the model is the base model (so a
later study with the same evaluation settings reuses it through `find_baseline`), otherwise recipe
"eval" with the model spec in the run's extra provenance."""
from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from harness.config import KNOWN_BENCHMARKS, BenchmarkConfig, EvalConfig
from harness.domains import Domain
from harness.errors import ConfigError
from harness.evaluation.suite import check_eval_data, eval_config_hash, eval_inputs, evaluate_model
from harness.hashing import hash_json
from harness.models import resolve_model
from harness.provenance import now, run_record
from harness.results import BenchmarkResult

log = logging.getLogger("forgetbench")


def parse_suite(names: str | None) -> list[str]:
    if not names:
        return list(KNOWN_BENCHMARKS)
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in KNOWN_BENCHMARKS]
    if unknown or not chosen:
        raise ConfigError(f"--suite: unknown benchmark {unknown[0] if unknown else names!r}; "
                          f"known: {', '.join(KNOWN_BENCHMARKS)}")
    return chosen


def build_eval_config(suite: list[str], limit: int | None, max_new_tokens: int | None, batch_size: int,
                      subset_seed: int, **options: str | None) -> EvalConfig:
    """`options`: EvalConfig fields given on the command line (None: the field's default)."""
    extra = {k: v for k, v in options.items() if v}
    try:
        return EvalConfig(benchmarks={n: BenchmarkConfig(limit=limit, max_new_tokens=max_new_tokens) for n in suite},
                          batch_size=batch_size, subset_seed=subset_seed, **extra)
    except ValidationError as exc:  # one line per problem, not pydantic's multi-line dump
        raise ConfigError([f"eval settings: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                           for e in exc.errors()]) from None


def evaluate_and_record(model_spec: str, eval_cfg: EvalConfig, *, domain: Domain, data_dir: Path | None,
                        leaderboard_path: Path, base_model: str, study: str = "eval",
                        backend: str = "transformers") -> tuple[str, list[BenchmarkResult]]:
    from leaderboard.store import Leaderboard

    check_eval_data(eval_cfg, domain, data_dir)  # missing data fails before any model work
    model = resolve_model(model_spec)
    base = model if base_model == model_spec else resolve_model(base_model)
    is_baseline = model.sha == base.sha
    eval_hash = eval_config_hash(eval_cfg, domain, data_dir, backend)
    started = now()
    results = evaluate_model(model, eval_cfg, domain, data_dir, backend)
    recipe = "baseline" if is_baseline else "eval"
    record = run_record(
        {"study": study, "recipe": recipe, "model": model.sha, "eval": eval_hash}, study=study, recipe=recipe, seed=0,
        recipe_params={} if is_baseline else {"model": model_spec}, base_model=base_model,
        base_model_sha=base.sha, checkpoint_sha=model.sha, mix_sha=None,
        config_hash=hash_json({"eval": eval_cfg.model_dump(mode="json"), **domain.key(), "model": model_spec}),
        finetune_config_hash=None, eval_config_hash=eval_hash,
        data_hashes=_data_hashes(eval_inputs(eval_cfg, domain, data_dir, backend)), started_at=started,
        domain=domain.name, generation_backend=backend,
        extra={"command": "eval", "model_spec": model_spec, "eval": eval_cfg.model_dump(mode="json"),
               "wall_seconds": {r.benchmark: r.settings.get("wall_seconds") for r in results}},
    )
    Leaderboard(leaderboard_path).record(record, results)
    return record.run_id, results


def _data_hashes(inputs: dict) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in inputs.items():
        if isinstance(value, dict) and key.endswith("_data"):
            flat.update({f"{key[:-5]}.{k}": str(v) for k, v in value.items()})
        elif isinstance(value, str) and (key.endswith("sha256") or key.endswith("_data") or key.endswith("_sha")):
            flat[key] = value
    return flat
