"""Read-only SQL against a leaderboard, and export of its tables to parquet.

``run_query`` opens the file with DuckDB's ``read_only=True`` (no statement can change the database),
``enable_external_access=False`` (no ATTACH, COPY TO, file reads or extension installs, so nothing
can be written elsewhere either) and ``lock_configuration=True`` (SQL cannot switch those back).
"""
from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from harness.errors import ConfigError, ForgetbenchError, first_line
from leaderboard.store import Leaderboard

_LOCKED_DOWN = {"enable_external_access": False, "lock_configuration": True}
EXPORTED = ("runs", "scores", "examples", "shift_measures")


def run_query(board: Leaderboard, sql: str) -> pd.DataFrame:
    """The result of one read-only statement; any failure is a one-line ForgetbenchError."""
    if not sql.strip():
        raise ConfigError("SQL: empty query")
    with board.connect(read_only=True, config=_LOCKED_DOWN) as con:
        try:
            cursor = con.execute(sql)
            if cursor.description is None:  # e.g. CHECKPOINT: nothing to show
                return pd.DataFrame()
            return cursor.df()
        except duckdb.Error as error:
            text = first_line(error)
            if "read-only" in text or "disabled by configuration" in text or "configuration has been locked" in text:
                raise ForgetbenchError(f"query: refused, the leaderboard is opened read-only ({text})") from error
            raise ForgetbenchError(f"query: {text}") from error


def export_parquet(board: Leaderboard, out: Path, study: str | None = None) -> list[Path]:
    """Write one parquet file per table (runs, scores, examples, shift_measures); only ``study``'s runs if given."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with board.connect(read_only=True) as con:
        for table in EXPORTED:
            target = out / f"{table}.parquet"
            where = "" if study is None else (
                "WHERE study = $study" if table == "runs"
                else "WHERE run_id IN (SELECT run_id FROM runs WHERE study = $study)")
            escaped = str(target).replace("'", "''")
            con.execute(f"COPY (SELECT * FROM {table} {where}) TO '{escaped}' (FORMAT parquet)",
                        {} if study is None else {"study": study})
            written.append(target)
    return written
