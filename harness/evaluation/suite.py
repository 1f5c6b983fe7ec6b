"""Run a study's evaluation suite on one model, once: results are cached under the hash of the model
and the evaluation settings, so a baseline evaluated by one study is reused by every other."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from harness import artefacts
from harness.config import EvalConfig
from harness.data import DataSource, locate, source_hash
from harness.domains import Domain
from harness.errors import DataError, ForgetbenchError
from harness.evaluation import ifeval
from harness.hashing import hash_file, hash_json, short
from harness.models import ResolvedModel
from harness.paths import atomic_dir, cache_dir
from harness.results import BenchmarkResult, result_from_json, result_to_json

log = logging.getLogger(__name__)

# Only located and hashed here (lm-eval reads the file itself), so no row adapter is needed.
IFEVAL = DataSource("ifeval", adapter=None, local_path=str(ifeval.DATA_FILE), hub_id=ifeval.HUB_ID)  # type: ignore[arg-type]
# The Open LLM Leaderboard's IFEval budget: lm-eval tasks/leaderboard/ifeval/ifeval.yaml, max_gen_toks: 1280.
IFEVAL_MAX_NEW_TOKENS = 1280
LM_EVAL_TASKS = ("mmlu_pro", "gpqa", "math_l5")  # run through harness.evaluation.lmeval_tasks


def eval_inputs(eval_cfg: EvalConfig, domain: Domain, data_dir: Path | None, backend: str) -> dict:
    """Everything that decides a model's scores besides the model itself.

    Settings of benchmarks not in the suite are left out, so adding a benchmark option does not
    change the hash (and the cached baseline) of suites that do not use it."""
    names = eval_cfg.benchmarks
    unused = {field for field, needs in _SETTING_USERS.items() if not needs & set(names)}
    inputs = {"eval": eval_cfg.model_dump(mode="json", exclude=unused), **domain.key(), "backend": backend,
              "domain_test_sha256": source_hash(domain.test, data_dir)}
    if "ifeval" in names:
        inputs["ifeval_sha256"] = source_hash(IFEVAL, data_dir)
    budgets = _default_budgets()
    for name, settings in names.items():  # a benchmark's own default budget decides its scores too
        if settings.max_new_tokens is None and name in budgets:
            inputs[f"{name}_default_max_new_tokens"] = budgets[name]
    for name in LM_EVAL_TASKS:
        if name in names:
            inputs[f"{name}_data"] = _lm_eval_data_hash(name, eval_cfg, data_dir)
    for name, jailbreak in (("safety_raw", False), ("safety_jailbreak", True)):
        if name in names:
            from harness.evaluation.safety import check_safety_data

            inputs[f"{name}_data"] = check_safety_data(data_dir, jailbreak)
    if "alpaca_eval" in names:
        from harness.evaluation.alpaca_eval import judge_identity, judge_reading, reference_file

        inputs["alpaca_eval_reference_sha256"] = hash_file(reference_file(data_dir, eval_cfg.alpaca_reference))
        judge = judge_identity(eval_cfg.judge_model)
        inputs["alpaca_eval_judge_sha"] = judge["judge_sha"] or hash_json(judge)
        inputs["alpaca_eval_judge_reading"] = judge_reading(eval_cfg.judge_model, eval_cfg.alpaca_annotator)
    return inputs


def _default_budgets() -> dict[str, int]:
    from harness.evaluation.alpaca_eval import DEFAULT_MAX_NEW_TOKENS as ALPACA
    from harness.evaluation.lmeval_tasks import MATH_L5
    from harness.evaluation.safety import DEFAULT_MAX_NEW_TOKENS as SAFETY

    return {"ifeval": IFEVAL_MAX_NEW_TOKENS, "safety_raw": SAFETY, "safety_jailbreak": SAFETY, "alpaca_eval": ALPACA,
            "math_l5": MATH_L5.default_max_new_tokens}


# EvalConfig fields that only matter to some benchmarks.
_SETTING_USERS = {"gpqa_subset": {"gpqa"}, "judge_model": {"alpaca_eval"}, "alpaca_reference": {"alpaca_eval"},
                  "alpaca_annotator": {"alpaca_eval"}, "safety_keywords": {"safety_raw", "safety_jailbreak"},
                  "safety_decoding": {"safety_raw", "safety_jailbreak"}}


def _lm_eval_data_hash(name: str, eval_cfg: EvalConfig, data_dir: Path | None) -> str:
    from harness.evaluation.lmeval_tasks import data_file, specs_for

    hashes = []
    for spec in specs_for(name, eval_cfg.gpqa_subset, data_dir):
        path = data_file(spec, data_dir)
        hashes.append(hash_file(path) if path is not None else  # from the Hub: its id and the task's setup
                      hash_json({"hub": spec.hub_id, "task": spec.task, "overrides": spec.overrides,
                                 "fewshot": "task default"}))
    return hashes[0] if len(hashes) == 1 else hash_json(hashes)


def eval_config_hash(eval_cfg: EvalConfig, domain: Domain, data_dir: Path | None, backend: str) -> str:
    return hash_json(eval_inputs(eval_cfg, domain, data_dir, backend))


def check_eval_data(eval_cfg: EvalConfig, domain: Domain, data_dir: Path | None) -> None:
    """Fail before any work when a benchmark's data cannot be found."""
    if "ifeval" in eval_cfg.benchmarks:
        locate(IFEVAL, data_dir)
    if "domain" in eval_cfg.benchmarks and not domain.test_rows(data_dir):
        path = locate(domain.test, data_dir)
        raise DataError(f"{path or domain.test.describe()}: domain {domain.name!r} has no test rows to evaluate")
    for name in LM_EVAL_TASKS:
        if name in eval_cfg.benchmarks:
            _lm_eval_data_hash(name, eval_cfg, data_dir)
    if "gpqa" in eval_cfg.benchmarks and data_dir is not None:
        from harness.evaluation.lmeval_tasks import GPQA_ZIP, gpqa_diamond_in_memory, gpqa_subsets

        if "diamond" in gpqa_subsets(eval_cfg.gpqa_subset, data_dir):
            gpqa_diamond_in_memory(str(Path(data_dir) / GPQA_ZIP))  # wrong password / broken zip fails here
    if "safety_raw" in eval_cfg.benchmarks or "safety_jailbreak" in eval_cfg.benchmarks:
        from harness.evaluation.safety import check_safety_data

        check_safety_data(data_dir, "safety_jailbreak" in eval_cfg.benchmarks)
    if "alpaca_eval" in eval_cfg.benchmarks:
        from harness.evaluation.alpaca_eval import reference_file

        reference_file(data_dir, eval_cfg.alpaca_reference)


