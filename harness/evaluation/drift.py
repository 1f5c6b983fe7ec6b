"""Drift from the seed model, one number per prompt: how likely the evaluated model finds the seed
model's own answers.

SDFT (seed 003) traces forgetting to the shift of the fine-tuned model's distribution away from the
seed model's, and rewrites the training answers in the seed model's words to keep it small. This
measures that shift where `compare` can pair it: on a fixed seeded subset of AlpacaEval's 805
instructions (general requests, none from any training set here), the seed model answers each
greedily under its chat template (generated once per seed model, then cached); every evaluated model
then scores each answer by its mean log-probability per token given the same prompt
(`seed_answer_logprob`, nats per token). The seed model itself scores its own greedy answers highest;
a fine-tuned model that drifted scores them lower, and the per-prompt difference to the seed model's
run is the drift, with `compare`'s paired CI and p-value. Group `side`: it never enters a forgetting
average. A prompt whose seed answer is empty is left out (its count is recorded).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harness.evaluation import alpaca_eval
from harness.generation import GenerationBackend, Sampling
from harness.hashing import hash_file, hash_json
from harness.results import BenchmarkResult, ExampleResult, Score
from harness.subsets import paired_subset

METRIC = "seed_answer_logprob"
PROMPTS_REFERENCE = "text_davinci_003"  # the AlpacaEval file whose `instruction` fields are the prompts


def prompts_file(data_dir: Path | None) -> Path:
    return alpaca_eval.reference_file(data_dir, PROMPTS_REFERENCE)


def evaluate_drift(model: GenerationBackend, seed: GenerationBackend, *, data_dir: Path | None, limit: int | None,
                   subset_seed: int, max_new_tokens: int) -> BenchmarkResult:
    """`model`'s mean per-token log-probability of `seed`'s greedy answers to the drawn prompts."""
    started = time.monotonic()
    path = prompts_file(data_dir)
    rows = json.loads(path.read_text(encoding="utf-8"))
    keys = [str(i) for i in range(len(rows))]
    chosen = paired_subset(range(len(rows)), limit, subset_seed, keys=keys)
    conversations = [[{"role": "user", "content": rows[i]["instruction"]}] for i in chosen]
    answers = seed.chat(conversations, Sampling(max_new_tokens=max_new_tokens), desc="drift: seed model's answers")
    tokenizer = model.tokenizer
    kept, pairs = [], []
    for index, conversation, answer in zip(chosen, conversations, answers):
        continuation = tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not continuation:
            continue
        prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        pairs.append((tokenizer(prompt, add_special_tokens=False)["input_ids"], continuation))
        kept.append((index, answer))
    scored = model.loglikelihood(pairs, desc="drift: scoring the seed model's answers")
    examples = [ExampleResult(example_id=keys[index], metric=METRIC, value=logprob / len(continuation),
                              prediction=answer[:200])
                for (index, answer), (_, continuation), (logprob, _) in zip(kept, pairs, scored)]
    values = [e.value for e in examples]
    mean = sum(values) / len(values)
    stderr = (sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)) ** 0.5 if len(values) > 1 else None
    return BenchmarkResult(
        benchmark="drift", primary_metric=METRIC, scores=[Score(METRIC, mean, stderr, len(values))], examples=examples,
        settings={"limit": limit, "subset_seed": subset_seed, "max_new_tokens": max_new_tokens, "decoding": "greedy",
                  "chat_template": True, "reference_model": seed.model.spec, "reference_sha": seed.model.sha,
                  "prompts": f"AlpacaEval instructions ({path.name})", "prompts_sha256": hash_file(path),
                  "empty_seed_answers": len(chosen) - len(kept),
                  "docs_sha256": hash_json([keys[i] for i in chosen]), "seconds": round(time.monotonic() - started, 1)})


def reference_identity(spec: str) -> dict[str, Any]:
    from harness.models import resolve_model

    return {"reference_sha": resolve_model(spec).sha}
