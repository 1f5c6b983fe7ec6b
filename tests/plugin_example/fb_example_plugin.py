"""A third-party recipe in one short file (the README's example)."""
from pydantic import Field

from harness.api import Recipe, RecipeContext, RecipeOutput, RecipeParams, Sampling


class SelfAnswers(Recipe):
    """Rehearse on the seed model's own answers to unused domain questions."""

    class Params(RecipeParams):
        max_new_tokens: int = Field(128, gt=0, description="answer length")

    def build(self, ctx: RecipeContext) -> RecipeOutput:
        rows = ctx.rng.sample(ctx.domain_pool, ctx.rehearsal_size)
        prompts = [r["messages"][:-1] for r in rows]
        answers = ctx.backend().chat(prompts, Sampling(max_new_tokens=self.params.max_new_tokens))
        rehearsal = [{"id": r["id"], "source": "self", "messages": p + [{"role": "assistant", "content": a.strip() or "-"}]}
                     for r, p, a in zip(rows, prompts, answers)]
        return RecipeOutput(domain=ctx.domain_rows, rehearsal=rehearsal)
