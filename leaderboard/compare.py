"""Paired comparison of two runs (or two recipes of a study) on the examples both were evaluated on.

For every benchmark the per-example values of the primary metric are paired on example_id (a recipe
with several seeds contributes the mean over its seeds per example). The difference is mean(B − A);
its 95 % confidence interval is the percentile interval of a paired bootstrap (resampling example
pairs), and the two-sided p-value is the share of bootstrap means of the centred differences (the
null hypothesis of no difference) at least as far from 0 as the observed mean, counted as
(k + 1) / (resamples + 1). ``significant`` uses Holm's correction over the benchmarks compared.

Only runs trained on the same domain rows are paired: where both sides are fine-tuned runs whose mixes
record it, the domain rows they trained on (ids with repeats, per seed) must be the same, so `none`
filling its mix with extra domain rows (or repeating them) is not paired with a rehearsal recipe that
trains on the study's domain share once.

Only runs evaluated the same way are paired: every evaluation setting recorded beside a compared
benchmark's scores (limit, subset seed, max_new_tokens, subsets, data hashes, judge, ...) and the
runs' generation backend must agree across all runs of both sides, else ``compare`` refuses, naming
the first differing setting. ``allow_mismatch=True`` pairs them anyway and adds a
``mismatched_settings`` column naming, per benchmark, the settings that differ.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from leaderboard.store import Leaderboard

COLUMNS = ["benchmark", "metric", "n", "a_mean", "b_mean", "diff", "ci_low", "ci_high",
           "p_value", "p_holm", "significant"]
_CHUNK_CELLS = 4_000_000  # resample indices drawn per batch (memory bound: ~32 MB)
MIN_RESAMPLES, MAX_RESAMPLES = 100, 1_000_000  # the bootstrap means alone take 8 bytes each
# Entries of a benchmark's recorded settings that describe an outcome or a cost of the evaluation,
# not how it was measured: they may differ between runs evaluated identically.
# Nested settings (GPQA's per-subset records) are filtered the same way.
# `eval_key` names the result's cache folder, which includes the evaluated model's hash.
OUTCOME_KEYS = frozenset({"wall_seconds", "seconds", "unparseable", "judged", "subset_scores", "lc_not_fitted",
                          "lc_cv_splits", "eval_key"})
RUN_SETTINGS = ("generation_backend",)  # evaluation settings recorded per run (runs columns), not per benchmark


def resolve(con, name: str, study: str | None, option: str) -> list[str]:
    """The run_ids a RUN_A / RUN_B argument names: a run_id, or every run of a recipe, given by its
    label (`reconstructed-single:48,64`) or, where only one label has it, by its name alone."""
    if con.execute("SELECT 1 FROM runs WHERE run_id = ?", [name]).fetchone():
        return [name]
    rows = _recipe_runs(con, name, study)
    if not rows:  # a recipe's name without its parameters, e.g. reconstructed-single for reconstructed-single:48,64
        labels = [label for (label,) in con.execute(
            "SELECT DISTINCT recipe FROM runs WHERE starts_with(recipe, ? || ':') AND (? IS NULL OR study = ?) "
            "ORDER BY recipe", [name, study, study]).fetchall()]
        if len(labels) > 1:
            raise ConfigError(f"{option}: {name!r} names several recipes ({', '.join(labels)}); give one of them")
        rows = _recipe_runs(con, labels[0], study) if labels else []
    if not rows:
        where = f" in study {study!r}" if study else ""
        raise ConfigError(f"{option}: {name!r} is neither a run_id nor a recipe with finished runs{where}")
    studies = sorted({s for s, _ in rows})
    if len(studies) > 1:
        raise ConfigError(f"{option}: recipe {name!r} has runs in several studies ({', '.join(studies)}); "
                          f"name one with --study")
    return [run_id for _, run_id in rows]


def _recipe_runs(con, label: str, study: str | None) -> list[tuple[str, str]]:
    return con.execute("SELECT study, run_id FROM runs WHERE recipe = ? AND (? IS NULL OR study = ?) "
                       "ORDER BY study, seed, run_id", [label, study, study]).fetchall()


def _side(con, run_ids: list[str], primary: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per-example primary values of some runs, averaged over the runs. One equality query per run
    lets DuckDB answer from the ``examples_run`` index (schema v2) instead of scanning the table."""
    frames = [con.execute("SELECT benchmark, metric, example_id, value FROM examples WHERE run_id = ?",
                          [run_id]).df() for run_id in run_ids]
    rows = pd.concat(frames, ignore_index=True).merge(primary, on=["benchmark", "metric"])
    rows = rows[rows.value.notna()]
    return rows.groupby(["benchmark", "metric", "example_id"], sort=False).value.mean().rename(column).reset_index()


