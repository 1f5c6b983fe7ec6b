"""`public:<set>`: rehearse on a public instruction-tuning set."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.data import DataSource, alpaca_messages, is_usable, load_conversations, sharegpt_messages, source_hash
from harness.errors import DataError
from harness.recipe import Recipe, RecipeContext, RecipeOutput, RecipeParams


def dolly_messages(row: dict) -> list:
    """Dolly: the mirror's Alpaca rendering, or the Hub's instruction/context/response."""
    if "response" in row:
        row = {"instruction": row["instruction"], "input": row.get("context", ""), "output": row["response"]}
    return alpaca_messages(row)


PUBLIC_SETS: dict[str, DataSource] = {
    "alpaca": DataSource("alpaca", alpaca_messages, "rehearsal/alpaca/alpaca_2k.json", "tatsu-lab/alpaca"),
    "dolly": DataSource("dolly", dolly_messages, "rehearsal/dolly/dolly_2k.json", "databricks/databricks-dolly-15k"),
    "lima": DataSource("lima", alpaca_messages, "rehearsal/lima/lima_train.json", "GAIR/lima"),
    "sharegpt": DataSource("sharegpt", sharegpt_messages, "rehearsal/sharegpt/sharegpt_v3_first5000.json",
                           "anon8231489123/ShareGPT_Vicuna_unfiltered"),
}


class Params(RecipeParams):
    set: Literal[tuple(PUBLIC_SETS)] = Field(description="which public SFT set to mix in")  # type: ignore[valid-type]


class PublicSet(Recipe):
    """Mix in rows sampled (seeded, without replacement) from a public SFT data set.

    Rows keep their original conversations, multi-turn included. The set comes from the local
    mirror when a data directory is given, else from its Hugging Face Hub id.
    """

    Params = Params
    shorthand = "set"

    def fingerprint(self, data_dir):
        return {"data_sha256": source_hash(PUBLIC_SETS[self.params.set], data_dir)}

    def build(self, ctx: RecipeContext) -> RecipeOutput:
        source = PUBLIC_SETS[self.params.set]
        loaded = load_conversations(source, ctx.data_dir)
        pool = [row for row in loaded if is_usable(row)]
        if len(pool) < ctx.rehearsal_size:
            raise DataError(f"public set {source.name!r} has {len(pool)} rows; the mix needs {ctx.rehearsal_size}")
        rows = ctx.rng.sample(pool, ctx.rehearsal_size)
        return RecipeOutput(
            domain=ctx.domain_rows,
            rehearsal=rows,
            provenance={"source": source.describe(), **self.fingerprint(ctx.data_dir),
                        "rows_loaded": len(loaded), "rows_usable": len(pool)},
        )
