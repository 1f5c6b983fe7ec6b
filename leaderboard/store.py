"""The DuckDB leaderboard: one file holding every run's provenance, scores and per-example results.

Tables
    meta(key, value)        application marker and ``schema_version``
    migrations              (since v2) one row per schema version this file went through: version,
                            applied_at (NULL for steps taken before v2 kept a history) and the
                            forgetbench version that applied it
    runs                    one row per RunRecord; dict fields stored as JSON text. Since v4 the
                            domain, generation_backend, mix summary (JSON) and sweep point
                            (sweep_parameter, sweep_value as JSON, sweep_recipe) are columns of their
                            own, no longer keys of ``extra``, and the constant ``status`` is gone
    scores                  run_id, benchmark, metric, value, stderr, n, is_primary, settings (JSON)
    examples                run_id, benchmark, metric, example_id, value, prediction, target
    shift_measures          (since v3) run_id, measure, part, value, n: the run's distribution-shift
                            measures against its seed model (harness/shift.py), taken from
                            ``RunRecord.shift`` and written with the run
View
    deltas                  every non-baseline run's scores minus those of its baseline: the latest
                            ``recipe = 'baseline'`` run with the same base_model_sha and
                            eval_config_hash (NULL baseline columns where no baseline matches)

Concurrency. DuckDB lets one process at a time open a file for writing (and no other process read it
meanwhile); a second process gets an IOException ("Could not set lock on file ... Conflicting lock
is held in ... (PID n)") at connect time instead of waiting. So this class holds no connection between
calls: each call opens a connection, does its work and closes it, and a connect that meets another
process's lock is retried with jittered exponential backoff until ``lock_timeout`` seconds have
passed, after which a ForgetbenchError names the file. Studies running side by side thus interleave
their short writes and never lose a row. Threads of one process are serialised by a per-file lock.

Its parts: leaderboard/schema.py (the tables, their migrations and the deltas view), locks.py (who
holds a file), rows.py (a run's record and results as table rows); this module opens, checks,
writes and reads.
"""
from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from harness.errors import ForgetbenchError, first_line
from harness.results import BenchmarkResult, RunRecord
from leaderboard import rows
from leaderboard.locks import is_lock_conflict, is_sqlite, lock_holder, process_lock
from leaderboard.schema import (
    APPLICATION,
    BASELINE_ORDER,
    BASELINE_RECIPE,
    DEFAULT_LOCK_TIMEOUT,
    DUCKDB_CONFIG,
    MIGRATIONS,
    RUN_COLUMNS,
    RUN_ORDER,
    SCHEMA_VERSION,
    TABLE_KEYS,
    create_views,
    forgetbench_version,
)

