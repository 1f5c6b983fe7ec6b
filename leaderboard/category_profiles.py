"""Category profiles side by side: which task categories each recipe's rehearsal data covers.

Every run's leaderboard row carries its mix's metadata (runs.mix), and with it the category
profile of the rehearsal rows (harness/task_categories.py). This view sums the counts over a recipe's runs
(its seeds), shows the shares per category with one column per recipe, and adds the total variation
distance of every recipe to each reference recipe — e.g. how far reconstructed data is from a public
set's mix of tasks.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pandas as pd

from harness.errors import ConfigError
from harness.task_categories import CATEGORIES, total_variation
from leaderboard.store import Leaderboard


def recipe_profiles(board: Leaderboard, study: str | None = None) -> dict[str, dict[str, Any]]:
    """recipe -> {"n", "counts", "runs"}: category counts summed over the recipe's runs
    whose mix has rehearsal rows with a profile (baselines and domain-only recipes have none)."""
    with board.connect() as con:
        rows = con.execute(
            "SELECT recipe, mix FROM runs WHERE ? IS NULL OR study = ? ORDER BY recipe, seed",
            [study, study],
        ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for recipe, mix in rows:
        profile = (json.loads(mix) if mix else {}).get("profile") or {}
        if not profile.get("n"):
            continue
        entry = out.setdefault(recipe, {"n": 0, "counts": Counter(), "runs": 0})
        entry["n"] += profile["n"]
        entry["counts"].update(profile["counts"])
        entry["runs"] += 1
    return out


def profile_table(board: Leaderboard, study: str | None = None, recipes: list[str] | None = None,
                  references: list[str] | None = None) -> pd.DataFrame:
    """Rows: the categories (share of rehearsal rows), then `TVD vs R` for each reference recipe R
    (default: every recipe shown, i.e. the whole pairwise matrix). Columns: `category`, then one per
    recipe, headed `recipe (n=rows)`."""
    found = recipe_profiles(board, study)
    where = f" in study {study!r}" if study else ""
    chosen = recipes or sorted(found)
    if not chosen:
        raise ConfigError(f"--study {study}: no run with a category profile{where}" if study else
                          "no run on the leaderboard has a category profile (recipes with rehearsal rows have one)")
    missing = [r for r in chosen if r not in found]
    if missing:
        raise ConfigError(f"--recipe: no category profile for {', '.join(missing)}{where} "
                          f"(profiled: {', '.join(sorted(found)) or 'none'})")
    references = references or chosen
    unknown = [r for r in references if r not in found]
    if unknown:
        raise ConfigError(f"--reference: no category profile for {', '.join(unknown)}{where}")
    shares = {r: {c: found[r]["counts"][c] / found[r]["n"] for c in CATEGORIES} for r in {*chosen, *references}}
    header = {r: f"{r} (n={found[r]['n']})" for r in chosen}
    table = [{"category": c, **{header[r]: round(shares[r][c], 4) for r in chosen}} for c in CATEGORIES]
    table += [{"category": f"TVD vs {ref}", **{header[r]: total_variation(shares[r], shares[ref]) for r in chosen}}
              for ref in references]
    return pd.DataFrame(table, columns=["category", *header.values()])
