"""Opt-in scale benchmarks (FORGETBENCH_SCALE_BENCH=1; ~3-4 minutes on 2 cores, so not in CI by default).

Each measures one ratio against a baseline in the same run, prints it and stores it in
`benchmark.extra_info`; only the correctness half is asserted (the machine is shared and noisy):
  (a) batched generation (TransformersBackend, 16 prompts) vs a naive per-prompt `model.generate`
      loop on the real SmolLM2: same greedy outputs (goal: >= 5x faster);
  (b) a study of N=2 recipes from scratch vs adding a third recipe to the finished study (tiny model):
      the addition builds only its own mix, checkpoint and evaluation (goal: <= 1/N + 10 % of the study);
  (c) the harness's IFEval evaluation vs `lm_eval.simple_evaluate` alone on the same task, documents and
      model: same scores and responses (goal: <= 1.1x).
Run: FORGETBENCH_SCALE_BENCH=1 pytest tests/test_scale_bench.py --benchmark-enable -s
"""
from __future__ import annotations

import json
import os
import time

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("FORGETBENCH_SCALE_BENCH") != "1",
                                reason="scale benchmark: set FORGETBENCH_SCALE_BENCH=1 (minutes of CPU)")


ROUNDS = 3  # interleaved repetitions of each side in (c)


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def measured(benchmark, fn):
    """Run `fn` once as the benchmark (recorded when benchmarks are enabled) and time it ourselves too,
    so the ratio exists under the project's default `--benchmark-disable` as well."""
    seconds = []

    def run():
        value, took = timed(fn)
        seconds.append(took)
        return value

    return benchmark.pedantic(run, rounds=1, iterations=1), seconds[0]


def report(benchmark, name, **numbers):
    benchmark.extra_info.update(numbers)
    print(f"\n{name}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in numbers.items()))


# (a) -------------------------------------------------------------------------------------------

def test_bench_batched_generation_vs_naive_loop(benchmark, real_model, data_dir, tmp_path):
    import torch

    from harness.evaluation.alpaca_eval import INSTRUCTIONS_FILE
    from harness.generation import GenerationCache, Sampling, TransformersBackend

    lines = (data_dir / INSTRUCTIONS_FILE).read_text(encoding="utf-8").splitlines()[:16]
    conversations = [[{"role": "user", "content": json.loads(line)["instruction"]}] for line in lines]
    sampling = Sampling(max_new_tokens=48)
    backend = TransformersBackend(real_model, batch_size=16, cache=GenerationCache(tmp_path / "gen.sqlite"))
    model, tokenizer = backend._loaded(), backend.tokenizer  # loading is not what is compared

    def naive():
        outputs = []
        for conversation in conversations:
            ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)
            with torch.inference_mode():
                out = model.generate(**ids, max_new_tokens=sampling.max_new_tokens, do_sample=False,
                                     temperature=None, top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id)
            outputs.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
        return outputs

    looped, naive_s = timed(naive)
    batched, batched_s = measured(benchmark, lambda: backend.chat(conversations, sampling))
    assert backend.generated == len(conversations)  # all generated here, none from a cache
    assert batched == looped  # the same greedy outputs, prompt by prompt
    report(benchmark, "batched generation", prompts=len(conversations), naive_s=naive_s, batched_s=batched_s,
           speedup=naive_s / batched_s, goal=">= 5x")


# (b) -------------------------------------------------------------------------------------------

def _study(tiny_model, recipes):
    from conftest import tiny_study_config

    from harness.config import StudyConfig

    return StudyConfig.model_validate(tiny_study_config(
        tiny_model, name="bench-add", recipes=recipes, mix={"size": 8, "domain_share": 0.5},
        finetune={"method": "lora", "max_steps": 4, "batch_size": 2, "max_seq_length": 256},
        eval={"batch_size": 4, "benchmarks": {"domain": {"limit": 8, "max_new_tokens": 16}}}))


def _artefacts(cache):
    return {kind: {p.name for p in (cache / kind).iterdir() if not p.name.startswith(".")}
            for kind in ("mixes", "checkpoints", "evals")}


