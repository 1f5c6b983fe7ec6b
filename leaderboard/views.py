"""The paper-style table: one row per recipe, one column per benchmark, mean ± std over seeds.

Columns, in order: study, recipe, runs (how many seeds were averaged), then the general benchmarks
(mmlu_pro, gpqa, ifeval, math_l5 — whichever are present), ``avg`` (their per-run mean; its header
names them, e.g. ``avg(gpqa,ifeval)``), ``avg_delta`` (the same mean over the deltas to the baseline:
negative means forgetting), safety_raw, safety_jailbreak, alpaca_eval, any other benchmark, ``domain``
and ``domain_gain`` (the domain score's delta to the baseline). Each value column ``X`` has an
``X_std`` partner (sample standard deviation over seeds; NaN for a single run); ``paper_display``
folds them into "mean ± std" cells for the terminal and markdown.
"""
from __future__ import annotations

import math

import pandas as pd

from harness.errors import ConfigError
from leaderboard.store import BASELINE_RECIPE, Leaderboard

AVERAGED = ("mmlu_pro", "gpqa", "ifeval", "math_l5")
SIDE = ("safety_raw", "safety_jailbreak", "alpaca_eval")
DOMAIN = "domain"


def _primary(board: Leaderboard, study: str | None) -> pd.DataFrame:
    """Primary score and delta of every finished run: run_id, study, recipe, seed, benchmark, value, delta."""
    with board.connect() as con:
        return con.execute(
            """
            SELECT r.run_id, r.study, r.recipe, r.seed, s.benchmark, s.value, d.delta
            FROM runs r
            JOIN scores s ON s.run_id = r.run_id AND s.is_primary
            LEFT JOIN deltas d ON d.run_id = s.run_id AND d.benchmark = s.benchmark AND d.metric = s.metric
            WHERE r.status = 'finished' AND (? IS NULL OR r.study = ?)
            """,
            [study, study],
        ).df()


def benchmark_order(names) -> list[str]:
    names = set(names)
    known = [b for b in (*AVERAGED, *SIDE) if b in names]
    others = sorted(names - set(AVERAGED) - set(SIDE) - {DOMAIN})
    return known + others + ([DOMAIN] if DOMAIN in names else [])


def avg_label(benchmarks) -> str:
    return f"avg({','.join(b for b in AVERAGED if b in benchmarks)})"


def per_run(board: Leaderboard, study: str | None = None, benchmarks: list[str] | None = None) -> pd.DataFrame:
    """One row per run: scores per benchmark, avg, avg_delta, domain_gain (before seed aggregation)."""
    long = _primary(board, study)
    present = set(long.benchmark)
    if benchmarks:
        unknown = [b for b in benchmarks if b not in present]
        if unknown:
            raise ConfigError(f"--benchmarks: no scores for {', '.join(unknown)} "
                              f"(present: {', '.join(benchmark_order(present)) or 'none'})")
        long = long[long.benchmark.isin(benchmarks)]
    keys = ["run_id", "study", "recipe", "seed"]
    if long.empty:
        return pd.DataFrame(columns=keys)
    values = long.pivot(index=keys, columns="benchmark", values="value")
    deltas = long.pivot(index=keys, columns="benchmark", values="delta")
    columns = benchmark_order(values.columns)
    wide = values[columns].copy()
    averaged = [b for b in AVERAGED if b in columns]
    if averaged:
        label = avg_label(averaged)
        wide[label] = values[averaged].mean(axis=1, skipna=False)
        wide["avg_delta"] = deltas[averaged].mean(axis=1, skipna=False)
        first_side = len(averaged)
        ordered = columns[:first_side] + [label, "avg_delta"] + columns[first_side:]
        wide = wide[ordered]
    if DOMAIN in columns:
        wide["domain_gain"] = deltas[DOMAIN]
    wide.columns.name = None
    return wide.reset_index()


def paper_table(board: Leaderboard, study: str | None = None, benchmarks: list[str] | None = None) -> pd.DataFrame:
    """Seed-aggregated table (see the module docstring); the baseline first in each study."""
    runs = per_run(board, study, benchmarks)
    if runs.empty:
        return pd.DataFrame(columns=["study", "recipe", "runs"])
    value_columns = [c for c in runs.columns if c not in ("run_id", "study", "recipe", "seed")]
    grouped = runs.groupby(["study", "recipe"], sort=False)
    means = grouped[value_columns].mean()
    stds = grouped[value_columns].std(ddof=1)
    out = grouped.size().rename("runs").to_frame()
    for column in value_columns:
        out[column] = means[column]
        out[f"{column}_std"] = stds[column]
    out = out.reset_index()
    out["_order"] = out.recipe != BASELINE_RECIPE
    return out.sort_values(["study", "_order", "recipe"]).drop(columns="_order").reset_index(drop=True)


def paper_display(table: pd.DataFrame) -> pd.DataFrame:
    """Fold ``X`` / ``X_std`` pairs into text cells "0.4512 ± 0.0100" (just the mean for one run)."""
    out = table[[c for c in table.columns if not c.endswith("_std")]].copy()
    for column in out.columns:
        std_column = f"{column}_std"
        if std_column not in table.columns:
            continue
        out[column] = [_mean_std(m, s) for m, s in zip(table[column], table[std_column])]
    return out


def _mean_std(mean: float, std: float) -> str | None:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return None
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {std:.4f}"
