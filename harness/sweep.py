"""Sweeps: one study parameter varied over a list of values, expanded into runs by `study.plan()`.

    sweep: {parameter: mix.domain_share, values: [0.1, 0.17, 0.3]}

A sweep point is a (parameter, value) pair. `mix.*` and `finetune.*` points change the study's
settings for every recipe; `recipe.<param>` points change that parameter of the recipes that have it
(the others run once, unswept). Each point runs with an ordinary study config and recipe entry, so
it reuses every artefact a run with those settings would: a `finetune.*` sweep shares its mixes, and
the baseline (the untouched seed model) is evaluated once for the whole sweep.
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.config import RecipeEntry, StudyConfig
from harness.errors import ConfigError

Point = tuple[str, Any]  # (parameter, value)


def point_label(parameter: str, value: Any) -> str:
    """`mix.domain_share=0.1`: the readable suffix of a swept run's label."""
    return f"{parameter}={value if isinstance(value, str) else json.dumps(value)}"


def points(study: StudyConfig, entry: RecipeEntry) -> list[Point | None]:
    """The sweep points one recipe runs at: every value, or [None] (unswept) when the study has no
    sweep or the swept recipe parameter is not one of this recipe's."""
    sweep = study.sweep
    if sweep is None or not sweeps_recipe(entry, sweep.parameter):
        return [None]
    return [(sweep.parameter, value) for value in sweep.values]


def sweeps_recipe(entry: RecipeEntry, parameter: str) -> bool:
    section, _, name = parameter.partition(".")
    if section != "recipe":
        return True
    from harness.recipe import get_recipe

    return name in get_recipe(entry.name).Params.model_fields


def study_at(study: StudyConfig, point: Point | None) -> StudyConfig:
    """The study as it runs at one point: a `mix.*` / `finetune.*` value applied, the sweep removed."""
    if point is None:
        return study
    parameter, value = point
    section, _, path = parameter.partition(".")
    if section == "recipe":
        return study.model_copy(update={"sweep": None})
    try:
        changed = _with(getattr(study, section), path.split("."), value)
    except ValidationError as exc:
        raise ConfigError([f"sweep: {parameter}={value!r}: {_message(e)}" for e in exc.errors()]) from None
    return study.model_copy(update={section: changed, "sweep": None})


def entry_at(entry: RecipeEntry, point: Point | None) -> RecipeEntry:
    """The recipe entry as it runs at one point: a `recipe.<param>` value set (and validated)."""
    if point is None or not point[0].startswith("recipe.") or not sweeps_recipe(entry, point[0]):
        return entry
    from harness.recipe import RECIPES

    parameter, value = point
    name = parameter.partition(".")[2]
    params = dict(entry.params)
    if RECIPES.get(entry.name).shorthand == name:
        params.pop("", None)  # the swept value replaces the `name:value` shorthand
    params[name] = value
    try:
        RECIPES.params(entry.name, params)
    except ConfigError as exc:
        raise ConfigError([f"sweep: {entry.label}: {parameter}={value!r}: {line}" for line in exc.lines]) from None
    return RecipeEntry(name=entry.name, params=params)


def check_sweep(study: StudyConfig) -> list[str]:
    """Every problem of a study's sweep, one line each (`sweep.values[i]: ...`); [] when it has none."""
    sweep = study.sweep
    if sweep is None:
        return []
    problems: list[str] = []
    if sweep.parameter.startswith("recipe."):
        swept = [e for e in study.recipes if _known_recipe(e.name) and sweeps_recipe(e, sweep.parameter)]
        if not swept:
            name = sweep.parameter.partition(".")[2]
            return [f"sweep.parameter: no recipe of this study has a parameter {name!r} "
                    f"(recipes: {', '.join(e.label for e in study.recipes)})"]
        for index, value in enumerate(sweep.values):
            for entry in swept:
                try:
                    entry_at(entry, (sweep.parameter, value))
                except ConfigError as exc:
                    problems += [f"sweep.values[{index}]: {line.removeprefix('sweep: ')}" for line in exc.lines]
        return problems
    for index, value in enumerate(sweep.values):
        try:
            study_at(study, (sweep.parameter, value))
        except ConfigError as exc:
            problems += [f"sweep.values[{index}]: {line.removeprefix('sweep: ')}" for line in exc.lines]
    return problems


def _known_recipe(name: str) -> bool:
    from harness.recipe import registry

    return name in registry()


def _with(model: BaseModel, path: list[str], value: Any) -> BaseModel:
    """A copy of `model` with the field at `path` set to `value`, validated like the study file.

    Built from the field values (not a dump), so settings a model leaves out of its dumps survive."""
    data = {name: getattr(model, name) for name in type(model).model_fields}
    head, *rest = path
    data[head] = _with(data[head], rest, value) if rest else value
    return type(model).model_validate(data)


def _message(error: dict) -> str:
    return error["msg"].removeprefix("Value error, ")