def test_bench_adding_a_recipe_costs_only_that_recipe(benchmark, tiny_model, data_dir, tmp_path, monkeypatch):
    from harness.study import run_study
    from leaderboard.store import Leaderboard

    cache, board = tmp_path / "cache", tmp_path / "lb.duckdb"
    monkeypatch.setenv("FORGETBENCH_CACHE", str(cache))
    recipes = ["none", "public:alpaca"]
    _, study_s = timed(lambda: run_study(_study(tiny_model, recipes), Leaderboard(board), data_dir))
    before = _artefacts(cache)

    added, add_s = measured(benchmark, lambda: run_study(_study(tiny_model, recipes + ["public:dolly"]),
                                                         Leaderboard(board), data_dir))
    after = _artefacts(cache)
    assert len(added) == 4
    assert {kind: len(after[kind] - before[kind]) for kind in after} == {"mixes": 1, "checkpoints": 1, "evals": 1}
    assert all(before[kind] <= after[kind] for kind in after)  # only the added recipe's own artefacts
    n = len(recipes)
    report(benchmark, "adding a recipe", recipes=n, study_s=study_s, add_s=add_s, ratio=add_s / study_s,
           goal=f"<= {1 / n + 0.1:.2f}")


# (c) -------------------------------------------------------------------------------------------

def test_bench_harness_ifeval_vs_lm_eval_alone(benchmark, tiny_model, data_dir, tmp_path, monkeypatch):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from harness.evaluation import ifeval
    from harness.evaluation.punkt import ensure_punkt_tab
    from harness.subsets import paired_subset

    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path / "cache"))
    limit, tokens, batch = 8, 16, 4
    ensure_punkt_tab()
    ifeval._seed_langdetect()
    data_file = ifeval._data_file(data_dir)
    _, task = ifeval._load_task(data_file)  # warm-up: imports and the data set's Arrow cache, for both sides
    keys = list(task.eval_docs["key"])
    indices = paired_subset(range(len(keys)), limit, 1234, keys=keys)

    def lm_eval_only():
        import lm_eval.tasks

        builtin = ifeval.Path(lm_eval.tasks.__file__).parent / "ifeval" / "ifeval.yaml"
        task_manager = TaskManager(include_defaults=False)
        task = task_manager.load([str(ifeval._local_task_yaml(builtin, data_file))])["tasks"]["ifeval"]
        task.set_config(key="generation_kwargs", value={"max_gen_toks": tokens}, update=True)
        lm = HFLM(pretrained=str(tiny_model.path), device="cpu", dtype="float32", batch_size=batch)
        return simple_evaluate(model=lm, tasks=[task], task_manager=task_manager, samples={"ifeval": indices},
                               apply_chat_template=True, log_samples=True)

    def harness_eval():
        return ifeval.evaluate_ifeval(tiny_model, data_dir=data_dir, limit=limit, subset_seed=1234,
                                      max_new_tokens=tokens, batch_size=batch)

    # Interleaved rounds, the fastest of each side kept: the shared machine's load swings by several x
    # within a minute, and whichever side runs first also warms caches for the other.
    alone, alone_s = timed(lm_eval_only)
    result, harness_s = measured(benchmark, harness_eval)
    alone_times, harness_times = [alone_s], [harness_s]
    for _ in range(ROUNDS - 1):
        alone_times.append(timed(lm_eval_only)[1])
        harness_times.append(timed(harness_eval)[1])
    print("\nIFEval seconds: lm-eval alone", [round(t, 2) for t in alone_times], "harness",
          [round(t, 2) for t in harness_times])
    alone_s, harness_s = min(alone_times), min(harness_times)
    numbers = alone["results"]["ifeval"]
    assert {s.metric: s.value for s in result.scores} == {m: float(numbers[f"{m},none"]) for m in ifeval.METRICS}
    responses = {str(s["doc"]["key"]): s["filtered_resps"][0] for s in alone["samples"]["ifeval"]}
    assert {e.example_id: e.prediction for e in result.examples} == responses
    report(benchmark, "harness IFEval vs lm-eval alone", documents=limit, lm_eval_s=alone_s, harness_s=harness_s,
           ratio=harness_s / alone_s, goal="<= 1.1x")
