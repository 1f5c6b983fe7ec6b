"""An example benchmark plugin: can the model repeat a word when asked to?"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from harness.api import (
    Benchmark,
    BenchmarkContext,
    BenchmarkParams,
    BenchmarkResult,
    DataError,
    ExampleResult,
    Sampling,
    hash_file,
    paired_subset,
    proportion_score,
)

WORDS = Path(__file__).with_name("words.jsonl")


class Echo(Benchmark):
    """Ask the model to repeat a word; score the share of answers that contain it."""

    class Params(BenchmarkParams):
        max_new_tokens: int = Field(16, gt=0, description="answer budget")
        instruction: str = Field("Repeat this word exactly: {word}", description="the prompt, {word} filled in")

    group = "side"
    data_sources = ("words.jsonl, shipped with the package",)

    def check_data(self, ctx: BenchmarkContext) -> None:
        if not WORDS.is_file():
            raise DataError(f"{WORDS}: echo's word list not found")

    def fingerprint(self, ctx: BenchmarkContext) -> dict:
        self.check_data(ctx)
        return {"words_sha256": hash_file(WORDS)}

    def evaluate(self, ctx: BenchmarkContext) -> BenchmarkResult:
        rows = [json.loads(line) for line in WORDS.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = paired_subset(rows, self.params.limit, ctx.subset_seed)
        prompts = [[{"role": "user", "content": self.params.instruction.format(word=r["word"])}] for r in rows]
        answers = ctx.generator().chat(prompts, Sampling(max_new_tokens=self.params.max_new_tokens), desc="echo")
        examples = [ExampleResult(r["id"], "echoed", float(r["word"].lower() in a.lower()), a, r["word"])
                    for r, a in zip(rows, answers)]
        return BenchmarkResult(benchmark="echo", primary_metric="echoed",
                               scores=[proportion_score("echoed", [e.value for e in examples])], examples=examples,
                               settings={"limit": self.params.limit, "max_new_tokens": self.params.max_new_tokens})
