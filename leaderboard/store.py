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
                            measures against its seed model (harness/diagnostics.py), taken from
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
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from harness.errors import ForgetbenchError, first_line
from harness.results import BenchmarkResult, RunRecord

log = logging.getLogger("forgetbench")

SCHEMA_VERSION = 4
APPLICATION = "forgetbench-leaderboard"
BASELINE_RECIPE = "baseline"
DEFAULT_LOCK_TIMEOUT = 120.0

# Never let DuckDB fetch or load extensions behind our back (a SQLite file would otherwise make it
# try to download sqlite_scanner when opened).
_DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}

_RUN_COLUMNS = [
    "run_id", "study", "recipe", "recipe_params", "seed", "base_model", "base_model_sha",
    "checkpoint_sha", "mix_sha", "config_hash", "finetune_config_hash", "eval_config_hash",
    "data_hashes", "package_versions", "started_at", "finished_at", "domain", "generation_backend", "mix",
    "sweep_parameter", "sweep_value", "sweep_recipe", "extra",
]
_JSON_RUN_FIELDS = {"recipe_params", "data_hashes", "package_versions", "mix", "extra"}
_MOVED_TO_COLUMNS = ("domain", "generation_backend", "mix", "sweep")  # runs.extra keys before v4
_SCORE_COLUMNS = ["run_id", "benchmark", "metric", "value", "stderr", "n", "is_primary", "settings"]
_EXAMPLE_COLUMNS = ["run_id", "benchmark", "metric", "example_id", "value", "prediction", "target"]
_SHIFT_COLUMNS = ["run_id", "measure", "part", "value", "n"]
_TABLE_KEYS = ["run_id", "study", "recipe", "seed", "finished_at"]


# ---------------------------------------------------------------------------------------------
# Schema and migrations. MIGRATIONS[v] takes a database at version v - 1 to version v (0 = empty);
# views are recreated after every migration run so they always match the current tables.

