"""The DuckDB leaderboard: record runs, read tables and deltas against the baseline, render them."""
from leaderboard.render import FORMATS, render
from leaderboard.store import BASELINE_RECIPE, SCHEMA_VERSION, Leaderboard

__all__ = ["BASELINE_RECIPE", "FORMATS", "SCHEMA_VERSION", "Leaderboard", "render"]
