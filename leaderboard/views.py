"""The paper-style table: one row per recipe, one column per benchmark, mean ± std over seeds.

Where a benchmark goes comes from the benchmark registry (harness/benchmark.py), never from a list
here: its `group` (general, side, domain), whether it has a `leaderboard` normalisation (then it is
*averaged*), its `column_order` and its `departure` notes. A benchmark the registry does not know (a
row of a plugin no longer installed) is shown among the others, never averaged.

Columns, in order: study, recipe, runs (how many seeds were averaged), domain_rows and trained_rows
(what the runs trained on: distinct domain rows, rows training used), then the averaged general
benchmarks (for the built-ins mmlu_pro, gpqa, ifeval, math_l5 — whichever are present) as raw
primary scores, then the same as Open LLM Leaderboard v2 scores (``mmlu_pro_lb`` ...: see
`leaderboard_score`, 0-100 points, as in seed 000's Table 1), ``avg`` (the per-run mean of the
leaderboard scores, as Table 1 averages; its header names the benchmarks, e.g.
``avg(gpqa,ifeval)``), ``avg_delta`` (that average minus the baseline's, in leaderboard points:
negative means forgetting), ``lb_notes`` (where a score departs from the leaderboard's setup:
MMLU-Pro run 0-shot, and which GPQA subsets went in), the side benchmarks (safety_raw,
safety_jailbreak, alpaca_eval), any other benchmark, the domain group (``domain``)
and ``domain_gain`` (the domain score's delta to the baseline), then the run's headline shift
measures against the seed model where recorded (output_bleu4, output_rougeL, output_cosine, param_l2,
param_rel, train_nll; see harness/shift.py). Each value column ``X`` has an ``X_std`` partner
(sample standard deviation over seeds; NaN for a single run); ``paper_display`` folds them into
"mean ± std" cells for the terminal and markdown.

``sweep_points`` lays the runs of a sweep out by swept value, and ``shift_correlations`` gives, per
study, the Pearson and Spearman correlation of each shift measure with the average forgetting.
"""
from __future__ import annotations

import json
import math

import pandas as pd

from harness.benchmark import LeaderboardNorm, benchmark_class, column_key
from harness.benchmark import averaged as is_averaged
from harness.errors import ConfigError
from leaderboard.store import BASELINE_RECIPE, Leaderboard

LB_SUFFIX = "_lb"
NOTES = "lb_notes"
DOMAIN = "domain"
SHIFT = ("output_bleu4", "output_rougeL", "output_cosine", "param_l2", "param_rel", "train_nll")
FORGETTING = "avg_delta"  # average delta over the general benchmarks: negative means forgetting
# Each suite's average and its delta to the baseline, by the suite its benchmarks' LeaderboardNorm names:
# `avg(...)` / `avg_delta` the Open LLM Leaderboard v2's, `small_avg(...)` / `small_avg_delta` the small-model suite's.
SUITE_AVERAGES = {"v2": ("avg", FORGETTING), "small": ("small_avg", "small_avg_delta")}


def _primary(board: Leaderboard, study: str | None) -> pd.DataFrame:
    """Primary score and delta of every finished run: run_id, study, recipe, seed, benchmark, value, delta."""
    with board.connect() as con:
        return con.execute(
            """
            SELECT r.run_id, r.study, r.recipe, r.seed, s.benchmark, s.value, d.delta
            FROM runs r
            JOIN scores s ON s.run_id = r.run_id AND s.is_primary
            LEFT JOIN deltas d ON d.run_id = s.run_id AND d.benchmark = s.benchmark AND d.metric = s.metric
            WHERE (? IS NULL OR r.study = ?)
            """,
            [study, study],
        ).df()


def normalise(raw: float, random_baseline: float, clip: bool = True) -> float:
    """Open LLM Leaderboard v2: (raw - random) / (1 - random) x 100, clipped at 0 (raw in [0, 1]) where `clip`."""
    score = (raw - random_baseline) / (1.0 - random_baseline) * 100.0
    return max(0.0, score) if clip else score


def _norm(benchmark: str) -> LeaderboardNorm | None:
    cls = benchmark_class(benchmark)
    return cls.leaderboard if is_averaged(cls) else None


def _registered_norms() -> dict[str, object]:
    """Every registered benchmark that enters the leaderboard average, with its normalisation."""
    from harness.benchmark import registry

    try:
        known = registry()
    except ConfigError:
        return {}
    return {name: cls.leaderboard for name, cls in known.items() if is_averaged(cls)}


def leaderboard_score(benchmark: str, metrics: dict[str, float]) -> float:
    """One benchmark's leaderboard score from its raw metrics (NaN when one it needs is missing)."""
    norm = _norm(benchmark)
    if norm is None or any(m not in metrics or pd.isna(metrics[m]) for m in norm.metrics):
        return float("nan")
    return normalise(sum(metrics[m] for m in norm.metrics) / len(norm.metrics), norm.random_baseline, norm.clip)