def evaluate_model(model: ResolvedModel, eval_cfg: EvalConfig, domain: Domain, data_dir: Path | None,
                   backend_name: str) -> list[BenchmarkResult]:
    eval_hash = eval_config_hash(eval_cfg, domain, data_dir, backend_name)
    key = hash_json({"model": model.sha, "eval": eval_hash, **_scoring_code(eval_cfg)})
    target = cache_dir() / "evals" / short(key, 24)
    if artefacts.usable(target, "evaluation", required=("results.json",)):
        log.info("evaluation of %s: reusing cached results %s", model.label, target)
        return [result_from_json(r) for r in json.loads((target / "results.json").read_text())]

    results = []
    for name, settings in eval_cfg.benchmarks.items():
        log.info("evaluating %s on %s (limit %s)", model.label, name, settings.limit)
        started = time.monotonic()
        result = _run_benchmark(name, settings, model, eval_cfg, domain, data_dir, backend_name)
        result.settings["wall_seconds"] = round(time.monotonic() - started, 1)
        empty = [score.metric for score in result.scores if score.n <= 0]
        if empty:  # not a measurement: neither cached nor recorded
            raise ForgetbenchError(f"benchmark {name} on {model.label}: {empty[0]} rests on n=0 examples "
                                   f"(limit {settings.limit}); nothing is recorded")
        results.append(result)
    with atomic_dir(target) as tmp:
        (tmp / "results.json").write_text(json.dumps([result_to_json(r) for r in results]))
        artefacts.seal(tmp, refs={"model_sha": model.sha, "eval_config_hash": eval_hash})
    return results


