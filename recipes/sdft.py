"""`sdft-rewrite`: self-distillation fine-tuning (seed 003 §3.2-3.3), a domain transform.

The seed model rewrites each domain answer in its own words, shown the original as a reference
answer, under sail-sg/sdft's own templates and decoding (a math variant pre-fills "Great! Let's
think step by step. "). A rewrite is
kept only if its extracted final answer equals the original's and it does not talk about the
reference; otherwise the original answer is kept. Alone it is a no-rehearsal recipe: its mix is the
study's domain rows rewritten, with `fill` as `none` has it (default `alone`: the same domain rows as
every other recipe, nothing else); under `compose` it transforms only the domain share. `rewrite_share` rewrites
only a seeded share of the rows (seed 003 Fig. 7-8 sweep it from 0 to 1), the rest keep their answers.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from harness.answers import answer_extractor, extract_number
from harness.errors import ConfigError
from harness.generation import SAIL_SG_DECODING, Sampling
from harness.hashing import hash_json
from harness.recipe import DomainOnlyParams, DomainOnlyRecipe, RecipeContext, RecipeOutput

# ---- sail-sg/sdft's own texts (the default), word for word from github.com/sail-sg/sdft at bfb6c25:
# `main.py` registers the templates, `eval/gen_distilled_data.py` filters the rewrites.

# Template `alpaca_distill_using`: its system text, the template's "\n\n" separator, then the user slot.
SDFT_GENERAL_SYSTEM = ("Below are an instruction that describes a task along with a reference answer. "
                       "Using the reference answer as a guide, write your own response.")
SDFT_GENERAL = SDFT_GENERAL_SYSTEM + "\n\n" + (
    "### Instruction:\n{instruction}\n\n### Reference Answer:\n{reference}\n\n### Response:\n")
# Template `gsm8k_distill`: a system turn, the question and reference answer as the user turn, and the
# assistant turn pre-filled with "Great! Let's think step by step. " (the rewrite is what follows it).
SDFT_MATH_SYSTEM = ("You are an expert in math. "
                    "Below are a math question and its reference answer. "
                    "Refer to the reference answer and write a response that appropriately answers the question.")
SDFT_MATH_USER = "{instruction}\n\n{reference}"
SDFT_MATH_PREFIX = "Great! Let's think step by step. "
# `verify`: a rewrite containing any of these (case-insensitively), or starting with "Your turn", is rejected.
SDFT_REFERENCE_PHRASES = ("reference answer", "your response", "my response", "your own response", "now it's your turn")
SDFT_REFERENCE_START = "Your turn"
# Rewrite decoding of the paper's code: their LLaMA-Factory fork's generation defaults, which the
# SDFT scripts do not override (do_sample, temperature 0.95, top_p 0.7, top_k 50, max_new_tokens 512).
SDFT_DECODING = SAIL_SG_DECODING

# ---- the harness's own earlier wording (option `wording: harness`, filter `reference_filter: harness`)
HARNESS_GENERAL = """Below is an instruction that describes a task, together with a reference answer. Using the reference answer as a guide, write your own response to the instruction.

### Instruction:
{instruction}

### Reference Answer:
{reference}

### Response:
"""

HARNESS_MATH = """Below is a math problem, together with a reference answer. Using the reference answer as a guide, solve the problem step by step in your own words, and finish with "The answer is <number>."

### Problem:
{instruction}

### Reference Answer:
{reference}

