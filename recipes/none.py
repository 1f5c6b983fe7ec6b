"""`none`: vanilla fine-tuning, no rehearsal."""
from __future__ import annotations

from harness.recipe import DomainOnlyRecipe, RecipeContext, RecipeOutput


class NoRehearsal(DomainOnlyRecipe):
    """Vanilla fine-tuning on domain data only: the forgetting every other recipe is measured against.

    By default (`fill: alone`) the mix is the study's domain rows alone — exactly the domain rows every
    other recipe of the seed trains on — so the comparison with a rehearsal recipe differs only in the
    rehearsal rows (and `none` takes fewer steps). `none:repeat` repeats those rows to the mix size
    (the same rows, as many steps as the others); `none:extra-domain` fills the rehearsal share with
    further domain rows (more domain data than the others: `compare` refuses to pair it with them
    unless asked).
    """

    shorthand = "fill"

    def build(self, ctx: RecipeContext) -> RecipeOutput:
        unique = self.unique_rows(ctx)
        rows = self.filled(unique, ctx)
        return RecipeOutput(domain=rows, rehearsal=[], provenance=self.fill_provenance(len(unique), len(rows)))