log = logging.getLogger("forgetbench")
class Leaderboard:
    """A forgetbench leaderboard file. Holds no connection between calls (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 read_only: bool = False):
        """``read_only=True`` (the read commands: query, leaderboard, compare, export, report) never
        writes the file: an older schema is refused with the command that migrates it, not migrated."""
        self.path = Path(path).expanduser()
        self.lock_timeout = float(lock_timeout)
        self.read_only = read_only
        self._lock = process_lock(self.path)
        self._ensure_schema()

    def __repr__(self) -> str:
        return f"Leaderboard({str(self.path)!r})"

    # -- connections ----------------------------------------------------------------------------

    @contextmanager
    def _connect(self, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; waits (with backoff) while another process holds the file."""
        with self._lock:
            con = self._open_with_retry(read_only)
            try:
                yield con
            except duckdb.Error as error:  # e.g. a block failing its checksum: name the file, one line
                raise ForgetbenchError(f"leaderboard {self.path}: {first_line(error)}") from error
            finally:
                con.close()

    @contextmanager
    def connect(self, *, read_only: bool = True, config: dict[str, Any] | None = None
                ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection for views, exports and user SQL; ``config`` adds DuckDB
        settings (e.g. ``enable_external_access``) to the defaults."""
        with self._lock:
            con = self._open_with_retry(read_only, config)
            try:
                yield con
            except duckdb.Error as error:
                raise ForgetbenchError(f"leaderboard {self.path}: {first_line(error)}") from error
            finally:
                con.close()

    def _open_with_retry(self, read_only: bool, config: dict[str, Any] | None = None
                         ) -> duckdb.DuckDBPyConnection:
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.01
        warned = False
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only,
                                      config={**DUCKDB_CONFIG, **(config or {})})
            except duckdb.ConnectionException as error:
                if config:  # a restricted connection must not fall back to a shared, unrestricted one
                    raise ForgetbenchError(
                        f"leaderboard {self.path}: this process already has the file open; close that "
                        f"connection first ({first_line(error)})"
                    ) from error
                # Code elsewhere in this process holds the file open with other settings (DuckDB
                # then refuses a connection with different ones): share that instance instead.
                try:
                    return duckdb.connect(str(self.path))
                except duckdb.ConnectionException:
                    raise ForgetbenchError(
                        f"leaderboard {self.path}: this process already has the file open with other "
                        f"settings; close that connection first ({first_line(error)})"
                    ) from error
            except duckdb.IOException as error:
                if not is_lock_conflict(error):
                    raise self._open_error(error) from error
                if not warned:
                    log.warning("leaderboard %s is locked by %s; waiting up to %gs for it", self.path,
                                lock_holder(error), self.lock_timeout)
                    warned = True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ForgetbenchError(
                        f"leaderboard {self.path}: still locked by {lock_holder(error)} after "
                        f"{self.lock_timeout:g}s (DuckDB allows one writer per file)"
                    ) from error
                time.sleep(min(remaining, delay * random.uniform(0.5, 1.5)))
                delay = min(delay * 2, 0.5)
            except duckdb.Error as error:  # e.g. "Corrupt database file: computed checksum ..."
                raise self._open_error(error) from error

    def _open_error(self, error: Exception) -> ForgetbenchError:
        text = str(error)
        if isinstance(error, duckdb.IOException) and ("Not a directory" in text or "Read-only" in text
                                                      or "Permission denied" in text):
            return ForgetbenchError(f"leaderboard {self.path}: cannot write here ({first_line(error)})")
        if "not a valid DuckDB database file" in text:
            return ForgetbenchError(f"{self.path}: not a forgetbench leaderboard (not a DuckDB database file)")
        if is_sqlite(self.path):  # DuckDB would reach for its sqlite extension and report that missing
            return ForgetbenchError(f"{self.path}: not a forgetbench leaderboard (an SQLite database, not DuckDB)")
        return ForgetbenchError(f"leaderboard {self.path}: cannot open: {first_line(error)}")

    # -- integrity ------------------------------------------------------------------------------

    @classmethod
    def verify_file(cls, path: str | os.PathLike[str]) -> None:
        """Check an existing file before any work, writing nothing: a DuckDB database (not text, not
        SQLite), a forgetbench leaderboard of a schema this forgetbench reads (older ones included: `run`
        migrates them), and every block of every table readable (DuckDB checks each block's checksum
        as it reads it: a truncated or damaged file fails here, not after an evaluation)."""
        board = cls.__new__(cls)
        board.path, board.lock_timeout, board.read_only = Path(path).expanduser(), DEFAULT_LOCK_TIMEOUT, True
        board._lock = process_lock(board.path)
        with board._connect(read_only=True) as con:
            board._schema_version(con)
            board._read_every_block(con)

    def _read_every_block(self, con: duckdb.DuckDBPyConnection) -> None:
        tables = [name for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()]
        try:
            for table in tables:  # every column of every row goes through a hash: every block is read
                con.execute(f'SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM "{table}"').fetchall()
        except duckdb.Error as error:
            raise ForgetbenchError(f"leaderboard {self.path}: damaged, table {table} cannot be read "
                                   f"({first_line(error)}); restore it from a copy") from None

    # -- schema ---------------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        if not self.path.exists():
            if self.read_only:
                raise ForgetbenchError(f"leaderboard {self.path}: no such file (run a study first)")
            self._create()
        with self._connect(read_only=True) as con:
            version = self._schema_version(con)
            if version == SCHEMA_VERSION:
                return
        if self.read_only:
            raise ForgetbenchError(
                f"leaderboard {self.path}: schema_version {version} predates this forgetbench's "
                f"{SCHEMA_VERSION}; read commands never write, so migrate it first with "
                f"`forgetbench leaderboard migrate --leaderboard {self.path}`")
        with self._connect(read_only=False) as con:
            version = self._schema_version(con)  # again: another process may have migrated it
            if version < SCHEMA_VERSION:
                self._migrate(con, version)

    def _create(self) -> None:
        """Build a new file under a private name and link it into place, so that no process ever
        opens a half-created file (DuckDB reports one as "not a valid DuckDB database file"
        rather than as locked). If another process got there first, its file is kept."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            con = duckdb.connect(str(staging), config=DUCKDB_CONFIG)
            try:
                self._migrate(con, 0)
            finally:
                con.close()
            try:
                os.link(staging, self.path)  # atomic, and fails rather than replace a file
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links: rename, unless someone was quicker
                if not self.path.exists():
                    os.replace(staging, self.path)
        finally:
            for leftover in (staging, staging.with_name(staging.name + ".wal")):
                leftover.unlink(missing_ok=True)

    def _schema_version(self, con: duckdb.DuckDBPyConnection) -> int:
        """0 for an empty database; raises for a foreign database or a newer schema."""
        tables = {
            name for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
            ).fetchall()
        }
        if not tables:
            return 0
        if "meta" not in tables:
            raise ForgetbenchError(f"{self.path}: not a forgetbench leaderboard (DuckDB file without a meta table)")
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("application") != APPLICATION or "schema_version" not in meta:
            raise ForgetbenchError(f"{self.path}: not a forgetbench leaderboard (its meta table is not ours)")
        try:
            version = int(meta["schema_version"])
        except ValueError:
            raise ForgetbenchError(
                f"{self.path}: not a forgetbench leaderboard (schema_version {meta['schema_version']!r})"
            ) from None
        if version > SCHEMA_VERSION:
            raise ForgetbenchError(
                f"{self.path}: leaderboard schema_version {version} is newer than this forgetbench reads "
                f"({SCHEMA_VERSION}); upgrade forgetbench"
            )
        return version

    def _migrate(self, con: duckdb.DuckDBPyConnection, version: int) -> None:
        con.begin()
        try:
            for step in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[step](con)
                if step >= 2:
                    con.execute("INSERT INTO migrations VALUES (?, current_timestamp, ?)",
                                [step, forgetbench_version()])
            create_views(con)
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('application', ?), ('schema_version', ?)",
                [APPLICATION, str(SCHEMA_VERSION)],
            )
            con.commit()
        except BaseException:
            con.rollback()
            raise

    # -- writes ---------------------------------------------------------------------------------

    def record(self, run: RunRecord, results: list[BenchmarkResult]) -> None:
        """Store one run and its results in a single transaction: all rows land, or none do.

        Recording a run_id that is already present replaces that run's rows inside the same
        transaction. Replacing (rather than refusing) lets a resumed or re-evaluated run overwrite
        its earlier record without a separate delete step that could leave the run half-gone, and
        keeps ``record`` idempotent for a runner that cannot tell whether its last write landed.
        A re-record with the same scores (a rerun served from the cache) keeps the run's first
        ``started_at`` and ``finished_at``: they say when its results were produced.
        """
        scores, examples = rows.result_frames(run, results)
        shift = rows.shift_frame(run)
        row = [rows.run_value(run, column) for column in RUN_COLUMNS]
        with self._connect(read_only=False) as con:
            con.begin()
            try:
                first_times = _times_of_an_identical_record(con, run.run_id, scores)
                if first_times is not None:
                    row[RUN_COLUMNS.index("started_at")], row[RUN_COLUMNS.index("finished_at")] = first_times
                for table in ("examples", "scores", "shift_measures", "runs"):
                    con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run.run_id])
                con.execute(
                    f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in RUN_COLUMNS)})",
                    row,
                )
                rows.insert_frame(con, "scores", scores)
                rows.insert_frame(con, "examples", examples)
                rows.insert_frame(con, "shift_measures", shift)
                con.commit()
            except BaseException as interruption:
                self._after_failed_write(con, run.run_id, interruption)
                raise

    def _after_failed_write(self, con: duckdb.DuckDBPyConnection, run_id: str, error: BaseException) -> None:
        """Roll back what is still open and say whether the run landed: an interrupt (Ctrl-C, SIGTERM)
        can arrive after the commit finished, when there is nothing left to roll back."""
        try:
            con.rollback()
        except duckdb.Error:  # "no transaction is active": the commit had completed, or never began
            pass
        try:
            landed = con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()[0] > 0
        except duckdb.Error:
            return
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            log.error("interrupted while recording run %s in %s: %s", run_id, self.path,
                      "the run was committed (all its rows are on the leaderboard)" if landed
                      else "nothing of it was written (rolled back)")

    # -- reads ----------------------------------------------------------------------------------

    def _query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        with self._connect(read_only=True) as con:
            return con.execute(sql, params or []).df()

    def find_baseline(self, base_model_sha: str, eval_config_hash: str) -> str | None:
        """run_id of the latest baseline run for this base model and eval config."""
        with self._connect(read_only=True) as con:
            row = con.execute(
                f"""
                SELECT run_id FROM runs
                WHERE recipe = ? AND base_model_sha = ? AND eval_config_hash = ?
                ORDER BY {BASELINE_ORDER} LIMIT 1
                """,
                [BASELINE_RECIPE, base_model_sha, eval_config_hash],
            ).fetchone()
        return None if row is None else row[0]

    def runs(self, study: str | None = None) -> pd.DataFrame:
        """One row per run with every provenance column (dict fields as JSON text)."""
        return self._query(
            f"SELECT * FROM runs WHERE ? IS NULL OR study = ? ORDER BY {RUN_ORDER}", [study, study]
        )

    def table(self, study: str | None = None) -> pd.DataFrame:
        """One row per run (run_id, study, recipe, seed, finished_at) and one column per benchmark
        holding its primary metric's value; benchmark columns sorted by name."""
        with self._connect(read_only=True) as con:
            runs = con.execute(
                f"SELECT {', '.join(TABLE_KEYS)} FROM runs WHERE ? IS NULL OR study = ? ORDER BY {RUN_ORDER}",
                [study, study],
            ).df()
            primary = con.execute(
                """
                SELECT s.run_id, s.benchmark, s.value FROM scores s JOIN runs r USING (run_id)
                WHERE s.is_primary AND (? IS NULL OR r.study = ?)
                """,
                [study, study],
            ).df()
        if primary.empty:
            return runs
        wide = primary.pivot(index="run_id", columns="benchmark", values="value")
        wide = wide[sorted(wide.columns)]
        wide.columns.name = None
        return runs.merge(wide, how="left", left_on="run_id", right_index=True)

    def deltas(self, study: str | None = None, *, primary_only: bool = True) -> pd.DataFrame:
        """Rows of the ``deltas`` view (primary metrics only unless ``primary_only=False``)."""
        return self._query(
            """
            SELECT * FROM deltas
            WHERE (? IS NULL OR study = ?) AND (is_primary OR NOT ?)
            ORDER BY study, recipe, seed, run_id, benchmark, metric
            """,
            [study, study, primary_only],
        )

    def shift(self, study: str | None = None, *, headline_only: bool = True) -> pd.DataFrame:
        """Shift measures per run: run_id, study, recipe, seed, measure, part, value, n (only the
        ``part = 'all'`` rows unless ``headline_only=False``)."""
        return self._query(
            f"""
            SELECT r.run_id, r.study, r.recipe, r.seed, m.measure, m.part, m.value, m.n
            FROM shift_measures m JOIN runs r USING (run_id)
            WHERE (? IS NULL OR r.study = ?) AND (m.part = 'all' OR NOT ?)
            ORDER BY r.study, r.recipe <> '{BASELINE_RECIPE}', r.recipe, r.seed, r.finished_at, run_id,
                     m.measure, m.part
            """,
            [study, study, headline_only],
        )


def _times_of_an_identical_record(con: duckdb.DuckDBPyConnection, run_id: str,
                                  scores: pd.DataFrame) -> tuple[str, str] | None:
    """The (started_at, finished_at) already recorded for `run_id` when its stored scores equal
    `scores`, else None."""
    earlier = con.execute("SELECT started_at, finished_at FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if earlier is None:
        return None
    stored = con.execute("SELECT benchmark, metric, value, n FROM scores WHERE run_id = ?", [run_id]).fetchall()
    new = scores[["benchmark", "metric", "value", "n"]].itertuples(index=False, name=None)
    same = sorted(map(repr, stored)) == sorted(repr((b, m, None if v is None or v != v else float(v), int(n)))
                                                for b, m, v, n in new)
    return tuple(earlier) if same else None
