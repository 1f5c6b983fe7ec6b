"""`forgetbench cache verify` and `forgetbench cache prune`: the whole artefact cache at once.

verify  hashes every file of every artefact folder against its manifest (harness/artefacts.py),
        parses single-file artefacts, and runs SQLite's integrity_check on the generation caches;
        `--fix` moves what is damaged under <cache>/corrupt/ (the next run rebuilds it).
prune   deletes the mixes, checkpoints, evaluations and diagnostics no row of the given leaderboards
        references, and everything under <cache>/corrupt/. An evaluation (one benchmark's result) is
        referenced by the `eval_key` recorded in its scores' settings; one written before results were
        cached per benchmark (a whole suite) by its runs' (checkpoint, eval_config_hash). An artefact written before manifests
        recorded references is kept (its use is unknown) unless its reference can be read from it.
        The converted seed models and the generation caches are shared inputs, never pruned.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from harness import artefacts
from harness.paths import cache_dir

FOLDER_KINDS = {"mixes": "mix", "checkpoints": "checkpoint", "evals": "evaluation", "diagnostics": "diagnostics",
                "models": "converted model"}
REQUIRED = {"mixes": ("mix.json", "mix.jsonl"), "checkpoints": ("model/config.json",), "evals": ("results.json",),
            "diagnostics": ("measures.json",), "models": ("config.json",), "nltk_data": ("ortho_context.tab",)}
NAMES = {**FOLDER_KINDS, "nltk_data": "NLTK punkt_tab"}
SQLITE_FILES = {"generations.sqlite": "generation cache", "categories.sqlite": "category cache"}


@dataclass
class Damage:
    path: Path
    what: str
    reason: str


def artefact_folders(root: Path) -> list[tuple[str, Path]]:
    """(kind, folder) of every finished artefact folder (temporary `.name.host~pid` ones skipped)."""
    found = [("nltk_data", p) for p in sorted((root / "nltk_data" / "tokenizers" / "punkt_tab").glob("*"))
             if p.is_dir() and not p.name.startswith(".")]
    for kind in FOLDER_KINDS:
        parent = root / kind
        if parent.is_dir():
            found += [(kind, p) for p in sorted(parent.iterdir())
                      if p.is_dir() and not p.name.startswith(".") and p.name != "train-nll"]
    return found


def verify_cache(root: Path | None = None, fix: bool = False) -> tuple[int, list[Damage]]:
    """(artefacts checked, damaged ones); with `fix` the damaged ones are moved aside."""
    root = root or cache_dir()
    damaged, checked = [], 0
    for kind, folder in artefact_folders(root):
        checked += 1
        reason = artefacts.problem(folder, REQUIRED[kind], full=True)
        if reason:
            damaged.append(Damage(folder, NAMES[kind], reason))
    for path in sorted((root / "diagnostics" / "train-nll").glob("*.json")):
        checked += 1
        reason = artefacts.structure_problem(path)
        if reason:
            damaged.append(Damage(path, "training NLL", reason))
    for name, what in SQLITE_FILES.items():
        if (root / name).exists():
            checked += 1
            reason = artefacts.sqlite_problem(root / name, full=True)
            if reason:
                damaged.append(Damage(root / name, what, reason))
    if fix:
        for item in damaged:
            artefacts.quarantine(item.path, item.what, item.reason)
    return checked, damaged


@dataclass
class PruneResult:
    removed: list[Path] = field(default_factory=list)
    kept: int = 0
    unknown: list[Path] = field(default_factory=list)
    freed_bytes: int = 0


def referenced(leaderboards: list[Path]) -> dict[str, set]:
    """The hashes leaderboard rows reference: mixes, checkpoints, (checkpoint, evaluation) pairs of
    whole-suite evaluations, and the cache keys of per-benchmark evaluations."""
    from harness.evaluation.suite import EVAL_KEY
    from leaderboard.store import Leaderboard

    refs: dict[str, set] = {"mix_sha": set(), "checkpoint_sha": set(), "eval": set(), EVAL_KEY: set()}
    for path in leaderboards:
        board = Leaderboard(path, read_only=True)
        with board.connect(read_only=True) as con:
            for mix_sha, checkpoint_sha, eval_hash in con.execute(
                    "SELECT mix_sha, checkpoint_sha, eval_config_hash FROM runs").fetchall():
                if mix_sha:
                    refs["mix_sha"].add(mix_sha)
                refs["checkpoint_sha"].add(checkpoint_sha)
                refs["eval"].add((checkpoint_sha, eval_hash))
            for (settings,) in con.execute("SELECT DISTINCT settings FROM scores WHERE is_primary").fetchall():
                key = json.loads(settings or "{}").get(EVAL_KEY)
                if key:
                    refs[EVAL_KEY].add(key)
    return refs


def _in_use(kind: str, folder: Path, refs: dict[str, set]) -> bool | None:
    """Whether a leaderboard row references the artefact; None when that cannot be told."""
    own = artefacts.refs(folder)
    if kind == "mixes":
        sha = own.get("mix_sha")
        if sha is None:
            try:
                sha = json.loads((folder / "mix.json").read_text(encoding="utf-8")).get("sha256")
            except (OSError, ValueError):
                return None
        return sha in refs["mix_sha"]
    if kind == "checkpoints":
        sha = own.get("checkpoint_sha")
        return None if sha is None else sha in refs["checkpoint_sha"]
    if kind == "evals":
        if "eval_key" in own:  # one benchmark's result
            return own["eval_key"] in refs["eval_key"]
        if "model_sha" not in own:
            return None
        return (own["model_sha"], own["eval_config_hash"]) in refs["eval"]
    if kind == "diagnostics":
        return None if "model_sha" not in own else own["model_sha"] in refs["checkpoint_sha"]
    return True  # converted seed models and NLTK data: inputs, never pruned


def prune_cache(leaderboards: list[Path], root: Path | None = None, dry_run: bool = False) -> PruneResult:
    root = root or cache_dir()
    refs = referenced(leaderboards)
    result = PruneResult()
    doomed = []
    for kind, folder in artefact_folders(root):
        use = _in_use(kind, folder, refs)
        if use is None:
            result.unknown.append(folder)
        elif use:
            result.kept += 1
        else:
            doomed.append(folder)
    quarantined = root / artefacts.QUARANTINE
    if quarantined.is_dir():
        doomed += sorted(quarantined.iterdir())
    for path in doomed:
        result.freed_bytes += _size(path)
        result.removed.append(path)
        if not dry_run:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    return result


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
