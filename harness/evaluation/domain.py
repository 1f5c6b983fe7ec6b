"""The domain task's own score: the model answers held-out domain questions (greedy, chat template),
and the domain's extractor checks each answer against the reference."""
from __future__ import annotations

import math
import random
from pathlib import Path

from harness.data import source_hash
from harness.domains import Domain
from harness.generation import GenerationBackend, Sampling
from harness.results import BenchmarkResult, ExampleResult, Score


def seeded_subset(rows: list, limit: int | None, seed: int) -> list:
    """The same `limit` rows for every model (so runs are paired), in their original order."""
    if limit is None or limit >= len(rows):
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]


def evaluate_domain(backend: GenerationBackend, domain: Domain, *, data_dir: Path | None, limit: int | None,
                    subset_seed: int, max_new_tokens: int | None = None) -> BenchmarkResult:
    rows = seeded_subset(domain.test_rows(data_dir), limit, subset_seed)
    prompts = [row["messages"][:-1] for row in rows]
    sampling = Sampling(max_new_tokens=max_new_tokens or domain.max_new_tokens)
    predictions = backend.chat(prompts, sampling, desc=f"domain {domain.name}")
    examples = []
    for row, prediction in zip(rows, predictions):
        reference = row["messages"][-1]["content"]
        examples.append(ExampleResult(example_id=row["id"], metric=domain.metric, value=domain.score(prediction, reference),
                                      prediction=prediction, target=reference))
    n = len(examples)
    accuracy = sum(e.value for e in examples) / n if n else float("nan")
    stderr = math.sqrt(accuracy * (1 - accuracy) / (n - 1)) if n > 1 else None
    return BenchmarkResult(
        benchmark="domain",
        primary_metric=domain.metric,
        scores=[Score(domain.metric, accuracy, stderr, n)],
        examples=examples,
        settings={"domain": domain.name, "limit": limit, "subset_seed": subset_seed,
                  "max_new_tokens": sampling.max_new_tokens, "decoding": "greedy", "chat_template": True,
                  "data_sha256": source_hash(domain.test, data_dir)},
    )
