"""`public:<set>`: rehearse on a public instruction-tuning set.

Ten sets, each with its Hugging Face Hub id, split and an adapter for that set's real schema (the
four mirrored in the local data directory also read the mirror's files). Multi-turn sets stay
multi-turn; system turns are kept.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.data import is_usable, load_conversations, source_hash
from harness.errors import DataError
from harness.public_sets import PUBLIC_SETS
from harness.recipe import Recipe, RecipeContext, RecipeOutput, RecipeParams


class Params(RecipeParams):
    set: Literal[tuple(PUBLIC_SETS)] = Field(description="which public SFT set to mix in")  # type: ignore[valid-type]


class PublicSet(Recipe):
    """Mix in rows sampled (seeded, without replacement) from a public SFT data set.

    Rows keep their original conversations, multi-turn included. The set comes from the local
    mirror when a data directory is given and the mirror has it (alpaca, dolly, lima, sharegpt),
    else from its Hugging Face Hub id: tatsu-lab/alpaca, databricks/databricks-dolly-15k,
    GAIR/lima, anon8231489123/ShareGPT_Vicuna_unfiltered (its ShareGPT_V3_unfiltered_cleaned_split.json
    file), HuggingFaceH4/ultrachat_200k
    (train_sft), teknium/openhermes, teknium/OpenHermes-2.5, allenai/WildChat-1M,
    WizardLMTeam/WizardLM_evol_instruct_V2_196k, tomg-group-umd/GenQA (all nine splits),
    allenai/tulu-v2-sft-mixture.
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
