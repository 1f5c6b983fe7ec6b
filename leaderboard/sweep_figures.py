"""The report's figures of sweeps: per sweep, each benchmark (and shift measure, and average) against
the swept value, and each benchmark's paired difference to the seed model with its 95 % interval
against the swept value (forgetting against dose)."""
from __future__ import annotations

import json
import math

import pandas as pd

from harness.errors import ConfigError
from leaderboard.charts import Figure, dose_chart, sweep_chart
from leaderboard.compare import compare
from leaderboard.store import BASELINE_RECIPE
from leaderboard.views import SUITE_AVERAGES, TRAINING, benchmark_order, is_average_column, shift_columns, sweep_points


def sweep_figures(board, study, table: pd.DataFrame, label) -> list[Figure]:
    points = sweep_points(board, study)
    if points.empty:
        return []
    baselines = {(row["study"], column): value for row in table[table.recipe == BASELINE_RECIPE].to_dict("records")
                 for column, value in row.items() if isinstance(value, float) and not math.isnan(value)}
    figures = []
    for (name, parameter), sweep in points.groupby(["study", "parameter"], sort=True):
        skip = {"study", "parameter", "value", "recipe", "seed", "run_id", *TRAINING}
        shift = shift_columns(sweep)
        deltas = [delta for _, delta in SUITE_AVERAGES.values()]
        metrics = benchmark_order([c for c in sweep.columns if c not in skip and not is_average_column(c)
                                   and not c.endswith("_lb") and c not in (*deltas, "domain_gain", "lb_notes")
                                   and c not in shift])
        metrics += [delta for delta in deltas if delta in sweep.columns]
        metrics += shift
        values = list(dict.fromkeys(json.dumps(v) for v in sweep.value))
        numeric = all(isinstance(json.loads(v), (int, float)) and not isinstance(json.loads(v), bool) for v in values)
        order = sorted(json.loads(v) for v in values) if numeric else [json.loads(v) for v in values]
        rows = []
        for metric in metrics:
            data = sweep[["recipe", "value", metric]].dropna()
            data = data.assign(key=[json.dumps(v) for v in data.value])
            for (recipe, key), group in data.groupby(["recipe", "key"], sort=False):
                x = json.loads(key)
                shown = f"{name}/{recipe}" if label.prefix else str(recipe)
                rows.append({"metric": metric, "label": shown, "x": x if numeric else str(x),
                             "y": float(group[metric].mean()), "runs": len(group),
                             "baseline": 0.0 if metric in deltas else baselines.get((name, metric))})
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        title = f"{name}: sweep over {parameter}"
        figures.append(Figure(f"sweep-{len(figures) + 1}", title,
                              "Mean over seeds at each swept value, one line per recipe; the dashed line is the "
                              "seed model (for avg_delta: no change). Hover for the numbers and n.",
                              lambda _, frame=frame, parameter=parameter, numeric=numeric, order=order,
                              title=title: sweep_chart(frame, parameter, numeric, order, title)))
    return figures


def dose_figures(board, study, label) -> list[Figure]:
    """Per sweep: each benchmark's paired difference to the seed model (`compare` of the baseline
    against the recipe at each swept value: mean of B - A with its 95 % bootstrap CI), one line per
    recipe — forgetting against dose, where an interval below zero is a significant loss."""
    points = sweep_points(board, study)
    if points.empty:
        return []
    with board.connect() as con:
        labels = dict(con.execute("SELECT run_id, recipe FROM runs").fetchall())
    figures = []
    for (name, parameter), sweep in points.groupby(["study", "parameter"], sort=True):
        rows = []
        for (recipe, key), group in sweep.assign(key=[json.dumps(v) for v in sweep.value]).groupby(
                ["recipe", "key"], sort=False):
            run_label = labels[group.run_id.iloc[0]]  # `none@finetune.learning_rate=0.001`
            try:
                compared = compare(board, BASELINE_RECIPE, run_label, study=name)
            except ConfigError:  # evaluated differently from the seed model, or nothing to pair: no point
                continue
            shown = f"{name}/{recipe}" if label.prefix else str(recipe)
            for row in compared.itertuples():
                rows.append({"metric": row.benchmark, "label": shown, "x": json.loads(key), "diff": row.diff,
                             "ci_low": row.ci_low, "ci_high": row.ci_high, "p_holm": row.p_holm, "n": row.n,
                             "runs": len(group)})
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        frame = frame.assign(metric=pd.Categorical(frame.metric, benchmark_order(frame.metric))).sort_values(
            ["metric", "label", "x"]).assign(metric=lambda f: f.metric.astype(str))
        title = f"{name}: change against the seed model over {parameter}"
        figures.append(Figure(f"dose-{len(figures) + 1}", title,
                              "Per benchmark: mean per-example difference to the seed model (B − A, paired on "
                              "the same examples) at each swept value, with its 95 % paired-bootstrap interval; "
                              "below the zero line is a loss, an interval clear of zero a significant one.",
                              lambda _, frame=frame, parameter=parameter, title=title: dose_chart(frame, parameter,
                                                                                                 title)))
    return figures