def paired_values(con, a: list[str], b: list[str]) -> pd.DataFrame:
    """benchmark, metric, example_id, a, b for every example both sides have under the primary metric
    (primary as recorded for side A's runs)."""
    primary = pd.concat([
        con.execute("SELECT benchmark, metric FROM scores WHERE run_id = ? AND is_primary", [run_id]).df()
        for run_id in a
    ]).drop_duplicates()
    pairs = _side(con, a, primary, "a").merge(_side(con, b, primary, "b"), on=["benchmark", "metric", "example_id"])
    return pairs.sort_values(["benchmark", "metric", "example_id"], ignore_index=True)


def evaluation_settings(con, run_ids: list[str], benchmarks) -> dict[str, dict[str, dict]]:
    """run_id -> benchmark -> the evaluation settings its scores were recorded with (outcome entries
    left out), each benchmark also holding the run-level ones (``run.generation_backend``)."""
    out: dict[str, dict[str, dict]] = {}
    for run_id in run_ids:
        values = con.execute(f"SELECT {', '.join(RUN_SETTINGS)} FROM runs WHERE run_id = ?", [run_id]).fetchone()
        run_level = {f"run.{key}": value for key, value in zip(RUN_SETTINGS, values)}
        rows = con.execute("SELECT benchmark, any_value(settings) FROM scores WHERE run_id = ? GROUP BY benchmark",
                           [run_id]).fetchall()
        out[run_id] = {benchmark: {**run_level, **_without_outcomes(json.loads(text or "{}"))}
                       for benchmark, text in rows if benchmark in benchmarks}
    return out


def _without_outcomes(value):
    """`value` with every OUTCOME_KEYS entry removed, at any depth."""
    if isinstance(value, dict):
        return {k: _without_outcomes(v) for k, v in value.items() if k not in OUTCOME_KEYS}
    if isinstance(value, list):
        return [_without_outcomes(v) for v in value]
    return value


def settings_mismatches(settings: dict[str, dict[str, dict]]) -> list[tuple[str, str, str]]:
    """(benchmark, setting, description) for every setting that differs between the runs, each
    described against the first run that has the benchmark: `512 (run a) vs 1280 (run b)`."""
    found: dict[tuple[str, str], str] = {}
    reference: dict[str, tuple[str, dict]] = {}
    for run_id, per_benchmark in settings.items():
        for benchmark, values in sorted(per_benchmark.items()):
            if benchmark not in reference:
                reference[benchmark] = (run_id, values)
                continue
            first_run, first = reference[benchmark]
            for key in sorted(set(first) | set(values)):
                if first.get(key) != values.get(key) and (benchmark, key) not in found:
                    found[benchmark, key] = (f"{_short(first.get(key))} ({first_run}) vs "
                                             f"{_short(values.get(key))} ({run_id})")
    return [(benchmark, key, text) for (benchmark, key), text in sorted(found.items())]


def training_mismatches(con, a: list[str], b: list[str]) -> list[str]:
    """One line per seed where side A's and side B's fine-tuned runs trained on different domain rows
    (their mixes' `domain_ids_sha256`); runs without that record (the seed model, older runs) are not
    checked."""
    def trained(run_ids: list[str]) -> dict[int, tuple[str, str, int, int]]:
        out = {}
        for recipe, seed, mix in con.execute(
                f"SELECT recipe, seed, mix FROM runs WHERE run_id IN ({', '.join('?' for _ in run_ids)})",
                run_ids).fetchall():
            meta = json.loads(mix) if mix else {}
            if "domain_ids_sha256" in meta:
                out[seed] = (meta["domain_ids_sha256"], recipe, meta["domain_rows"], meta["unique_domain_rows"])
        return out

    side_a, side_b = trained(a), trained(b)
    lines = []
    for seed in sorted(set(side_a) & set(side_b)):
        (hash_a, recipe_a, rows_a, unique_a), (hash_b, recipe_b, rows_b, unique_b) = side_a[seed], side_b[seed]
        if hash_a != hash_b:
            lines.append(f"seed {seed}: {recipe_a} trained on {rows_a} domain rows ({unique_a} distinct), {recipe_b} on "
                         f"{rows_b} ({unique_b} distinct) — not the same rows")
    return lines


