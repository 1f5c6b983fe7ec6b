"""The recipe interface and its registry.

A recipe builds the non-domain part of a training mix (and may transform the domain part). It is a
class with a docstring, a pydantic `Params` model (typed, defaulted, validated parameters) and one
method, `build(ctx) -> RecipeOutput`. Recipes register through the entry-point group
`forgetbench.recipes`, built-ins exactly like third-party packages:

    [project.entry-points."forgetbench.recipes"]
    my-recipe = "my_package.my_module:MyRecipe"
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.hashing import hash_json
from harness.registry import Registry, describe_params, shorthand_line, validate_params

if TYPE_CHECKING:
    from harness.data import Conversation
    from harness.domains import Domain
    from harness.generation import GenerationBackend
    from harness.models import ResolvedModel

ENTRY_POINT_GROUP = "forgetbench.recipes"


class RecipeParams(BaseModel):
    """Base for a recipe's parameters: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class RecipeContext:
    """What a recipe gets to work with."""

    seed_model: ResolvedModel
    domain: Domain  # the study's domain task: its name, data and answer extractor
    domain_rows: list[Conversation]  # the domain share of the mix: the same rows for every recipe of a seed
    domain_pool: list[Conversation]  # the remaining domain training rows, in the seed's order: take from the front
    rehearsal_size: int  # how many rehearsal rows the recipe must return
    rng: random.Random  # the recipe's own seeded stream (seed, name, params): use it for every random choice
    data_dir: Path | None  # local mirror, or None to load from the Hugging Face Hub
    backend: Callable[[], GenerationBackend]  # the seed model's generation backend, made on first call
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("forgetbench.recipe"))
    seed: int = 0  # the mix's seed (what `rng` and the domain rows derive from)


@dataclass
class RecipeOutput:
    """What a recipe gives back: the rows and a JSON-able description of how they were made."""

    domain: list[Conversation]
    rehearsal: list[Conversation]
    provenance: dict[str, Any] = field(default_factory=dict)


class Recipe:
    """Base class of all recipes. Subclasses write a docstring (shown by `recipes show`), may
    declare `Params`, may name a `shorthand` parameter (set by `name:value` in a study), and
    implement `build`."""

    Params: ClassVar[type[RecipeParams]] = RecipeParams
    shorthand: ClassVar[str | None] = None

    def __init__(self, params: RecipeParams, name: str = ""):
        self.params = params
        self.name = name  # the name it is registered under (set when the registry makes it)

    def build(self, ctx: RecipeContext) -> RecipeOutput:
        raise NotImplementedError

    @classmethod
    def show_notes(cls) -> list[str]:
        """Extra lines for `recipes show` (e.g. what the defaults amount to). Default: none."""
        return []

    def domain_rows_needed(self, n_domain: int, n_rehearsal: int) -> int:
        """Domain training rows a mix of these sizes draws (checked by `validate` before any work).
        Default: the mix's domain part; recipes that fill rehearsal rows from the domain pool say so."""
        return n_domain

    def mix_rows(self, n_domain: int, n_rehearsal: int) -> int:
        """Rows the recipe's mix holds (checked when it is built). Default: the study's mix size."""
        return n_domain + n_rehearsal

    def fingerprint(self, data_dir: Path | None) -> dict[str, Any]:
        """Identity of any data the recipe reads beyond its parameters (e.g. a file's hash), so a
        changed input never reuses a stale mix. Default: nothing."""
        return {}


DomainFill = Literal["alone", "repeat", "extra-domain"]


class DomainOnlyParams(RecipeParams):
    """Parameters of a recipe whose mix holds domain rows only (`none`, `sdft-rewrite`)."""

    fill: DomainFill = Field(
        "alone", description="what stands in the rehearsal share: alone = nothing, the mix's domain rows only "
                             "(vanilla fine-tuning as seed 003 runs it: the same domain rows as every other recipe, "
                             "fewer steps); repeat = those rows repeated to the mix size (the same rows, as many "
                             "steps); extra-domain = further domain rows (more domain data than the other recipes)")


