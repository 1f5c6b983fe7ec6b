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
QUERY_TIMEOUT = 60.0  # seconds before a query is interrupted (--timeout)
QUERY_MAX_ROWS = 1000  # rows fetched and printed at most (--max-rows)
QUERY_MEMORY = "2GB"  # DuckDB's memory limit for a query (spills to nothing: external access is off)


def run_query(board: Leaderboard, sql: str, *, timeout: float = QUERY_TIMEOUT, max_rows: int = QUERY_MAX_ROWS,
              memory_limit: str = QUERY_MEMORY) -> pd.DataFrame:
    """The result of one read-only statement, at most `max_rows` rows of it (the frame's
    `attrs["truncated"]` says when there were more), interrupted after `timeout` seconds, within
    `memory_limit`; any failure, a timeout or Ctrl-C is a one-line ForgetbenchError."""
    import threading

    if not sql.strip():
        raise ConfigError("SQL: empty query")
    if timeout <= 0 or max_rows <= 0:
        raise ConfigError("--timeout and --max-rows: must be positive")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise ForgetbenchError(f"query: {first_line(error)}") from error
    if len(statements) != 1:
        raise ConfigError(f"SQL: {len(statements)} statements given; run one at a time")
    with board.connect(read_only=True, config={**_LOCKED_DOWN, "memory_limit": memory_limit}) as con:
        timer = threading.Timer(timeout, con.interrupt)
        timer.start()
        try:
            cursor = con.execute(sql)
            if cursor.description is None:  # e.g. CHECKPOINT: nothing to show
                return pd.DataFrame()
            columns = [column[0] for column in cursor.description]
            rows = cursor.fetchmany(max_rows + 1)
        except KeyboardInterrupt:
            con.interrupt()
            raise ForgetbenchError("query: interrupted (Ctrl-C); nothing was changed") from None
        except duckdb.Error as error:
            text = first_line(error)
            if isinstance(error, duckdb.InterruptException) or "INTERRUPT" in text.upper():
                reason = f"stopped after the --timeout of {timeout:g} s" if not timer.is_alive() else "interrupted"
                raise ForgetbenchError(f"query: {reason}; nothing was changed") from None
            if "read-only" in text or "disabled by configuration" in text or "configuration has been locked" in text:
                raise ForgetbenchError(f"query: refused, the leaderboard is opened read-only ({text})") from error
            if "memory" in text.lower() and "limit" in text.lower():
                raise ForgetbenchError(f"query: needs more than the {memory_limit} memory limit ({text})") from error
            raise ForgetbenchError(f"query: {text}") from error
        finally:
            timer.cancel()
    frame = pd.DataFrame(rows[:max_rows], columns=columns)
    frame.attrs["truncated"] = len(rows) > max_rows
    return frame


def export_parquet(board: Leaderboard, out: Path, study: str | None = None) -> list[Path]:
    """Write one parquet file per table (runs, scores, examples, shift_measures); only ``study``'s runs if
    given (an unknown study is an error). The files are written into a new folder beside `out`, which
    then takes `out`'s place whole: an export that fails leaves `out` as it was, and an export never
    mixes new tables with an earlier one's. A non-empty `out` must hold an earlier export (only
    parquet files of these tables), so that nothing else is replaced."""
    from harness.paths import swap_in_folder

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in {f"{t}.parquet" for t in EXPORTED})
        if foreign:
            raise ConfigError(f"--out {out}: holds {foreign[0]!r}, which is not an earlier export; give a new or "
                              f"empty folder")
    with board.connect(read_only=True) as con:
        if study is not None:
            known_studies(con, study, "--study")
        with swap_in_folder(out) as staging:
            for table in EXPORTED:
                where = "" if study is None else (
                    "WHERE study = $study" if table == "runs"
                    else "WHERE run_id IN (SELECT run_id FROM runs WHERE study = $study)")
                escaped = str(staging / f"{table}.parquet").replace("'", "''")
                con.execute(f"COPY (SELECT * FROM {table} {where}) TO '{escaped}' (FORMAT parquet)",
                            {} if study is None else {"study": study})
    return [out / f"{table}.parquet" for table in EXPORTED]


def known_studies(con, study: str, option: str) -> None:
    """A ConfigError naming `option` when no run of the leaderboard belongs to `study`."""
    names = [name for (name,) in con.execute("SELECT DISTINCT study FROM runs ORDER BY study").fetchall()]
    if study not in names:
        from harness.registry import did_you_mean

        raise ConfigError(f"{option}: no runs of study {study!r} on this leaderboard{did_you_mean(study, names)}; "
                          f"studies: {', '.join(names) or 'none'}")