### Response:
"""
HARNESS_MENTIONS_REFERENCE = re.compile(r"reference (answer|response|solution)|the reference|your turn|given answer|"
                                        r"provided (answer|response|solution)|### ", re.IGNORECASE)

@dataclass(frozen=True)
class DistillPrompt:
    """How one row is put to the seed model: the conversation and the pre-filled start of its answer."""

    messages: list[dict]
    assistant_prefix: str = ""


def distill_prompt(wording: str, template: str, instruction: str, reference: str) -> DistillPrompt:
    """The distillation prompt of one row under a wording (`sail-sg` or `harness`) and template kind."""
    if wording == "harness":
        text = (HARNESS_MATH if template == "math" else HARNESS_GENERAL).format(instruction=instruction, reference=reference)
        return DistillPrompt([{"role": "user", "content": text}])
    # sail-sg's template code strips both slots before filling them
    instruction, reference = instruction.strip(), reference.strip()
    if template == "math":
        return DistillPrompt([{"role": "system", "content": SDFT_MATH_SYSTEM},
                              {"role": "user", "content": SDFT_MATH_USER.format(instruction=instruction, reference=reference)}],
                             SDFT_MATH_PREFIX)
    return DistillPrompt([{"role": "user", "content": SDFT_GENERAL.format(instruction=instruction, reference=reference)}])


def mentions_reference(text: str, reference_filter: str) -> bool:
    """Whether a rewrite talks about the reference it was shown (then the original answer is kept)."""
    if reference_filter == "harness":
        return bool(HARNESS_MENTIONS_REFERENCE.search(text))
    lowered = text.lower()
    return any(phrase in lowered for phrase in SDFT_REFERENCE_PHRASES) or text.startswith(SDFT_REFERENCE_START)


class SdftRewrite(DomainOnlyRecipe):
    """Self-distillation (SDFT): the seed model rewrites every domain answer; rewrites are kept only
    when they reach the same final answer and never mention the reference.

    Defaults are sail-sg/sdft's (the paper's code), word for word: the general template
    `alpaca_distill_using`, the math template `gsm8k_distill` (system turn, question and reference as
    the user turn, the answer pre-filled with "Great! Let's think step by step. "), its rejection
    phrases ("reference answer", "your response", "my response", "your own response", "now it's your
    turn", any case, or a rewrite starting with "Your turn"), and its rewrite decoding (sampling,
    temperature 0.95, top_p 0.7, top_k 50, 512 new tokens). `wording: harness` and
    `reference_filter: harness` select this harness's earlier texts instead; `temperature: 0` decodes
    greedily.

    `extractor` picks how final answers are compared: `auto` uses the domain's own extractor
    (`ctx.domain`: GSM8K/MultiArith numbers, MedMCQA/MedQA letters, OpenFunctions calls, or a
    domain file's `answer:`), or name `number`, `letter`, `exact`, `call`, `regex:<pattern>`,
    `none` (no answer check), or a `module:function` of your own. `template`
    `auto` uses the math variant when answers are numbers. `rewrite_share` picks (seeded) the share
    of rows offered for rewriting; the others keep their original answers. Provenance records the
    wording, filter and decoding used, how many rewrites were kept, why the others fell back to the
    original, and how many rows were not offered. `fill` works as for `none` (default `alone`: the
    study's domain rows rewritten, nothing else; `repeat` repeats them to the mix size, each rewritten
    once; `extra-domain` rewrites further domain rows too).
    """

    class Params(DomainOnlyParams):
        extractor: str = Field("auto", description="final-answer extractor: auto, none, number, letter, exact, call, "
                                                   "regex:<pattern> or module:function")
        template: Literal["auto", "general", "math"] = Field("auto", description="distillation template")
        wording: Literal["sail-sg", "harness"] = Field(
            "sail-sg", description="template texts: sail-sg/sdft's alpaca_distill_using and gsm8k_distill, or the harness's own")
        reference_filter: Literal["sail-sg", "harness"] = Field(
            "sail-sg", description="which rewrites count as mentioning the reference: sail-sg/sdft's phrases, or the "
                                   "harness's own regex")
        max_new_tokens: int = Field(SDFT_DECODING.max_new_tokens, gt=0, description="token limit of a rewrite")
        temperature: float = Field(SDFT_DECODING.temperature, ge=0.0, description="rewrite sampling temperature (0: greedy)")
        top_p: float = Field(SDFT_DECODING.top_p, gt=0.0, le=1.0, description="rewrite nucleus-sampling top_p")
        top_k: int = Field(SDFT_DECODING.top_k, ge=0, description="rewrite top-k cut-off (0: none)")
        rewrite_share: float = Field(1.0, ge=0.0, le=1.0, description="share of the rows rewritten (seeded choice)")

        @field_validator("extractor")
        @classmethod
        def _known(cls, value: str) -> str:
            if value not in ("auto", "none"):
                try:
                    answer_extractor(value)
                except ConfigError as exc:
                    raise ValueError(exc.lines[0]) from None
            return value

    def fingerprint(self, data_dir):
        """The texts behind `wording` and `reference_filter`: an edited template never reuses a stored mix."""
        return {"texts_sha256": hash_json([SDFT_GENERAL, SDFT_MATH_SYSTEM, SDFT_MATH_USER, SDFT_MATH_PREFIX,
                                           list(SDFT_REFERENCE_PHRASES), SDFT_REFERENCE_START, HARNESS_GENERAL,
                                           HARNESS_MATH, HARNESS_MENTIONS_REFERENCE.pattern])}

    def _extractor(self, ctx: RecipeContext) -> Callable[[str], str | None] | None:
        name = self.params.extractor
        if name == "none":
            return None
        return ctx.domain.extract if name == "auto" else answer_extractor(name)

    def build(self, ctx: RecipeContext) -> RecipeOutput:
        rows = self.unique_rows(ctx)  # exactly the rows `none` with the same `fill` trains on
        offered = round(self.params.rewrite_share * len(rows))
        chosen = list(range(len(rows))) if offered == len(rows) else sorted(ctx.rng.sample(range(len(rows)), offered))
        sampling = self.sampling(ctx.rng.randrange(2**31))
        rewritten, counts, template = self.rewrite([rows[i] for i in chosen], ctx, sampling)
        result = list(rows)
        for index, row in zip(chosen, rewritten):
            result[index] = row
        mix_rows = self.filled(result, ctx)  # `repeat`: each row rewritten once, then repeated
        return RecipeOutput(domain=mix_rows, rehearsal=[], provenance={
            **self.fill_provenance(len(result), len(mix_rows)), "template": template, "wording": self.params.wording, "reference_filter": self.params.reference_filter,
            "extractor": self.params.extractor, "rewrite_share": self.params.rewrite_share,
            "decoding": _decoding(sampling), "counts": {**counts, "not_offered": len(rows) - offered}})

    def sampling(self, seed: int) -> Sampling:
        p = self.params
        if p.temperature == 0:
            return Sampling(max_new_tokens=p.max_new_tokens)
        return Sampling(max_new_tokens=p.max_new_tokens, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k, seed=seed)

    def rewrite(self, rows: list[dict], ctx: RecipeContext, sampling: Sampling) -> tuple[list[dict], dict, str]:
        """(rows with rewritten final answers where they pass, kept/fallback counts, template used)."""
        if not rows:
            return [], {"kept": 0}, self.params.template
        extract = self._extractor(ctx)
        template = self.params.template
        if template == "auto":
            template = "math" if extract is extract_number else "general"
        prompts = [distill_prompt(self.params.wording, template, _last(r, "user"), _last(r, "assistant")) for r in rows]
        prefix = prompts[0].assistant_prefix
        extra = {"assistant_prefix": prefix} if prefix else {}
        outputs = ctx.backend().chat([p.messages for p in prompts], sampling, desc="sdft rewrites", **extra)
        counts: Counter[str] = Counter()
        result = []
        for row, output in zip(rows, outputs):
            text, original = output.strip(), _last(row, "assistant")
            if not text:
                reason = "fallback_empty"
            elif mentions_reference(text, self.params.reference_filter):
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


def _decoding(sampling: Sampling) -> dict:
    """The rewrite decoding as recorded in provenance."""
    if sampling.greedy:
        return {"sampling": False, "max_new_tokens": sampling.max_new_tokens}
    return {"sampling": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k,
            "max_new_tokens": sampling.max_new_tokens, "seed": sampling.seed}


def _last(row: dict, role: str) -> str:
    return next(m["content"] for m in reversed(row["messages"]) if m["role"] == role)
