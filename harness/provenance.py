"""What produced a run: package versions and timestamps, recorded with every leaderboard row."""
from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata
from typing import Any

from harness.hashing import hash_json, short
from harness.results import RunRecord

PACKAGES = ("forgetbench", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "lm_eval",
            "duckdb", "pydantic")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Python's version and each named distribution's ("not installed" where it is missing)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_record(identity: dict[str, Any], *, study: str, recipe: str, seed: int, **fields: Any) -> RunRecord:
    """A run's leaderboard record, for `run` and `eval` alike: the run id names study, recipe and seed
    plus a hash of `identity` (the run's own inputs, so the same run keeps its id); package versions
    and the finish time are taken now."""
    return RunRecord(run_id=f"{study}-{recipe}-s{seed}-{short(hash_json(identity), 8)}", study=study, recipe=recipe,
                     seed=seed, package_versions=package_versions(), finished_at=now(), **fields)
