"""The domain task's own score: the model answers held-out domain questions (greedy, chat template),
and the domain's extractor checks each answer against the reference."""
from __future__ import annotations

from pathlib import Path

from harness.data import source_hash
from harness.domains import Domain
from harness.generation import GenerationBackend, Sampling
from harness.results import BenchmarkResult, ExampleResult, proportion_score
from harness.subsets import paired_subset


def evaluate_domain(backend: GenerationBackend, domain: Domain, *, data_dir: Path | None, limit: int | None,
                    subset_seed: int, max_new_tokens: int | None = None) -> BenchmarkResult:
    rows = paired_subset(domain.test_rows(data_dir), limit, subset_seed)
    prompts = [row["messages"][:-1] for row in rows]
    sampling = Sampling(max_new_tokens=max_new_tokens or domain.max_new_tokens)
    predictions = backend.chat(prompts, sampling, desc=f"domain {domain.name}")
    examples = []
    for row, prediction in zip(rows, predictions):
        reference = row["messages"][-1]["content"]
        examples.append(ExampleResult(example_id=row["id"], metric=domain.metric, value=domain.score(prediction, reference),
                                      prediction=prediction, target=reference))
    return BenchmarkResult(
        benchmark="domain",
        primary_metric=domain.metric,
        scores=[proportion_score(domain.metric, [e.value for e in examples])],
        examples=examples,
        settings={"domain": domain.name, "limit": limit, "subset_seed": subset_seed,
                  "max_new_tokens": sampling.max_new_tokens, "decoding": "greedy", "chat_template": True,
                  "data_sha256": source_hash(domain.test, data_dir)},
    )
