"""Opt-in generation speed benchmark (FORGETBENCH_GENERATION_BENCH=1; ~6 minutes on 2 cores).

Issue 13's goal, measured in one run on the real SmolLM2 (float32, greedy): 64 AlpacaEval prompts x
128 new tokens through the harness backend (batches chosen by memory) against
  - plain `model.generate` over the same prompts at batch sizes 16, 32 and 64 (goal: >= 0.9x the best),
  - the backend as it ran before issue 13 (`model.generate` in fixed batches of 8) (goal: >= 2x);
every path must produce the same outputs. Throughput is the generated tokens (up to each sequence's
end-of-sequence token) per second. Ratios are printed and stored in `benchmark.extra_info`; only the
outputs are asserted (the machine is shared and its load swings), as in test_scale_bench.py.
Run: FORGETBENCH_GENERATION_BENCH=1 pytest tests/test_generation_bench.py --benchmark-enable -s
"""
from __future__ import annotations

import json
import os
import time

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("FORGETBENCH_GENERATION_BENCH") != "1",
                                reason="generation benchmark: set FORGETBENCH_GENERATION_BENCH=1 (minutes of CPU)")

PROMPTS, NEW_TOKENS, PLAIN_BATCHES = 64, 128, (16, 32, 64)


def test_bench_harness_generation_vs_plain_generate(benchmark, real_model, data_dir, tmp_path):
    import torch

    from harness.evaluation.alpaca_eval import INSTRUCTIONS_FILE
    from harness.generation import GenerationCache, Sampling, TransformersBackend

    lines = (data_dir / INSTRUCTIONS_FILE).read_text(encoding="utf-8").splitlines()[:PROMPTS]
    conversations = [[{"role": "user", "content": json.loads(line)["instruction"]}] for line in lines]
    sampling = Sampling(max_new_tokens=NEW_TOKENS)
    harness = TransformersBackend(real_model, cache=GenerationCache(tmp_path / "auto.sqlite"))
    model, tokenizer = harness._loaded(), harness.tokenizer  # loading is not what is compared
    prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]

    def plain(batch_size):
        texts, tokens = [], 0
        for start in range(0, len(prompts), batch_size):
            inputs = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                               add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, temperature=None,
                                     top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id)
            new = out[:, inputs["input_ids"].shape[1]:]
            tokens += sum(_until_eos(row.tolist(), tokenizer.eos_token_id) for row in new)
            texts += tokenizer.batch_decode(new, skip_special_tokens=True)
        return texts, tokens

    seconds, outputs = {}, {}
    for size in PLAIN_BATCHES:
        started = time.perf_counter()
        (outputs[f"plain{size}"], tokens) = plain(size)
        seconds[f"plain{size}"] = time.perf_counter() - started
    started = time.perf_counter()  # the backend before issue 13: `model.generate` in fixed batches of 8
    outputs["fixed8"], _ = plain(8)
    seconds["fixed8"] = time.perf_counter() - started

    timed = {}

    def run():
        started = time.perf_counter()
        value = harness.chat(conversations, sampling)
        timed["s"] = time.perf_counter() - started
        return value

    outputs["harness"] = benchmark.pedantic(run, rounds=1, iterations=1)
    seconds["harness"] = timed["s"]
    assert harness.generated == PROMPTS  # nothing came from a cache
    for name, texts in outputs.items():
        assert texts == outputs["plain64"], name  # identical greedy outputs, prompt by prompt

    rate = {name: tokens / s for name, s in seconds.items()}
    best = max(PLAIN_BATCHES, key=lambda size: rate[f"plain{size}"])
    numbers = {**{f"{name}_tok_s": round(r, 1) for name, r in rate.items()},
               "generated_tokens": tokens, "best_plain_batch": best,
               "vs_best_plain": round(rate["harness"] / rate[f"plain{best}"], 3),
               "vs_fixed8": round(rate["harness"] / rate["fixed8"], 3)}
    numbers["harness_batches"] = [len(b) for b in harness._generation_batches(prompts, sampling)]
    numbers["goals"] = "vs_best_plain >= 0.9, vs_fixed8 >= 2"
    benchmark.extra_info.update(numbers)
    print("\ngeneration throughput:", json.dumps(numbers))


def _until_eos(ids: list[int], eos: int) -> int:
    """Tokens generated up to and including the end-of-sequence token (the rest is padding)."""
    return ids.index(eos) + 1 if eos in ids else len(ids)