def _short(value, width: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= width else text[:width - 3] + "..."


def paired_bootstrap(diffs: np.ndarray, *, resamples: int = 10_000, seed: int = 0,
                     confidence: float = 0.95) -> tuple[float, float, float]:
    """(ci_low, ci_high, p_value) of the mean of paired differences ``diffs``."""
    diffs = np.asarray(diffs, dtype=np.float64)
    n = len(diffs)
    observed = float(diffs.mean())
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        index = rng.integers(0, n, size=(stop - start, n), dtype=np.int32)
        means[start:stop] = diffs[index].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    centred = means - observed  # the bootstrap distribution shifted to the null of no difference
    extreme = np.count_nonzero(np.abs(centred) >= abs(observed) - 1e-12)
    return float(low), float(high), (extreme + 1) / (resamples + 1)


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (monotone, capped at 1)."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def compare(board: Leaderboard, run_a: str, run_b: str, *, study: str | None = None,
            benchmarks: list[str] | None = None, resamples: int = 10_000, seed: int = 0,
            alpha: float = 0.05, allow_mismatch: bool = False) -> pd.DataFrame:
    """One row per benchmark: see the module docstring. ``diff`` is B − A."""
    if not MIN_RESAMPLES <= resamples <= MAX_RESAMPLES:
        raise ConfigError(f"--resamples: {resamples} is out of range; use {MIN_RESAMPLES} to {MAX_RESAMPLES:,} "
                          f"(10,000 gives p-values to 1e-4)")
    if seed < 0:
        raise ConfigError(f"--seed: {seed} is negative; the bootstrap takes a seed of 0 or more")
    with board.connect() as con:
        a = resolve(con, run_a, study, "RUN_A")
        b = resolve(con, run_b, study, "RUN_B")
        if set(a) & set(b):
            raise ConfigError(f"RUN_A/RUN_B: {run_a!r} and {run_b!r} share run {sorted(set(a) & set(b))[0]}; a run "
                              f"compared with itself differs by nothing")
        pairs = paired_values(con, a, b)
        if benchmarks:
            pairs = pairs[pairs.benchmark.isin(benchmarks)]
        mismatches = settings_mismatches(evaluation_settings(con, a + b, set(pairs.benchmark)))
        trained = training_mismatches(con, a, b)
    if trained and not allow_mismatch:
        more = f" (and {len(trained) - 1} more seeds)" if len(trained) > 1 else ""
        raise ConfigError(f"RUN_A/RUN_B: trained on different domain rows, {trained[0]}{more}; pass --allow-mismatch "
                          f"to pair them anyway")
    if mismatches and not allow_mismatch:
        benchmark, key, text = mismatches[0]
        more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
        raise ConfigError(f"RUN_A/RUN_B: evaluated with different settings, {benchmark} {key}: {text}{more}; "
                          f"pass --allow-mismatch to pair them anyway")
    rows = []
    for (benchmark, metric), group in pairs.groupby(["benchmark", "metric"], sort=True):
        diffs = group.b.to_numpy() - group.a.to_numpy()
        low, high, p = paired_bootstrap(diffs, resamples=resamples, seed=seed, confidence=1 - alpha)
        rows.append({"benchmark": benchmark, "metric": metric, "n": len(diffs),
                     "a_mean": float(group.a.mean()), "b_mean": float(group.b.mean()),
                     "diff": float(diffs.mean()), "ci_low": low, "ci_high": high, "p_value": p})
    if not rows:
        raise ConfigError(f"RUN_A/RUN_B: {run_a!r} and {run_b!r} share no per-example results to pair")
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(list(out.p_value))
    out["significant"] = out.p_holm < alpha
    if mismatches or trained:
        differing = {}
        for benchmark, key, _ in mismatches:
            differing.setdefault(benchmark, []).append(key)
        out["mismatched_settings"] = [", ".join(differing.get(b, []) + (["mix.domain_rows"] if trained else []))
                                      for b in out.benchmark]
        out = out[[*COLUMNS, "mismatched_settings"]]
        out.attrs["mismatches"] = ([f"{benchmark} {key}: {text}" for benchmark, key, text in mismatches]
                                   + [f"mix.domain_rows: {line}" for line in trained])
        return out
    return out[COLUMNS]
