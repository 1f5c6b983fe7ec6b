"""One registry pattern for everything a package can plug in (recipes, domains): an entry-point
group, read once, where built-ins register exactly like third-party packages do."""
from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

from harness.errors import ConfigError


def load_group(group: str, kind: str, accepts: Callable[[Any], bool], expected: str) -> dict[str, Any]:
    """Every object registered under `group`, by entry-point name. A name registered twice with
    different targets, a target that does not import, or one `accepts` rejects is a ConfigError
    naming the entry point (`kind` and `expected` word the message)."""
    found: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for entry in metadata.entry_points(group=group):
        where = f"entry point {entry.name!r} ({entry.value})"
        if entry.name in found and origin[entry.name] != entry.value:
            raise ConfigError(f"{where}: {kind} name already registered by {origin[entry.name]}")
        try:
            target = entry.load()
        except Exception as exc:
            raise ConfigError(f"{where}: cannot be imported ({type(exc).__name__}: {exc})") from None
        if not accepts(target):
            raise ConfigError(f"{where}: is not {expected}")
        found[entry.name], origin[entry.name] = target, entry.value
    return found


def lookup(known: dict[str, Any], name: str, kind: str, group: str) -> Any:
    """`known[name]`, or a ConfigError listing what is registered (or, when nothing is, saying that
    the package's entry points are missing: an install older than the group, or none)."""
    if not known:
        raise ConfigError(f"unknown {kind} {name!r}: nothing is registered under the entry-point group {group!r}; "
                          f"(re)install forgetbench (pip install -e .) so its entry points are recorded")
    if name not in known:
        raise ConfigError(f"unknown {kind} {name!r}; registered: {', '.join(sorted(known))}")
    return known[name]
