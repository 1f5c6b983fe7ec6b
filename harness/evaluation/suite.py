"""Run a study's evaluation suite on one model, once: results are cached under the hash of the model
and the evaluation settings, so a baseline evaluated by one study is reused by every other."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from harness.config import EvalConfig
from harness.data import DataSource, locate, source_hash
from harness.domains import Domain
from harness.evaluation import ifeval
from harness.hashing import hash_json, short
from harness.models import ResolvedModel
from harness.paths import atomic_dir, cache_dir
from harness.results import BenchmarkResult, result_from_json, result_to_json

log = logging.getLogger(__name__)

# Only located and hashed here (lm-eval reads the file itself), so no row adapter is needed.
IFEVAL = DataSource("ifeval", adapter=None, local_path=str(ifeval.DATA_FILE), hub_id=ifeval.HUB_ID)  # type: ignore[arg-type]
IFEVAL_MAX_NEW_TOKENS = 512


def eval_inputs(eval_cfg: EvalConfig, domain: Domain, data_dir: Path | None, backend: str) -> dict:
    """Everything that decides a model's scores besides the model itself."""
    inputs = {"eval": eval_cfg.model_dump(mode="json"), "domain": domain.name, "backend": backend,
              "domain_test_sha256": source_hash(domain.test, data_dir)}
    if "ifeval" in eval_cfg.benchmarks:
        inputs["ifeval_sha256"] = source_hash(IFEVAL, data_dir)
    return inputs


def eval_config_hash(eval_cfg: EvalConfig, domain: Domain, data_dir: Path | None, backend: str) -> str:
    return hash_json(eval_inputs(eval_cfg, domain, data_dir, backend))


def check_eval_data(eval_cfg: EvalConfig, domain: Domain, data_dir: Path | None) -> None:
    """Fail before any work when a benchmark's data cannot be found."""
    if "ifeval" in eval_cfg.benchmarks:
        locate(IFEVAL, data_dir)
    if "domain" in eval_cfg.benchmarks:
        domain.test_rows(data_dir)


def evaluate_model(model: ResolvedModel, eval_cfg: EvalConfig, domain: Domain, data_dir: Path | None,
                   backend_name: str) -> list[BenchmarkResult]:
    key = hash_json({"model": model.sha, "eval": eval_config_hash(eval_cfg, domain, data_dir, backend_name)})
    target = cache_dir() / "evals" / short(key, 24)
    if (target / "results.json").is_file():
        log.info("evaluation of %s: reusing cached results %s", model.label, target)
        return [result_from_json(r) for r in json.loads((target / "results.json").read_text())]

    results = []
    for name, settings in eval_cfg.benchmarks.items():
        log.info("evaluating %s on %s (limit %s)", model.label, name, settings.limit)
        results.append(_run_benchmark(name, settings, model, eval_cfg, domain, data_dir, backend_name))
    with atomic_dir(target) as tmp:
        (tmp / "results.json").write_text(json.dumps([result_to_json(r) for r in results]))
    return results


def _run_benchmark(name, settings, model, eval_cfg, domain, data_dir, backend_name) -> BenchmarkResult:
    if name == "ifeval":
        from harness.evaluation.ifeval import evaluate_ifeval

        return evaluate_ifeval(model, data_dir=data_dir, limit=settings.limit, subset_seed=eval_cfg.subset_seed,
                               max_new_tokens=settings.max_new_tokens or IFEVAL_MAX_NEW_TOKENS,
                               batch_size=eval_cfg.batch_size)
    if name == "domain":
        from harness.evaluation.domain import evaluate_domain
        from harness.generation import make_backend

        backend = make_backend(backend_name, model, batch_size=eval_cfg.batch_size)
        return evaluate_domain(backend, domain, data_dir=data_dir, limit=settings.limit,
                               subset_seed=eval_cfg.subset_seed, max_new_tokens=settings.max_new_tokens)
    raise AssertionError(f"benchmark {name!r} passed config validation but has no evaluator")
