"""Build a recipe's training mix: exact total size, fixed domain share, seeded, written once.

Paired design: the domain rows of a mix depend only on the seed, the mix settings and the domain
data, never on the recipe. One seeded order of the domain training rows (`domain_order`) serves every
recipe: its first rows are the mix's domain share, and the rows after them (`RecipeContext.domain_pool`,
in that order) are what `none` and `sdft-rewrite` take next to fill their rehearsal share. A recipe's
own randomness comes from its own stream (`recipe_rng`: seed, recipe name and parameters), and the
final shuffle only reorders rows; so every recipe of one seed trains on the same domain rows, byte
for byte, and adding or removing a recipe changes no other recipe's mix.

The mix is stored under a key made from everything that determines it (recipe, parameters, seed,
sizes, domain data, seed model, the recipe's own data); a rebuild with the same key reads the file
instead of calling the recipe again. `mix.jsonl` holds the rows, `mix.json` the hash, statistics,
the recipe's provenance and the category profile of the rehearsal rows (harness/task_categories.py). The
profile is metadata: it never changes the rows or the mix hash, and a mix stored before profiles
existed (or under another classification prompt) gets its profile added when it is next read.
"""
from __future__ import annotations

import functools
import json
import logging
import random
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import artefacts
from harness.config import MixConfig, RecipeEntry
from harness.data import Conversation, check_conversation, source_hash
from harness.domains import Domain
from harness.errors import DataError, ForgetbenchError
from harness.hashing import hash_file, hash_json, short
from harness.models import ResolvedModel
from harness.paths import atomic_write_text
from harness.recipe import RecipeContext, make_recipe, recipe_rng
from harness.task_categories import is_current, profile_rows

log = logging.getLogger(__name__)




@dataclass(frozen=True)
class Mix:
    path: Path  # mix.jsonl
    sha: str
    meta: dict[str, Any]


def split_sizes(mix: MixConfig) -> tuple[int, int]:
    """(domain rows, rehearsal rows) for a mix; both sides get at least one row where possible."""
    n_domain = min(max(1, round(mix.size * mix.domain_share)), mix.size)
    return n_domain, mix.size - n_domain


# Bumped when the way rows are drawn changes, so no mix stored under the old rule is reused.
SAMPLING_RULE = "paired-v1"


def domain_order(seed: int, n_rows: int) -> list[int]:
    """The seeded order of the domain training rows, shared by every recipe of this seed."""
    return random.Random(f"{seed}:domain-order").sample(range(n_rows), n_rows)


