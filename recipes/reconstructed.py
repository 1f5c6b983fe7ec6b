"""`reconstructed-single` and `reconstructed-committee`: rehearse on instruction data reconstructed
from the seed model itself (seed 000 §3.1).

Both draw instructions from the seed model with the Magpie pre-query template (recipes/reconstruction.py),
then answer them: the single-model recipe with the seed model (greedy, or L sampled answers picked
by the seed model as its own judge), the committee with K members writing L answers each, judged by
every member with the Table 3 prompt. Every generation goes through the cached, batched backend.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from harness.generation import Sampling, is_endpoint
from harness.hashing import hash_json
from harness.recipe import Recipe, RecipeContext, RecipeOutput, RecipeParams
from recipes.reconstruction import (
    JUDGE_PROMPTS,
    InstructionSampler,
    Member,
    distinct_groups,
    judge_groups,
    member_model,
    parse_score,
    resolve_members,
    select,
    static_effective_counts,
    take,
)


class _CommonParams(RecipeParams):
    responses_per_instruction: int = Field(1, ge=1, description="L: answers written per instruction (per member)")
    instruction_max_new_tokens: int = Field(256, gt=0, description="token limit of a sampled instruction")
    answer_max_new_tokens: int = Field(512, gt=0, description="token limit of an answer")
    judge_max_new_tokens: int = Field(256, gt=0, description="token limit of a judgment")
    answer_temperature: float = Field(
        0.7, gt=0.0, description="nucleus-sampling temperature of answers when L > 1 or in a committee")
    answer_top_p: float = Field(0.9, gt=0.0, le=1.0, description="nucleus-sampling top_p of answers when L > 1 or in a committee")
    max_instruction_words: int = Field(300, gt=0, description="instructions longer than this are dropped")
    near_duplicate_jaccard: float = Field(
        0.7, gt=0.0, le=1.0,
        description="word-3-gram Jaccard similarity at which an instruction counts as a near duplicate")
    max_draws_factor: float = Field(
        4.0, ge=1.0, description="at most this many instruction draws per rehearsal row before giving up")
    judge_prompt: Literal["table3", "harness"] = Field(
        "table3", description="judge prompt: seed 000's Table 3 word for word, or the harness's own earlier prompt")
    judge_decoding: Literal["greedy", "sampled"] = Field(
        "greedy", description="greedy: members that are the same model are one judge (counted once); "
                              "sampled: every member judges by sampling with its own seed")
    judge_temperature: float = Field(0.7, gt=0.0, description="sampling temperature of judgments when judge_decoding is sampled")
    judge_top_p: float = Field(
        0.9, gt=0.0, le=1.0, description="nucleus-sampling top_p of judgments when judge_decoding is sampled")


class _Reconstructed(Recipe):
    """Shared build: instructions -> candidates per member -> judgments -> one answer each."""

    def members(self, ctx: RecipeContext, seed: int) -> list[Member]:
        raise NotImplementedError

    def judged(self) -> bool:
        return True

    def build(self, ctx: RecipeContext) -> RecipeOutput:
        p = self.params
        seed = ctx.rng.randrange(2**31)
        members = self.members(ctx, seed)
        judges = self._distinct_judges(members, ctx) if self.judged() else []
        sampler = InstructionSampler(ctx.backend(), seed, p.instruction_max_new_tokens, p.max_instruction_words,
                                     near_duplicate=p.near_duplicate_jaccard,
                                     max_draws=max(1, round(p.max_draws_factor * ctx.rehearsal_size)))
        stream = sampler.stream()
        rows: list[dict] = []
        records: list[dict[str, Any]] = []
        judgments = {"total": 0, "unparseable": 0}
        no_answer = 0
        while len(rows) < ctx.rehearsal_size:
            instructions = take(stream, ctx.rehearsal_size - len(rows))
            candidates = self._candidates(members, instructions)
            scores = self._judge(judges, instructions, candidates, judgments) if self.judged() else None
            for i, instruction in enumerate(instructions):
                options = candidates[i]
                row_scores = scores[i] if scores else [[None]] * len(options)
                usable = [j for j, (_, text) in enumerate(options) if text.strip()]
                if not usable:
                    no_answer += 1
                    continue
                best, means = select([row_scores[j] for j in usable])
                chosen = usable[best]
                index = len(rows)
                rows.append({"id": f"{self.source}/{index}", "source": self.source, "messages": [
                    {"role": "user", "content": instruction},
                    {"role": "assistant", "content": options[chosen][1].strip()}]})
                if scores:
                    records.append({"row": index, "chosen": chosen, "candidates": [
                        {"member": options[j][0], "sample": j % p.responses_per_instruction,
                         "scores": row_scores[j], "mean": means[usable.index(j)] if j in usable else None}
                        for j in range(len(options))]})
        generators = distinct_groups([(m.identity, hash_json(self._sampling(m).key())) for m in members])
        provenance = {
            "seed_model": ctx.seed_model.sha, "members": [m.spec for m in members],
            "effective": {"members": len(members), "generators": len(generators), "judges": len(judges)},
            "instruction_sampling": {"prefix": sampler.prefix, "stop": sampler.end, "temperature": 1.0, "top_p": 1.0},
            "instruction_cleaning": dict(sampler.stats), "instructions_without_answer": no_answer,
        }
        if self.judged():
            provenance.update(judges=[[m.spec for m in group] for group in self._judge_groups(members)],
                              judge_prompt=p.judge_prompt, judge_decoding=p.judge_decoding,
                              judgments=judgments, candidate_scores=records)
        return RecipeOutput(domain=ctx.domain_rows, rehearsal=rows, provenance=provenance)

    def _judge_groups(self, members: list[Member]) -> list[list[Member]]:
        groups = judge_groups([m.identity for m in members], self.params.judge_decoding)
        return [[members[i] for i in group] for group in groups]

    def _distinct_judges(self, members: list[Member], ctx: RecipeContext) -> list[Member]:
        """One member per distinct judge; members that would repeat one judgment are named in a warning."""
        groups = self._judge_groups(members)
        for group in groups:
            if len(group) > 1:
                ctx.log.warning("committee members %s are the same model judging with the same greedy decoding: "
                                "one judge, counted once (judge_decoding: sampled gives each its own seed)",
                                ", ".join(m.spec for m in group))
        return [group[0] for group in groups]

    def fingerprint(self, data_dir):
        """The judge prompt texts and the weights of members that are other models (by their hash): an
        edited prompt or a changed member checkpoint never reuses a stored mix."""
        found = {"judge_prompts_sha256": hash_json(JUDGE_PROMPTS)} if self.judged() else {}
        other_models = sorted({member_model(s) for s in getattr(self.params, "members", ())} - {"seed"})
        other_models = [spec for spec in other_models if not is_endpoint(spec)]
        if other_models:
            from harness.models import resolve_model

            found["member_model_shas"] = {spec: resolve_model(spec).sha for spec in other_models}
        return found

    def _sampling(self, member: Member) -> Sampling:
        p = self.params
        if not self.judged():  # one greedy answer
            return Sampling(max_new_tokens=p.answer_max_new_tokens)
        return Sampling(max_new_tokens=p.answer_max_new_tokens, temperature=p.answer_temperature,
                        top_p=p.answer_top_p, seed=member.sampler_seed)

    def _candidates(self, members: list[Member], instructions: list[str]) -> list[list[tuple[str, str]]]:
        """Per instruction: (member spec, answer) for every member and sample, member-major."""
        L = self.params.responses_per_instruction
        out: list[list[tuple[str, str]]] = [[] for _ in instructions]
        for member in members:
            conversations = [[{"role": "user", "content": text}] for text in instructions for _ in range(L)]
            answers = member.chat(conversations, self._sampling(member), desc=f"answers by {member.spec}")
            for k, answer in enumerate(answers):
                out[k // L].append((member.spec, answer))
        return out

    def _judge_sampling(self, judge: Member) -> Sampling:
        p = self.params
        if p.judge_decoding == "greedy":
            return Sampling(max_new_tokens=p.judge_max_new_tokens)
        return Sampling(max_new_tokens=p.judge_max_new_tokens, temperature=p.judge_temperature, top_p=p.judge_top_p,
                        seed=judge.sampler_seed)

    def _judge(self, judges, instructions, candidates, judgments) -> list[list[list[float | None]]]:
        """scores[instruction][candidate][judge], one column per distinct judge; unparseable judgments
        are None and counted."""
        template = JUDGE_PROMPTS[self.params.judge_prompt]
        prompts = [[{"role": "user", "content": template.format(instruction=inst, response=text.strip())}]
                   for inst, options in zip(instructions, candidates) for _, text in options]
        per_judge = [[parse_score(t) for t in judge.chat(prompts, self._judge_sampling(judge), desc=f"judging by {judge.spec}")]
                     for judge in judges]
        judgments["total"] += len(prompts) * len(judges)
        judgments["unparseable"] += sum(s is None for column in per_judge for s in column)
        flat = [list(row) for row in zip(*per_judge)]
        out, k = [], 0
        for options in candidates:
            out.append(flat[k:k + len(options)])
            k += len(options)
        return out


class ReconstructedSingle(_Reconstructed):
    """Single-model reconstruction (Magpie-style): the seed model writes the instructions and answers them.

    Instructions come from the seed model prompted with only its pre-query template (the chat
    template's text before a user turn's content, derived from the tokenizer, default system
    prompt included as the model sees it), sampled at temperature 1, top_p 1, stopping at the end
    of the user turn; they are cleaned (stripped; empty, degenerate, over-long, exact- and
    near-duplicate ones dropped). Each is answered greedily by the seed model. With
    `responses_per_instruction` L > 1 and `self_judge: true` the seed model writes L sampled
    answers and judges them itself with the committee's Table 3 prompt, keeping the best: the
    paper's "Single-Model-Multi-Response-Filtered" ablation.
    """

    source = "reconstructed-single"

    class Params(_CommonParams):
        self_judge: bool = Field(False, description="judge the L answers with the seed model and keep the best (needs L > 1)")

        @model_validator(mode="after")
        def _judge_needs_choices(self):
            if self.self_judge != (self.responses_per_instruction > 1):
                raise ValueError("self_judge: true goes with responses_per_instruction > 1, and L > 1 needs self_judge: true")
            return self

    def judged(self) -> bool:
        return self.params.self_judge

    def members(self, ctx, seed):
        return resolve_members(["seed"], ctx, seed)


class ReconstructedCommittee(_Reconstructed):
    """Committee reconstruction: K models answer the seed model's own instructions; the committee judges.

    Instructions are drawn and cleaned as in `reconstructed-single`. Each member writes L answers
    with nucleus sampling; every member judges every candidate with the Table 3 prompt (5-point
    scale, "Score: <rating>" on the last line); scores are parsed robustly, unparseable judgments are
    counted and left out of the mean; the candidate with the highest mean over judges wins, ties to
    the earliest member and sample. All candidate scores are kept in the mix's provenance.
    Judges are distinct: members that resolve to the same model judging greedily give one judgment
    and count as one judge (a warning names them); with `judge_decoding: sampled` every member
    judges by sampling with its own seed. The mix's provenance records the effective numbers of
    distinct generators and judges (`effective`) and which members formed each judge (`judges`).
    Members: `seed` (the seed model), `seed@N` (the seed model with sampler seed N), any model spec
    (`SPEC` or `SPEC@N`), or an OpenAI-compatible endpoint `http(s)://HOST/v1#MODEL`.
    """

    source = "reconstructed-committee"
    shorthand = None

    class Params(_CommonParams):
        members: list[str] = Field(["seed", "seed@1", "seed@2"], min_length=1,
                                   description="committee members: seed, seed@N, a model spec, or http(s)://HOST/v1#MODEL")
        responses_per_instruction: int = Field(3, ge=1, description="L: answers written per instruction by each member")

    def members(self, ctx, seed):
        return resolve_members(self.params.members, ctx, seed)

    @classmethod
    def show_notes(cls) -> list[str]:
        lines = []
        for decoding in ("greedy", "sampled"):
            params = cls.Params(judge_decoding=decoding)
            counts = static_effective_counts(params.members, decoding)
            lines.append(f"Default committee ({', '.join(params.members)}) with judge_decoding {decoding}: "
                         f"{counts['generators']} distinct generators, {counts['judges']} distinct "
                         f"judge{'s' if counts['judges'] != 1 else ''}.")
        return lines
