"""`none`: vanilla fine-tuning, no rehearsal."""
from __future__ import annotations

from harness.errors import DataError
from harness.recipe import Recipe, RecipeContext, RecipeOutput


class NoRehearsal(Recipe):
    """Vanilla fine-tuning on domain data only: the forgetting every other recipe is measured against.

    The mix keeps the study's total size, so every recipe gets the same number of training steps:
    the rows other recipes spend on rehearsal are filled with further domain rows, the next ones in
    the seed's domain order (so its first domain rows are exactly every other recipe's domain rows).
    """

    def domain_rows_needed(self, n_domain: int, n_rehearsal: int) -> int:
        return n_domain + n_rehearsal  # the rehearsal share is filled with further domain rows

    def build(self, ctx: RecipeContext) -> RecipeOutput:
        if len(ctx.domain_pool) < ctx.rehearsal_size:
            raise DataError(
                f"recipe none: needs {ctx.rehearsal_size} more domain rows but only "
                f"{len(ctx.domain_pool)} remain; lower mix.size"
            )
        extra = ctx.domain_pool[:ctx.rehearsal_size]
        return RecipeOutput(domain=ctx.domain_rows + extra, rehearsal=[], provenance={"extra_domain_rows": len(extra)})