def _leaderboard_scores(board: Leaderboard, study: str | None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per finished run: the leaderboard score of each averaged benchmark (a run_id x benchmark frame),
    and each run's notes on departures from the leaderboard setup."""
    wanted = [(b, m) for b, norm in _registered_norms().items() for m in norm.metrics]
    if not wanted:
        return pd.DataFrame(), {}
    with board.connect() as con:
        rows = con.execute(
            f"""
            SELECT r.run_id, s.benchmark, s.metric, s.value, s.settings
            FROM runs r JOIN scores s ON s.run_id = r.run_id
            WHERE (? IS NULL OR r.study = ?)
              AND (s.benchmark, s.metric) IN ({", ".join("(?, ?)" for _ in wanted)})
            """,
            [study, study, *[x for pair in wanted for x in pair]],
        ).df()
    scores: dict[str, dict[str, float]] = {}
    notes: dict[str, list[str]] = {}
    for (run_id, benchmark), group in rows.groupby(["run_id", "benchmark"], sort=False):
        scores.setdefault(run_id, {})[benchmark] = leaderboard_score(benchmark, dict(zip(group.metric, group.value)))
        note = benchmark_class(benchmark).departure(json.loads(group.settings.iloc[0] or "{}"))
        if note:
            notes.setdefault(run_id, []).append(note)
    frame = pd.DataFrame.from_dict(scores, orient="index")
    return frame, {run_id: "; ".join(sorted(n)) for run_id, n in notes.items()}


def averaged(names) -> list[str]:
    """The benchmarks among `names` that enter the leaderboard average, in column order."""
    return [b for b in benchmark_order(names) if _norm(b) is not None]


def benchmark_order(names) -> list[str]:
    return sorted(set(names), key=column_key)


def avg_label(benchmarks, suite: str = "v2") -> str:
    """The header of a suite's average column, naming its benchmarks: `avg(gpqa,ifeval)`, `small_avg(arc_easy,piqa)`."""
    return f"{SUITE_AVERAGES[suite][0]}({','.join(b for b in averaged(benchmarks) if _norm(b).suite == suite)})"


def is_average_column(column: str) -> bool:
    return any(column.startswith(f"{name}(") for name, _ in SUITE_AVERAGES.values())


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
    averaged_here = averaged(columns)
    if averaged_here:
        lb, notes = _leaderboard_scores(board, None)  # all studies: a baseline may be recorded by another
        lb = lb.reindex(columns=averaged_here)
        run_ids = wide.index.get_level_values("run_id")
        baseline_of = _baseline_runs(board, study)
        summary = []
        for suite, (_, delta_column) in SUITE_AVERAGES.items():
            members = [name for name in averaged_here if _norm(name).suite == suite]
            if not members:
                continue
            for name in members:
                wide[name + LB_SUFFIX] = lb[name].reindex(run_ids).to_numpy()
            label = avg_label(members, suite)
            wide[label] = wide[[name + LB_SUFFIX for name in members]].mean(axis=1, skipna=False)
            run_average = dict(zip(run_ids, wide[label]))
            baseline_average = lb[members].mean(axis=1, skipna=False)
            wide[delta_column] = [run_average[r] - baseline_average.get(baseline_of[r], float("nan"))
                                  if baseline_of.get(r) is not None else float("nan") for r in run_ids]
            summary += [name + LB_SUFFIX for name in members] + [label, delta_column]
        wide[NOTES] = [notes.get(r, "") for r in run_ids]
        first_side = len(averaged_here)
        ordered = columns[:first_side] + summary + [NOTES] + columns[first_side:]
        wide = wide[ordered]
    if DOMAIN in columns:
        wide["domain_gain"] = deltas[DOMAIN]
    wide.columns.name = None
    return _with_shift(board, study, _with_training(board, wide.reset_index()))


TRAINING = ("domain_rows", "trained_rows")


def _with_training(board: Leaderboard, runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with what each fine-tuned run trained on, after its keys: ``domain_rows`` (distinct domain
    rows in its mix: the same for every recipe of a seed unless `none` / `sdft-rewrite` take extra domain
    rows) and ``trained_rows`` (rows training used: the mix's, less any `drop_long_rows` dropped). NaN for
    the seed model and for runs recorded before mixes kept these counts (no columns where no run has them)."""
    with board.connect() as con:
        mixes = dict(con.execute("SELECT run_id, mix FROM runs WHERE mix IS NOT NULL").fetchall())
    counts = {}
    for run_id, text in mixes.items():
        meta = json.loads(text)
        trained = (meta.get("training") or {}).get("rows_used", meta.get("rows"))
        counts[run_id] = (meta.get("unique_domain_rows"), trained)
    values = [counts.get(r, (None, None)) for r in runs.run_id]
    if all(v is None for pair in values for v in pair):  # no run recorded them: no empty columns
        return runs
    runs = runs.copy()
    for position, column in enumerate(TRAINING):
        runs.insert(4 + position, column, pd.Series([pair[position] for pair in values], index=runs.index, dtype="float64"))
    return runs


def baseline_pairing(board: Leaderboard, study: str | None) -> pd.DataFrame:
    """One row per fine-tuned run: run_id, study, recipe, seed and baseline_run_id, the seed-model run
    its deltas are taken against (the leaderboard's own pairing; None where no baseline matches)."""
    columns = ["run_id", "study", "recipe", "seed", "baseline_run_id"]
    return board.deltas(study)[columns].drop_duplicates(ignore_index=True)


def _baseline_runs(board: Leaderboard, study: str | None) -> dict[str, str | None]:
    """run_id -> the baseline run its deltas are taken against."""
    pairing = baseline_pairing(board, study)
    return dict(zip(pairing.run_id, pairing.baseline_run_id))


def _with_shift(board: Leaderboard, study: str | None, runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus one column per headline shift measure recorded for any of them."""
    shift = board.shift(study)
    shift = shift[shift.run_id.isin(runs.run_id)]
    if shift.empty:
        return runs
    wide = shift.pivot(index="run_id", columns="measure", values="value")
    wide = wide[[m for m in SHIFT if m in wide.columns] + sorted(set(wide.columns) - set(SHIFT))]
    wide.columns.name = None
    return runs.merge(wide, how="left", left_on="run_id", right_index=True)


def shift_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in SHIFT if c in frame.columns]


def sweep_points(board: Leaderboard, study: str | None = None) -> pd.DataFrame:
    """The swept runs, one row each: study, parameter, value, recipe (its unswept label), seed and
    the per-run columns (benchmarks, avg_delta, domain_gain, shift measures). Empty without sweeps."""
    with board.connect() as con:
        rows = con.execute("SELECT run_id, sweep_parameter, sweep_value, sweep_recipe FROM runs "
                           "WHERE sweep_parameter IS NOT NULL AND (? IS NULL OR study = ?)", [study, study]).fetchall()
    points = [{"run_id": run_id, "parameter": parameter, "value": json.loads(value), "sweep_recipe": recipe}
              for run_id, parameter, value, recipe in rows]
    if not points:
        return pd.DataFrame(columns=["study", "parameter", "value", "recipe", "seed"])
    frame = per_run(board, study).merge(pd.DataFrame(points), on="run_id")
    frame = frame.drop(columns="recipe").rename(columns={"sweep_recipe": "recipe"})
    first = ["study", "parameter", "value", "recipe", "seed"]
    return frame[first + [c for c in frame.columns if c not in first]]


def pearson(x, y) -> float:
    """Pearson correlation (pandas); NaN with fewer than three pairs or a constant side."""
    return float(pd.Series(x, dtype=float).corr(pd.Series(y, dtype=float), min_periods=3))


def spearman(x, y) -> float:
    """Spearman rank correlation: Pearson on ranks, ties sharing their average rank (pandas' own
    spearman goes through scipy, which warns on a constant measure instead of returning NaN quietly)."""
    return pearson(pd.Series(x, dtype=float).rank(), pd.Series(y, dtype=float).rank())


def shift_correlations(board: Leaderboard, study: str | None = None) -> pd.DataFrame:
    """Per study and shift measure, across its fine-tuned runs: n (runs with both numbers), and the
    Pearson and Spearman correlation between the measure and the average forgetting (avg_delta)."""
    columns = ["study", "measure", "n", "pearson", "spearman"]
    runs = per_run(board, study)
    if FORGETTING not in runs.columns:
        return pd.DataFrame(columns=columns)
    runs = runs[runs.recipe != BASELINE_RECIPE]
    rows = []
    for name, group in runs.groupby("study", sort=True):
        for measure in shift_columns(group):
            pairs = group[[measure, FORGETTING]].dropna()
            rows.append({"study": name, "measure": measure, "n": len(pairs),
                         "pearson": pearson(pairs[measure], pairs[FORGETTING]),
                         "spearman": spearman(pairs[measure], pairs[FORGETTING])})
    return pd.DataFrame(rows, columns=columns)


def paper_table(board: Leaderboard, study: str | None = None, benchmarks: list[str] | None = None) -> pd.DataFrame:
    """Seed-aggregated table (see the module docstring); the baseline first in each study."""
    runs = per_run(board, study, benchmarks)
    if runs.empty:
        return pd.DataFrame(columns=["study", "recipe", "runs"])
    value_columns = [c for c in runs.columns if c not in ("run_id", "study", "recipe", "seed", NOTES)]
    grouped = runs.groupby(["study", "recipe"], sort=False)
    means = grouped[value_columns].mean()
    stds = grouped[value_columns].std(ddof=1)
    out = grouped.size().rename("runs").to_frame()
    deltas = [delta for _, delta in SUITE_AVERAGES.values() if delta in value_columns]
    for column in value_columns:
        out[column] = means[column]
        out[f"{column}_std"] = stds[column]
        if deltas and column == deltas[-1] and NOTES in runs.columns:  # notes stay beside the averages they qualify
            out[NOTES] = grouped[NOTES].agg(lambda notes: " | ".join(dict.fromkeys(n for n in notes if n)))
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


def paper_view(table: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """What `forgetbench leaderboard --view paper` renders in `fmt` from a paper table: its mean and std
    folded into one cell for the human formats (table, markdown), in separate columns for csv/json."""
    return paper_display(table) if fmt in ("table", "markdown") else table


def _mean_std(mean: float, std: float) -> str | None:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return None
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {std:.4f}"
