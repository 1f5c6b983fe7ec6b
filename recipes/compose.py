"""`compose`: combine a domain transform with a rehearsal source through configuration.

    recipes:
      - name: compose
        params:
          domain: sdft-rewrite                       # any recipe entry, string or {name, params}
          rehearsal: {name: reconstructed-committee, params: {members: [seed, seed@1]}}

The domain recipe is built with no rehearsal rows to fill, and only its domain rows are used; the
rehearsal recipe is built as usual and only its rehearsal rows are used. Both see the same domain
share and pool; each draws from its own random stream (harness.recipe.recipe_rng of its own name and
parameters), so `compose` with `rehearsal: public:alpaca` has exactly the rehearsal rows of
`public:alpaca` at the same seed.
"""
from __future__ import annotations

import dataclasses

from pydantic import Field, field_validator

from harness.config import RecipeEntry
from harness.recipe import Recipe, RecipeContext, RecipeOutput, RecipeParams, make_recipe, recipe_rng


class Compose(Recipe):
    """Domain rows from one recipe (e.g. `sdft-rewrite`), rehearsal rows from another (e.g.
    `public:alpaca`, `reconstructed-committee`). Each part's provenance is kept under its name."""

    class Params(RecipeParams):
        domain: RecipeEntry = Field(RecipeEntry(name="none"),
                                    description="recipe entry whose domain rows are used (e.g. sdft-rewrite)")
        rehearsal: RecipeEntry = Field(description="recipe entry whose rehearsal rows are used (e.g. public:alpaca)")

        @field_validator("domain", "rehearsal", mode="before")
        @classmethod
        def _entry(cls, value):
            entry = RecipeEntry.model_validate(value)
            if entry.name == "compose":
                raise ValueError("compose cannot nest compose")
            make_recipe(entry)  # unknown names and bad params fail early
            return entry

    @staticmethod
    def _rng(ctx: RecipeContext, recipe: Recipe):
        """The part's own stream, the one it would get as a recipe of its own."""
        return recipe_rng(ctx.seed, recipe.name, recipe.params.model_dump(mode="json"))

    def fingerprint(self, data_dir):
        return {part: make_recipe(getattr(self.params, part)).fingerprint(data_dir) for part in ("domain", "rehearsal")}

    def domain_rows_needed(self, n_domain: int, n_rehearsal: int) -> int:
        return max(make_recipe(self.params.domain).domain_rows_needed(n_domain, 0),
                   make_recipe(self.params.rehearsal).domain_rows_needed(n_domain, n_rehearsal))

    def build(self, ctx: RecipeContext) -> RecipeOutput:
        domain_recipe, rehearsal_recipe = make_recipe(self.params.domain), make_recipe(self.params.rehearsal)
        domain_rng, rehearsal_rng = self._rng(ctx, domain_recipe), self._rng(ctx, rehearsal_recipe)
        domain_out = domain_recipe.build(dataclasses.replace(ctx, rehearsal_size=0, rng=domain_rng))
        rehearsal_out = rehearsal_recipe.build(dataclasses.replace(ctx, rng=rehearsal_rng))

        def part(entry, recipe, out):
            return {"recipe": entry.name, "params": recipe.params.model_dump(mode="json"), "provenance": out.provenance}

        return RecipeOutput(domain=domain_out.domain, rehearsal=rehearsal_out.rehearsal, provenance={
            "domain": part(self.params.domain, domain_recipe, domain_out),
            "rehearsal": part(self.params.rehearsal, rehearsal_recipe, rehearsal_out)})