class DomainOnlyRecipe(Recipe):
    """Base of the recipes that train on domain rows only. The `fill` parameter says what takes the
    rehearsal share's place; the mix records it and `compare` refuses to pair runs that trained on
    different domain rows (`extra-domain` against a rehearsal recipe, `repeat` against `alone`)."""

    Params: ClassVar[type[RecipeParams]] = DomainOnlyParams

    def domain_rows_needed(self, n_domain: int, n_rehearsal: int) -> int:
        return n_domain + n_rehearsal if self.params.fill == "extra-domain" else n_domain

    def mix_rows(self, n_domain: int, n_rehearsal: int) -> int:
        return n_domain if self.params.fill == "alone" else n_domain + n_rehearsal

    def unique_rows(self, ctx: RecipeContext) -> list[Conversation]:
        """The distinct domain rows the mix trains on: the mix's domain share, and for `extra-domain`
        the next rows of the seed's domain order."""
        if self.params.fill != "extra-domain":
            return list(ctx.domain_rows)
        if len(ctx.domain_pool) < ctx.rehearsal_size:
            from harness.errors import DataError

            raise DataError(f"fill extra-domain: needs {ctx.rehearsal_size} more domain rows but only "
                            f"{len(ctx.domain_pool)} remain; lower mix.size")
        return list(ctx.domain_rows) + ctx.domain_pool[:ctx.rehearsal_size]

    def filled(self, rows: list[Conversation], ctx: RecipeContext) -> list[Conversation]:
        """`rows` (the unique rows, possibly transformed) as the mix holds them: `repeat` cycles them to
        the mix size, in order."""
        if self.params.fill != "repeat":
            return rows
        size = len(ctx.domain_rows) + ctx.rehearsal_size
        return [rows[i % len(rows)] for i in range(size)]

    def fill_provenance(self, unique: int, rows: int) -> dict[str, Any]:
        return {"fill": self.params.fill, "unique_domain_rows": unique, "rows": rows}


def recipe_rng(seed: int, name: str, params: dict[str, Any]) -> random.Random:
    """A recipe's own random stream: the seed, the recipe's name and its resolved parameters (never
    its position in a study's recipe list, so adding a recipe changes no other recipe's draws)."""
    return random.Random(hash_json({"seed": seed, "recipe": name, "params": params}))


RECIPES: Registry[type[Recipe]] = Registry(
    ENTRY_POINT_GROUP, "recipe", lambda cls: isinstance(cls, type) and issubclass(cls, Recipe),
    "a subclass of harness.recipe.Recipe", build=lambda cls, name, params: cls(params, name=name))


def registry() -> dict[str, type[Recipe]]:
    """All recipes registered under the `forgetbench.recipes` entry-point group, by name."""
    return RECIPES.entries()


def get_recipe(name: str) -> type[Recipe]:
    return RECIPES.get(name)


def make_recipe(entry) -> Recipe:
    """The recipe a study entry (harness.config.RecipeEntry: name and raw parameters) names, its
    parameters validated."""
    return RECIPES.make(entry.name, entry.params)


def resolve_params(cls: type[Recipe], raw: dict[str, Any]) -> RecipeParams:
    """Validate raw parameters (the "" key is the `name:value` shorthand) into the recipe's Params."""
    return validate_params(cls.Params, cls.shorthand, raw, "recipe")


def describe(name: str) -> str:
    """Text for `forgetbench recipes show NAME`: docstring, shorthand, each parameter, the recipe's notes."""
    def sections(cls: type[Recipe]) -> list[str]:
        notes = cls.show_notes()
        return ["", *shorthand_line(name, cls), *describe_params(cls.Params), *(["", *notes] if notes else [])]

    return RECIPES.describe(name, sections)
