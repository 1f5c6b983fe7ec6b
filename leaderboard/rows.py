"""A run's record and results as the rows the leaderboard's tables hold."""
from __future__ import annotations

import math
from typing import Any

import duckdb
import pandas as pd

from harness.errors import ForgetbenchError
from harness.results import BenchmarkResult, RunRecord
from leaderboard.schema import EXAMPLE_COLUMNS, JSON_RUN_FIELDS, SCORE_COLUMNS, SHIFT_COLUMNS, to_json


def insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Insert a DataFrame's rows into ``table`` (module-level so tests can inject a failure)."""
    if frame.empty:
        return
    name = f"_forgetbench_{table}_rows"
    columns = ", ".join(frame.columns)
    con.register(name, frame)
    try:
        con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {name}")
    finally:
        con.unregister(name)


def result_frames(run: RunRecord, results: list[BenchmarkResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check the results of one run and flatten them into scores and examples rows."""
    problems: list[str] = []
    if not run.run_id:
        problems.append("run has an empty run_id")
    score_rows: list[dict[str, Any]] = []
    example_rows: list[dict[str, Any]] = []
    seen_benchmarks: set[str] = set()
    for result in results:
        where = f"run {run.run_id}, benchmark {result.benchmark}"
        if result.benchmark in seen_benchmarks:
            problems.append(f"{where}: benchmark appears twice")
            continue
        seen_benchmarks.add(result.benchmark)
        metrics = [score.metric for score in result.scores]
        if len(set(metrics)) != len(metrics):
            problems.append(f"{where}: a metric appears twice in its scores")
        if result.primary_metric not in metrics:
            problems.append(f"{where}: primary metric {result.primary_metric!r} has no score")
        settings = to_json(result.settings)
        for score in result.scores:
            if int(score.n) <= 0:
                problems.append(f"{where}: metric {score.metric} was measured on n={score.n} examples; "
                                f"a score needs at least one")
            score_rows.append({
                "run_id": run.run_id, "benchmark": result.benchmark, "metric": score.metric,
                "value": _float(score.value), "stderr": _float(score.stderr), "n": int(score.n),
                "is_primary": score.metric == result.primary_metric, "settings": settings,
            })
        keys = [(example.metric, example.example_id) for example in result.examples]
        if len(set(keys)) != len(keys):
            problems.append(f"{where}: an example_id appears twice under one metric")
        for example in result.examples:
            example_rows.append({
                "run_id": run.run_id, "benchmark": result.benchmark, "metric": example.metric,
                "example_id": str(example.example_id), "value": _float(example.value),
                "prediction": example.prediction, "target": example.target,
            })
    if problems:
        raise ForgetbenchError(problems)
    scores = pd.DataFrame(score_rows, columns=SCORE_COLUMNS).astype(
        {"value": "float64", "stderr": "float64", "n": "int64", "is_primary": "bool"}
    )
    examples = pd.DataFrame(example_rows, columns=EXAMPLE_COLUMNS).astype({"value": "float64"})
    return scores, examples


def run_value(run: RunRecord, column: str) -> Any:
    """One runs-table cell of a record: JSON text for dict fields, the sweep point's parts."""
    if column.startswith("sweep_"):
        if run.sweep is None:
            return None
        value = getattr(run.sweep, column.removeprefix("sweep_"))
        return to_json(value) if column == "sweep_value" else value
    value = getattr(run, column)
    return to_json(value) if column in JSON_RUN_FIELDS and value is not None else value


def shift_frame(run: RunRecord) -> pd.DataFrame:
    """The run's shift measures as rows of the shift_measures table."""
    rows = []
    seen = set()
    for index, item in enumerate(run.shift):
        try:
            row = {"run_id": run.run_id, "measure": str(item.measure), "part": str(item.part),
                   "value": _float(item.value), "n": int(item.n)}
        except (AttributeError, TypeError, ValueError) as exc:
            raise ForgetbenchError(f"run {run.run_id}: shift[{index}]: malformed measure ({exc!r})") from None
        if (row["measure"], row["part"]) in seen:
            raise ForgetbenchError(f"run {run.run_id}: shift[{index}]: {row['measure']}/{row['part']} appears twice")
        seen.add((row["measure"], row["part"]))
        rows.append(row)
    return pd.DataFrame(rows, columns=SHIFT_COLUMNS).astype({"value": "float64", "n": "int64"})


def _float(value: float | None) -> float:
    """None (and NaN, which DuckDB reads from pandas as NULL anyway) become NULL in the table."""
    return math.nan if value is None else float(value)