def _migrate_to_1(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    con.execute(
        """
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,
            study VARCHAR NOT NULL,
            recipe VARCHAR NOT NULL,
            recipe_params VARCHAR NOT NULL,      -- JSON
            seed BIGINT NOT NULL,
            base_model VARCHAR NOT NULL,
            base_model_sha VARCHAR NOT NULL,
            checkpoint_sha VARCHAR NOT NULL,
            mix_sha VARCHAR,
            config_hash VARCHAR NOT NULL,
            finetune_config_hash VARCHAR,
            eval_config_hash VARCHAR NOT NULL,
            data_hashes VARCHAR NOT NULL,        -- JSON
            package_versions VARCHAR NOT NULL,   -- JSON
            started_at VARCHAR NOT NULL,         -- ISO 8601, as the RunRecord gave it
            finished_at VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            extra VARCHAR NOT NULL               -- JSON
        )
        """
    )
    con.execute(
        """
        CREATE TABLE scores (
            run_id VARCHAR NOT NULL,
            benchmark VARCHAR NOT NULL,
            metric VARCHAR NOT NULL,
            value DOUBLE,
            stderr DOUBLE,
            n BIGINT NOT NULL,
            is_primary BOOLEAN NOT NULL,
            settings VARCHAR NOT NULL,           -- JSON, the benchmark's settings
            PRIMARY KEY (run_id, benchmark, metric)
        )
        """
    )
    con.execute(
        """
        CREATE TABLE examples (
            run_id VARCHAR NOT NULL,
            benchmark VARCHAR NOT NULL,
            metric VARCHAR NOT NULL,
            example_id VARCHAR NOT NULL,
            value DOUBLE,
            prediction VARCHAR,
            target VARCHAR,
            PRIMARY KEY (run_id, benchmark, metric, example_id)
        )
        """
    )


def _forgetbench_version() -> str:
    try:
        from importlib.metadata import version

        return version("forgetbench")
    except Exception:  # running from a source tree that is not installed
        return "unknown"


def _migrate_to_2(con: duckdb.DuckDBPyConnection) -> None:
    """A history of schema upgrades, so a file says which forgetbench versions changed it, and an
    index that lets ``compare`` find one run's per-example rows without scanning the table."""
    con.execute(
        """
        CREATE TABLE migrations (
            version BIGINT PRIMARY KEY,
            applied_at TIMESTAMPTZ,              -- NULL: applied before the history existed
            forgetbench VARCHAR
        )
        """
    )
    con.execute("INSERT INTO migrations VALUES (1, NULL, NULL)")
    con.execute("CREATE INDEX examples_run ON examples (run_id)")


def _migrate_to_3(con: duckdb.DuckDBPyConnection) -> None:
    """Per-run distribution-shift measures ("why did it forget?"), beside the scores."""
    con.execute(
        """
        CREATE TABLE shift_measures (
            run_id VARCHAR NOT NULL,
            measure VARCHAR NOT NULL,            -- e.g. output_bleu4, param_l2, train_nll
            part VARCHAR NOT NULL,               -- 'all', or a layer type / mix part
            value DOUBLE,
            n BIGINT NOT NULL,                   -- probe answers, parameters or tokens it covers
            PRIMARY KEY (run_id, measure, part)
        )
        """
    )


def _migrate_to_4(con: duckdb.DuckDBPyConnection) -> None:
    """Typed columns for what runs.extra used to carry (domain, generation backend, mix summary, sweep
    point), filled from each run's extra, which keeps only the rest; `status` (always 'finished') goes."""
    for column in ("domain", "generation_backend", "mix", "sweep_parameter", "sweep_value", "sweep_recipe"):
        con.execute(f"ALTER TABLE runs ADD COLUMN {column} VARCHAR")
    for run_id, text in con.execute("SELECT run_id, extra FROM runs").fetchall():
        extra = json.loads(text or "{}") or {}
        sweep = extra.get("sweep") or {}
        mix = extra.get("mix")
        con.execute(
            "UPDATE runs SET domain = ?, generation_backend = ?, mix = ?, sweep_parameter = ?, sweep_value = ?, "
            "sweep_recipe = ?, extra = ? WHERE run_id = ?",
            [extra.get("domain"), extra.get("generation_backend"), None if mix is None else _to_json(mix),
             sweep.get("parameter"), _to_json(sweep["value"]) if sweep else None, sweep.get("recipe"),
             _to_json({k: v for k, v in extra.items() if k not in _MOVED_TO_COLUMNS}), run_id])
    con.execute("ALTER TABLE runs DROP COLUMN status")


MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {
    1: _migrate_to_1, 2: _migrate_to_2, 3: _migrate_to_3, 4: _migrate_to_4}

# Order in which baselines compete: latest finish first (parsed when it parses, else as text).
_BASELINE_ORDER = (
    "TRY_CAST(finished_at AS TIMESTAMPTZ) DESC NULLS LAST, finished_at DESC, run_id DESC"
)

# Order of runs in listings: by study, the baseline first, then recipe, seed and finish time.
_RUN_ORDER = f"study, recipe <> '{BASELINE_RECIPE}', recipe, seed, finished_at, run_id"


def _create_views(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""
        CREATE OR REPLACE VIEW deltas AS
        WITH ranked_baselines AS (
            SELECT run_id, base_model_sha, eval_config_hash,
                   row_number() OVER (PARTITION BY base_model_sha, eval_config_hash
                                      ORDER BY {_BASELINE_ORDER}) AS rank
            FROM runs
            WHERE recipe = '{BASELINE_RECIPE}'
        ),
        paired AS (
            SELECT r.run_id, r.study, r.recipe, r.seed, b.run_id AS baseline_run_id
            FROM runs r
            LEFT JOIN ranked_baselines b
              ON b.rank = 1
             AND b.base_model_sha = r.base_model_sha
             AND b.eval_config_hash = r.eval_config_hash
            WHERE r.recipe <> '{BASELINE_RECIPE}'
        )
        SELECT p.run_id, p.study, p.recipe, p.seed, s.benchmark, s.metric, s.is_primary,
               s.value, bs.value AS baseline_value, s.value - bs.value AS delta,
               p.baseline_run_id
        FROM paired p
        JOIN scores s ON s.run_id = p.run_id
        LEFT JOIN scores bs
          ON bs.run_id = p.baseline_run_id AND bs.benchmark = s.benchmark AND bs.metric = s.metric
        """
    )


# ---------------------------------------------------------------------------------------------
# Process-local serialisation: DuckDB's file lock only separates processes; within one process
# connections to the same file share one database instance, so threads are serialised here.

_PROCESS_LOCKS: dict[str, threading.RLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(path: Path) -> threading.RLock:
    key = os.path.realpath(path)
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(key, threading.RLock())


def _is_lock_conflict(error: Exception) -> bool:
    text = str(error)
    return isinstance(error, duckdb.IOException) and ("Could not set lock" in text or "Conflicting lock" in text)


def lock_holder(error: Exception) -> str:
    """Who holds a DuckDB lock, from its message ("... Conflicting lock is held in CMD (PID n) ..."):
    `PID n (command line)` where /proc tells, else the message's own words."""
    match = re.search(r"\(PID (\d+)\)", str(error))
    if not match:
        return "another process"
    pid = match.group(1)
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    if len(command) > 100:
        command = command[:99] + "…"
    return f"another process (PID {pid}" + (f": {command})" if command else ")")


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
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


class Leaderboard:
    """A forgetbench leaderboard file. Holds no connection between calls (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 read_only: bool = False):
        """``read_only=True`` (the read commands: query, leaderboard, compare, export, report) never
        writes the file: an older schema is refused with the command that migrates it, not migrated."""
        self.path = Path(path).expanduser()
        self.lock_timeout = float(lock_timeout)
        self.read_only = read_only
        self._lock = _process_lock(self.path)
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
                                      config={**_DUCKDB_CONFIG, **(config or {})})
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
                if not _is_lock_conflict(error):
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
        if _is_sqlite(self.path):  # DuckDB would reach for its sqlite extension and report that missing
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
        board._lock = _process_lock(board.path)
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
            con = duckdb.connect(str(staging), config=_DUCKDB_CONFIG)
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
                                [step, _forgetbench_version()])
            _create_views(con)
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
        """
        scores, examples = _result_frames(run, results)
        shift = _shift_frame(run)
        row = [_run_value(run, column) for column in _RUN_COLUMNS]
        with self._connect(read_only=False) as con:
            con.begin()
            try:
                for table in ("examples", "scores", "shift_measures", "runs"):
                    con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run.run_id])
                con.execute(
                    f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in _RUN_COLUMNS)})",
                    row,
                )
                _insert_frame(con, "scores", scores)
                _insert_frame(con, "examples", examples)
                _insert_frame(con, "shift_measures", shift)
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
                ORDER BY {_BASELINE_ORDER} LIMIT 1
                """,
                [BASELINE_RECIPE, base_model_sha, eval_config_hash],
            ).fetchone()
        return None if row is None else row[0]

    def runs(self, study: str | None = None) -> pd.DataFrame:
        """One row per run with every provenance column (dict fields as JSON text)."""
        return self._query(
            f"SELECT * FROM runs WHERE ? IS NULL OR study = ? ORDER BY {_RUN_ORDER}", [study, study]
        )

    def table(self, study: str | None = None) -> pd.DataFrame:
        """One row per run (run_id, study, recipe, seed, finished_at) and one column per benchmark
        holding its primary metric's value; benchmark columns sorted by name."""
        with self._connect(read_only=True) as con:
            runs = con.execute(
                f"SELECT {', '.join(_TABLE_KEYS)} FROM runs WHERE ? IS NULL OR study = ? ORDER BY {_RUN_ORDER}",
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


def _result_frames(run: RunRecord, results: list[BenchmarkResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
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
        settings = _to_json(result.settings)
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
    scores = pd.DataFrame(score_rows, columns=_SCORE_COLUMNS).astype(
        {"value": "float64", "stderr": "float64", "n": "int64", "is_primary": "bool"}
    )
    examples = pd.DataFrame(example_rows, columns=_EXAMPLE_COLUMNS).astype({"value": "float64"})
    return scores, examples


def _run_value(run: RunRecord, column: str) -> Any:
    """One runs-table cell of a record: JSON text for dict fields, the sweep point's parts."""
    if column.startswith("sweep_"):
        if run.sweep is None:
            return None
        value = getattr(run.sweep, column.removeprefix("sweep_"))
        return _to_json(value) if column == "sweep_value" else value
    value = getattr(run, column)
    return _to_json(value) if column in _JSON_RUN_FIELDS and value is not None else value


def _shift_frame(run: RunRecord) -> pd.DataFrame:
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
    return pd.DataFrame(rows, columns=_SHIFT_COLUMNS).astype({"value": "float64", "n": "int64"})


def _float(value: float | None) -> float:
    """None (and NaN, which DuckDB reads from pandas as NULL anyway) become NULL in the table."""
    return math.nan if value is None else float(value)
