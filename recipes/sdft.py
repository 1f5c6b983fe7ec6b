"""`sdft-rewrite`: self-distillation fine-tuning (seed 003 §3.2-3.3), a domain transform.

The seed model rewrites each domain answer in its own words, shown the original as a reference
answer (a math variant asks for step-by-step reasoning ending in "The answer is N."). A rewrite is
kept only if its extracted final answer equals the original's and it does not talk about the
reference; otherwise the original answer is kept. Alone it is a no-rehearsal recipe (the mix is all
rewritten domain rows); under `compose` it transforms only the domain share. `rewrite_share` rewrites
only a seeded share of the rows (seed 003 Fig. 7-8 sweep it from 0 to 1), the rest keep their answers.
"""
from __future__ import annotations

import importlib
import re
from collections import Counter
from collections.abc import Callable
from typing import Literal

from pydantic import Field, field_validator

from harness.domains import DOMAINS, extract_call, extract_letter, extract_number
from harness.errors import DataError
from harness.generation import Sampling
from harness.recipe import Recipe, RecipeContext, RecipeOutput, RecipeParams

GENERAL = """Below is an instruction that describes a task, together with a reference answer. Using the reference answer as a guide, write your own response to the instruction.

### Instruction:
{instruction}

### Reference Answer:
{reference}

### Response:
"""

MATH = """Below is a math problem, together with a reference answer. Using the reference answer as a guide, solve the problem step by step in your own words, and finish with "The answer is <number>."

### Problem:
{instruction}

### Reference Answer:
{reference}

### Response:
"""

TEMPLATES = {"general": GENERAL, "math": MATH}
EXTRACTORS: dict[str, Callable[[str], str | None]] = {"number": extract_number, "letter": extract_letter,
                                                      "call": extract_call}
# a rewrite that talks about the reference it was shown is not the model's own answer
MENTIONS_REFERENCE = re.compile(r"reference (answer|response|solution)|the reference|your turn|given answer|"
                                r"provided (answer|response|solution)|### ", re.IGNORECASE)


class SdftRewrite(Recipe):
    """Self-distillation (SDFT): the seed model rewrites every domain answer; rewrites are kept only
    when they reach the same final answer and never mention the reference.

    `extractor` picks how final answers are compared: `auto` uses the domain's own extractor
    (GSM8K/MultiArith numbers, MedMCQA/MedQA letters, OpenFunctions calls), or name `number`,
    `letter`, `call`, `none` (no answer check), or a `module:function` of your own. `template`
    `auto` uses the math variant when answers are numbers. `rewrite_share` picks (seeded) the share
    of rows offered for rewriting; the others keep their original answers. Provenance records how many
    rewrites were kept, why the others fell back to the original, and how many rows were not offered.
    """

    class Params(RecipeParams):
        extractor: str = Field("auto", description="final-answer extractor: auto, number, letter, call, none, or module:function")
        template: Literal["auto", "general", "math"] = Field("auto", description="distillation template")
        max_new_tokens: int = Field(512, gt=0, description="token limit of a rewrite")
        rewrite_share: float = Field(1.0, ge=0.0, le=1.0, description="share of the rows rewritten (seeded choice)")

        @field_validator("extractor")
        @classmethod
        def _known(cls, value: str) -> str:
            if value not in ("auto", "none", *EXTRACTORS) and ":" not in value:
                raise ValueError(f"unknown extractor {value!r}: auto, none, {', '.join(EXTRACTORS)} or module:function")
            return value

    def _extractor(self, source: str) -> Callable[[str], str | None] | None:
        name = self.params.extractor
        if name == "none":
            return None
        if name == "auto":
            return DOMAINS[source].extract if source in DOMAINS else None
        if name in EXTRACTORS:
            return EXTRACTORS[name]
        module, _, function = name.partition(":")
        return getattr(importlib.import_module(module), function)

    def domain_rows_needed(self, n_domain: int, n_rehearsal: int) -> int:
        return n_domain + n_rehearsal  # every mix row is a (possibly rewritten) domain row

    def build(self, ctx: RecipeContext) -> RecipeOutput:
        if len(ctx.domain_pool) < ctx.rehearsal_size:
            raise DataError(f"sdft-rewrite: needs {ctx.rehearsal_size} more domain rows; {len(ctx.domain_pool)} remain")
        rows = ctx.domain_rows + ctx.rng.sample(ctx.domain_pool, ctx.rehearsal_size)
        offered = round(self.params.rewrite_share * len(rows))
        # all rows: no draw, so the RNG (shared with compose's rehearsal recipe) is untouched
        chosen = list(range(len(rows))) if offered == len(rows) else sorted(ctx.rng.sample(range(len(rows)), offered))
        rewritten, counts, template = self.rewrite([rows[i] for i in chosen], ctx)
        result = list(rows)
        for index, row in zip(chosen, rewritten):
            result[index] = row
        return RecipeOutput(domain=result, rehearsal=[], provenance={
            "template": template, "extractor": self.params.extractor, "rewrite_share": self.params.rewrite_share,
            "counts": {**counts, "not_offered": len(rows) - offered}})

    def rewrite(self, rows: list[dict], ctx: RecipeContext) -> tuple[list[dict], dict, str]:
        """(rows with rewritten final answers where they pass, kept/fallback counts, template used)."""
        if not rows:
            return [], {"kept": 0}, self.params.template
        extract = self._extractor(rows[0]["source"])
        template = self.params.template
        if template == "auto":
            template = "math" if extract is extract_number else "general"
        prompts = [[{"role": "user", "content": TEMPLATES[template].format(
            instruction=_last(r, "user"), reference=_last(r, "assistant"))}] for r in rows]
        outputs = ctx.backend().chat(prompts, Sampling(max_new_tokens=self.params.max_new_tokens), desc="sdft rewrites")
        counts: Counter[str] = Counter()
        result = []
        for row, output in zip(rows, outputs):
            text, original = output.strip(), _last(row, "assistant")
            if not text:
                reason = "fallback_empty"
            elif MENTIONS_REFERENCE.search(text):
                reason = "fallback_mentions_reference"
            elif extract is not None and (extract(original) is None or extract(text) != extract(original)):
                reason = "fallback_answer_mismatch"
            else:
                reason = "kept"
            counts[reason] += 1
            if reason == "kept":
                messages = [dict(m) for m in row["messages"]]
                messages[max(i for i, m in enumerate(messages) if m["role"] == "assistant")]["content"] = text
                row = {**row, "messages": messages}
            result.append(row)
        return result, {"kept": counts["kept"], "fallback": sum(v for k, v in counts.items() if k != "kept"),
                        **{k: v for k, v in sorted(counts.items()) if k != "kept"}}, template


def _last(row: dict, role: str) -> str:
    return next(m["content"] for m in reversed(row["messages"]) if m["role"] == role)
