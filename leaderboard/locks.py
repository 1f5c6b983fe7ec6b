"""One writer per leaderboard file: DuckDB's lock between processes (with who holds it), a lock per
file between the threads of one process."""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import duckdb

# ---------------------------------------------------------------------------------------------
# Process-local serialisation: DuckDB's file lock only separates processes; within one process
# connections to the same file share one database instance, so threads are serialised here.

_PROCESS_LOCKS: dict[str, threading.RLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def process_lock(path: Path) -> threading.RLock:
    key = os.path.realpath(path)
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(key, threading.RLock())


def is_lock_conflict(error: Exception) -> bool:
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


def is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False
