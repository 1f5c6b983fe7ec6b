"""The DuckDB leaderboard: record runs, read tables and deltas against the baseline, render them.

Names are imported lazily so that ``forgetbench --help`` (which registers leaderboard.commands)
does not load DuckDB and pandas."""
from importlib import import_module

_EXPORTS = {"FORMATS": "leaderboard.render", "render": "leaderboard.render",
            "BASELINE_RECIPE": "leaderboard.store", "SCHEMA_VERSION": "leaderboard.store",
            "Leaderboard": "leaderboard.store"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = import_module(_EXPORTS[name])
        # Bind every name of that module now: importing leaderboard.render set the package's
        # ``render`` attribute to the module, and it must be the function, as it always was.
        globals().update({n: getattr(module, n) for n, m in _EXPORTS.items() if m == _EXPORTS[name]})
        return globals()[name]
    raise AttributeError(f"module 'leaderboard' has no attribute {name!r}")
