"""What produced a run: package versions and timestamps, recorded with every leaderboard row."""
from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata

PACKAGES = ("forgetbench", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "lm_eval",
            "duckdb", "pydantic")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
