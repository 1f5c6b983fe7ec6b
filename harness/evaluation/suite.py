"""Run a study's evaluation suite on one model, each benchmark cached on its own.

A benchmark's result is stored under `<cache>/evals/<key>/results.json` (sealed with a manifest and
checked before reuse, harness/artefacts.py), where the key covers the model's hash and the
benchmark's identity: its name, its resolved parameters, its data fingerprint, the subset seed, the
generation backend and its scoring code. Adding a benchmark to a study therefore evaluates only that
benchmark, removing one reuses the rest, and a baseline evaluated by one study serves every other
that asks for the same benchmark the same way.

The suite as a whole still has one hash, `eval_config_hash` (every benchmark's identity and the
study's domain), recorded with each run: runs and baselines pair on it.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from harness import artefacts
from harness.benchmark import Benchmark, BenchmarkContext
from harness.config import EvalConfig
from harness.domains import Domain
from harness.errors import ForgetbenchError
from harness.hashing import hash_json
from harness.models import ResolvedModel
from harness.results import BenchmarkResult, result_from_json, result_to_json

log = logging.getLogger(__name__)

EVAL_KEY = "eval_key"  # the settings entry (and manifest reference) naming a result's cache folder


def context(eval_cfg: EvalConfig, domain: Domain, data_dir: Path | None, backend: str,
            model: ResolvedModel | None = None, base_model: str | None = None) -> BenchmarkContext:
    """The benchmarks' context for one model (None: data checks and fingerprints only); `base_model`
    the study's seed model spec (what `drift` compares with)."""
    return BenchmarkContext(model=model, domain=domain, data_dir=data_dir, subset_seed=eval_cfg.subset_seed,
                            batch_size=eval_cfg.batch_size, backend_name=backend, include_path=eval_cfg.include_path,
                            base_model=base_model, lm_factory=_lm_eval_model)


def _lm_eval_model(generator):
    """lm-eval's `forgetbench` model over a generation backend (lm-eval imported on first need)."""
    from harness.evaluation.lm_model import lm_for

    return lm_for(generator)


def benchmark_identity(benchmark: Benchmark, ctx: BenchmarkContext) -> dict[str, Any]:
    """Everything that decides a benchmark's scores besides the model."""
    return {"benchmark": benchmark.label, "params": benchmark.params.model_dump(mode="json"),
            "fingerprint": benchmark.fingerprint(ctx), "subset_seed": ctx.subset_seed, "backend": ctx.backend_name,
            "scoring_code": benchmark.scoring_code()}


def eval_inputs(eval_cfg: EvalConfig, domain: Domain, data_dir: Path | None, backend: str,
                base_model: str | None = None) -> dict[str, Any]:
    """The suite's identity: each benchmark's, and the study's domain (so a baseline pairs with the runs
    of its own domain)."""
    ctx = context(eval_cfg, domain, data_dir, backend, base_model=base_model)
    return {"benchmarks": [benchmark_identity(b, ctx) for b in eval_cfg.suite()], **domain.key()}


def eval_config_hash(eval_cfg: EvalConfig, domain: Domain, data_dir: Path | None, backend: str,
                     base_model: str | None = None) -> str:
    return hash_json(eval_inputs(eval_cfg, domain, data_dir, backend, base_model))


def check_eval_data(eval_cfg: EvalConfig, domain: Domain, data_dir: Path | None, backend: str = "transformers",
                    base_model: str | None = None) -> None:
    """Fail before any work when a benchmark's data cannot be found (each benchmark's `check_data`)."""
    ctx = context(eval_cfg, domain, data_dir, backend, base_model=base_model)
    for benchmark in eval_cfg.suite():
        benchmark.check_data(ctx)


def evaluate_model(model: ResolvedModel, eval_cfg: EvalConfig, domain: Domain, data_dir: Path | None,
                   backend_name: str, base_model: str | None = None) -> list[BenchmarkResult]:
    """Every benchmark of the suite on `model`, each reused from the cache when it was evaluated the
    same way before. The model's generator and lm-eval LM are built once, on first need."""
    ctx = context(eval_cfg, domain, data_dir, backend_name, model, base_model)
    results = []
    for benchmark in eval_cfg.suite():
        results.append(_evaluate_cached(benchmark, ctx))
    return results


def evaluation_folder(model_sha: str, identity: dict[str, Any]) -> Path:
    return artefacts.EVALUATION.folder({"model": model_sha, **identity})


def _evaluate_cached(benchmark: Benchmark, ctx: BenchmarkContext) -> BenchmarkResult:
    model = ctx.model
    assert model is not None
    identity = benchmark_identity(benchmark, ctx)
    target = evaluation_folder(model.sha, identity)
    if artefacts.EVALUATION.reusable(target):
        log.info("%s on %s: reusing cached result %s", benchmark.label, model.label, target)
        return result_from_json(json.loads((target / "results.json").read_text()))
    log.info("evaluating %s on %s (limit %s)", model.label, benchmark.label, benchmark.params.limit)
    started = time.monotonic()
    result = benchmark.evaluate(ctx)
    result.benchmark = benchmark.label
    empty = [score.metric for score in result.scores if score.n <= 0]
    if empty:  # not a measurement: neither cached nor recorded
        raise ForgetbenchError(f"benchmark {benchmark.label} on {model.label}: {empty[0]} rests on n=0 examples "
                               f"(limit {benchmark.params.limit}); nothing is recorded")
    result.settings.update(wall_seconds=round(time.monotonic() - started, 1), params=identity["params"],
                           fingerprint=identity["fingerprint"], scoring_code=identity["scoring_code"],
                           **{EVAL_KEY: target.name})
    with artefacts.EVALUATION.build(target) as tmp:
        (tmp / "results.json").write_text(json.dumps(result_to_json(result)))
        artefacts.seal(tmp, refs={"model_sha": model.sha, "benchmark": benchmark.label, EVAL_KEY: target.name})
    return result