def build_mix(entry: RecipeEntry, seed: int, mix: MixConfig, domain: Domain, data_dir: Path | None,
              seed_model: ResolvedModel, backend: Callable) -> Mix:
    recipe = make_recipe(entry)
    n_domain, n_rehearsal = split_sizes(mix)
    inputs = {
        "recipe": entry.name, "params": recipe.params.model_dump(mode="json"), "seed": seed,
        "size": mix.size, "domain_share": mix.domain_share, **domain.key(),
        "domain_sha256": source_hash(domain.train, data_dir), "seed_model": seed_model.sha,
        "recipe_inputs": recipe.fingerprint(data_dir), "sampling_rule": SAMPLING_RULE,
    }
    key, target = hash_json(inputs), artefacts.MIX.folder(inputs)
    if artefacts.MIX.reusable(target):
        log.info("mix %s for %s (seed %d): reusing %s", short(key, 12), entry.label, seed, target)
        return _read(target, seed_model)

    domain_train = domain.train_rows(data_dir)
    if len(domain_train) < n_domain:
        raise DataError(f"domain {domain.name!r} has {len(domain_train)} training rows; the mix needs {n_domain}")
    order = domain_order(seed, len(domain_train))
    chosen = [domain_train[i] for i in order[:n_domain]]
    pool = [domain_train[i] for i in order[n_domain:]]
    params = recipe.params.model_dump(mode="json")
    ctx = RecipeContext(seed_model=seed_model, domain=domain, domain_rows=chosen, domain_pool=pool, rehearsal_size=n_rehearsal,
                        rng=recipe_rng(seed, entry.name, params), data_dir=data_dir, backend=functools.cache(backend),
                        log=logging.getLogger(f"forgetbench.recipe.{entry.name}"), seed=seed)
    log.info("mix for %s (seed %d): %d domain + %d rehearsal rows", entry.label, seed, n_domain, n_rehearsal)
    output = recipe.build(ctx)
    rows = _checked_rows(entry.label, output.domain, output.rehearsal, recipe.mix_rows(n_domain, n_rehearsal),
                         n_rehearsal)
    # the shuffle reorders rows only: which domain rows a mix holds is already fixed above
    random.Random(hash_json({"shuffle": key})).shuffle(rows)
    meta = {
        "key": key, "recipe": entry.name, "label": entry.label, "params": recipe.params.model_dump(mode="json"),
        "seed": seed, "size": mix.size, "domain_share": mix.domain_share, "domain": domain.name,
        # the same for every recipe of this seed and mix settings: the pairing, checkable from mix.json
        "sampling_rule": SAMPLING_RULE, "domain_rows_sha256": hash_json([row["id"] for row in chosen]),
        # what the mix trains on of the domain (differs by recipe only through `fill`): compare pairs on it
        "rows": len(rows), **trained_domain(rows),
        "stats": _statistics(rows, seed_model), "provenance": output.provenance,
        "profile": _profile(rows, seed_model),
    }
    with artefacts.MIX.build(target) as tmp:
        with open(tmp / "mix.jsonl", "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
        meta["sha256"] = hash_file(tmp / "mix.jsonl")
        (tmp / "mix.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        artefacts.seal(tmp, refs={"mix_sha": meta["sha256"]})
    return _read(target, seed_model)


def trained_domain(rows: list[Conversation]) -> dict[str, Any]:
    """The domain rows a mix trains on: how many (repeats counted), how many distinct, and a hash of
    their ids with repeats (sorted), equal for two mixes exactly when they train on the same domain rows
    the same number of times."""
    ids = sorted(str(row["id"]) for row in rows if row["role_in_mix"] == "domain")
    return {"domain_rows": len(ids), "unique_domain_rows": len(set(ids)), "domain_ids_sha256": hash_json(ids)}


def _read(folder: Path, seed_model: ResolvedModel) -> Mix:
    """A stored mix; one without a current category profile gets it now (mix.json rewritten atomically)."""
    meta = json.loads((folder / "mix.json").read_text())
    if not is_current(meta.get("profile"), seed_model):
        with open(folder / "mix.jsonl", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        meta["profile"] = _profile(rows, seed_model)
        atomic_write_text(folder / "mix.json", json.dumps(meta, indent=2, sort_keys=True))
        artefacts.refresh(folder, ["mix.json"])
    return Mix(path=folder / "mix.jsonl", sha=meta["sha256"], meta=meta)


def _profile(rows: list[Conversation], seed_model: ResolvedModel) -> dict[str, Any]:
    """Task categories of the rehearsal rows, the seed model as zero-shot classifier (cached)."""
    return profile_rows([r for r in rows if r["role_in_mix"] == "rehearsal"], seed_model)


def _checked_rows(label: str, domain: list[Conversation], rehearsal: list[Conversation], size: int,
                  n_rehearsal: int) -> list[Conversation]:
    """The recipe must return exactly the rows its mix holds (`Recipe.mix_rows`), and every row must be a
    valid conversation."""
    if len(domain) + len(rehearsal) != size:
        raise ForgetbenchError(f"recipe {label}: returned {len(domain)} + {len(rehearsal)} rows; its mix holds {size}")
    if rehearsal and len(rehearsal) != n_rehearsal:
        raise ForgetbenchError(f"recipe {label}: returned {len(rehearsal)} rehearsal rows; expected {n_rehearsal}")
    rows = [dict(r, role_in_mix="domain") for r in domain] + [dict(r, role_in_mix="rehearsal") for r in rehearsal]
    for row in rows:
        check_conversation(row, f"recipe {label}")
    return rows


def _statistics(rows: list[Conversation], seed_model: ResolvedModel) -> dict[str, Any]:
    """Rows per source and token lengths (under the seed model's chat template) per mix part."""
    from harness.models import load_tokenizer

    tokenizer = load_tokenizer(seed_model)
    stats: dict[str, Any] = {"rows_per_source": dict(Counter(r["source"] for r in rows))}
    for part in ("domain", "rehearsal"):
        lengths = [len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=False))
                   for r in rows if r["role_in_mix"] == part]
        stats[f"{part}_rows"] = len(lengths)
        if lengths:
            stats[f"{part}_tokens"] = {"min": min(lengths), "mean": round(statistics.fmean(lengths), 1),
                                       "max": max(lengths), "total": sum(lengths)}
    return stats