def _scoring_code(eval_cfg: EvalConfig) -> dict:
    """Versions of the scoring code in the evaluation cache key: results cached under one lm-eval (or
    alpaca_eval) release are not reused under another (task YAMLs, prompts and scorers change)."""
    from importlib.metadata import version

    versions = {}
    if {"ifeval", *LM_EVAL_TASKS} & set(eval_cfg.benchmarks):
        versions["lm_eval"] = version("lm_eval")
    if "alpaca_eval" in eval_cfg.benchmarks:  # its prompt files and win-rate code
        versions["alpaca_eval"] = version("alpaca_eval")
    return versions


def _run_benchmark(name, settings, model, eval_cfg, domain, data_dir, backend_name) -> BenchmarkResult:
    if name == "ifeval":
        from harness.evaluation.ifeval import evaluate_ifeval

        return evaluate_ifeval(model, data_dir=data_dir, limit=settings.limit, subset_seed=eval_cfg.subset_seed,
                               max_new_tokens=settings.max_new_tokens or IFEVAL_MAX_NEW_TOKENS,
                               batch_size=eval_cfg.batch_size, backend=backend_name)
    if name == "domain":
        from harness.evaluation.domain import evaluate_domain
        from harness.generation import make_backend

        backend = make_backend(backend_name, model, batch_size=eval_cfg.batch_size)
        return evaluate_domain(backend, domain, data_dir=data_dir, limit=settings.limit,
                               subset_seed=eval_cfg.subset_seed, max_new_tokens=settings.max_new_tokens)
    if name in LM_EVAL_TASKS:
        from harness.evaluation.lmeval_tasks import evaluate_benchmark

        return evaluate_benchmark(name, model, gpqa_subset=eval_cfg.gpqa_subset, data_dir=data_dir,
                                  limit=settings.limit, subset_seed=eval_cfg.subset_seed,
                                  max_new_tokens=settings.max_new_tokens, batch_size=eval_cfg.batch_size,
                                  backend=backend_name)
    if name in ("safety_raw", "safety_jailbreak"):
        from harness.evaluation.safety import evaluate_safety
        from harness.generation import make_backend

        backend = make_backend(backend_name, model, batch_size=eval_cfg.batch_size)
        return evaluate_safety(backend, data_dir=data_dir, jailbreak=name == "safety_jailbreak",
                               limit=settings.limit, subset_seed=eval_cfg.subset_seed,
                               max_new_tokens=settings.max_new_tokens, keywords=eval_cfg.safety_keywords,
                               decoding=eval_cfg.safety_decoding)
    if name == "alpaca_eval":
        from harness.evaluation.alpaca_eval import evaluate_alpaca_eval, make_judge
        from harness.generation import make_backend

        backend = make_backend(backend_name, model, batch_size=eval_cfg.batch_size)
        judge = make_judge(eval_cfg.judge_model, backend, eval_cfg.alpaca_annotator)
        return evaluate_alpaca_eval(backend, judge, data_dir=data_dir,
                                    reference=eval_cfg.alpaca_reference, limit=settings.limit,
                                    subset_seed=eval_cfg.subset_seed, max_new_tokens=settings.max_new_tokens,
                                    annotator=eval_cfg.alpaca_annotator)
    raise AssertionError(f"benchmark {name!r} passed config validation but has no evaluator")
