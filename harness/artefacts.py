"""Cached artefacts are checked before they are reused: a damaged one is moved aside and rebuilt.

Every artefact folder in the cache (mixes, checkpoints, evaluations, diagnostics, the converted seed
model) carries a manifest, `forgetbench.manifest`, written when the folder is complete and before it
is renamed into place: each file's size, modification time and sha256, plus `refs`, the leaderboard
hashes the artefact serves (its mix sha, checkpoint sha, or model sha + evaluation hash), which
`forgetbench cache prune` matches against leaderboard rows.

Reuse (`usable`) compares each file's size and modification time with the manifest and hashes again
only a file whose modification time changed, so a truncated or rewritten file is always caught while
an untouched 540 MB checkpoint costs a few `stat` calls, not a second of hashing. `forgetbench cache
verify` hashes every file. A folder written before manifests existed is checked by its structure
(JSON parses, a mix's rows match the hash in its mix.json, safetensors files are as long as their
headers say, a converted model matches its recorded hash) and then given a manifest.

A damaged artefact is logged in one line naming it and the reason, moved under `<cache>/corrupt/`
(never deleted: `cache prune` removes it), and its caller rebuilds it. The SQLite generation caches
get the same treatment from `check_sqlite` (SQLite's own `quick_check`).
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import socket
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ForgetbenchError, first_line
from harness.hashing import hash_file, hash_json, short
from harness.paths import atomic_write_text, cache_dir

log = logging.getLogger("forgetbench")

MANIFEST = "forgetbench.manifest"
QUARANTINE = "corrupt"  # folder of the cache where damaged artefacts are moved
CHECKPOINT_SUFFIXES = {".safetensors", ".bin", ".json", ".model", ".txt", ".jinja"}


# -- building ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; rename it onto `target` only if the block succeeds, with
    its manifest (harness/artefacts.py) written first unless the block wrote one.

    The temporary name carries this host and process id, so the leftovers of a killed process (which
    never become `target`) are removed by the next writer of the same artefact on this host."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_HOST}~{os.getpid()}.", dir=target.parent))
    try:
        yield tmp
        if not (tmp / MANIFEST).exists():  # a writer that recorded no references still gets one
            seal(tmp)
        if target.exists():  # another process finished the same artefact first: keep theirs
            shutil.rmtree(tmp)
        else:
            try:
                os.replace(tmp, target)
            except OSError:  # another process renamed its copy between our check and our rename
                if not target.exists():
                    raise
                shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_HOST = "".join(c for c in socket.gethostname() if c.isalnum()) or "host"


def _remove_orphans(target: Path) -> None:
    """Delete temporary siblings of `target` left by dead processes of this host."""
    prefix = f".{target.name}.{_HOST}~"
    for leftover in target.parent.glob(f"{glob.escape(prefix)}*"):
        pid = leftover.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True



@dataclass(frozen=True)
class Stage:
    """One cached stage of a run (mix, checkpoint, evaluation, diagnostics): where its artefacts live
    under the cache, what a log line calls one, and the files an intact one must hold. Each artefact's
    folder is named by a hash of everything that determines it (`key`), so equal inputs find it."""

    kind: str  # the cache folder: "mixes", "checkpoints", "evals", "diagnostics"
    what: str  # "mix", "checkpoint", "evaluation", "diagnostics"
    required: tuple[str, ...]

    def folder(self, inputs: dict[str, Any]) -> Path:
        return cache_dir() / self.kind / short(hash_json(inputs), 24)

    def reusable(self, folder: Path) -> bool:
        """An intact artefact is there (checked against its manifest; a damaged one is moved aside)."""
        return usable(folder, self.what, self.required)

    def build(self, folder: Path):
        """A context manager yielding a temporary folder that becomes `folder`, sealed, when the block
        succeeds (`atomic_dir`)."""
        return atomic_dir(folder)


MIX = Stage("mixes", "mix", ("mix.json", "mix.jsonl"))
CHECKPOINT = Stage("checkpoints", "checkpoint", ("model/config.json",))
EVALUATION = Stage("evals", "evaluation", ("results.json",))
DIAGNOSTICS = Stage("diagnostics", "diagnostics", ("measures.json",))


# -- writing ---------------------------------------------------------------------------------------

def seal(folder: Path, refs: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Write `folder`'s manifest (sizes, modification times and hashes of all its files, and `refs`);
    return the file records."""
    files = {rel: _record(folder / rel) for rel in _files(folder)}
    _write(folder, files, refs or {})
    return files


def add_refs(folder: Path, refs: dict[str, Any]) -> None:
    """Add leaderboard references to a sealed folder's manifest."""
    manifest = _load(folder)
    _write(folder, manifest["files"], {**manifest.get("refs", {}), **refs})


def refresh(folder: Path, names: Iterable[str]) -> None:
    """Re-record files of a sealed folder that were rewritten on purpose (e.g. a mix's metadata)."""
    manifest = _load(folder)
    for name in names:
        manifest["files"][name] = _record(folder / name)
    _write(folder, manifest["files"], manifest.get("refs", {}))


def refs(folder: Path) -> dict[str, Any]:
    """The leaderboard hashes a sealed folder serves ({} for an unsealed one)."""
    try:
        return dict(_load(folder).get("refs") or {})
    except (OSError, ValueError):
        return {}


def checkpoint_sha(files: dict[str, dict[str, Any]], under: str = "") -> str:
    """The checkpoint hash of `harness.models.hash_checkpoint` from a manifest's file records, for the
    checkpoint in the sub-folder `under` (no file is read again)."""
    prefix = f"{under.rstrip('/')}/" if under else ""
    return hash_json({rel[len(prefix):]: record["sha256"] for rel, record in sorted(files.items())
                      if rel.startswith(prefix) and Path(rel).suffix in CHECKPOINT_SUFFIXES})


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def _record(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": hash_file(path)}


def _write(folder: Path, files: dict[str, Any], references: dict[str, Any]) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps({"version": 1, "files": files, "refs": references},
                                                    indent=1, sort_keys=True))


def _load(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise ValueError("not a manifest")
    return data


# -- checking --------------------------------------------------------------------------------------

# Files up to this size are hashed on every reuse (results, mixes, logs: milliseconds); larger ones (model
# weights) are hashed only when their size or modification time changed, or with `full` (cache verify).
ALWAYS_HASH_BYTES = 16 * 1024 * 1024


def problem(folder: Path, required: Iterable[str] = (), full: bool = False) -> str | None:
    """Why `folder` is not a complete, intact artefact, or None. Small files are always hashed; `full`
    hashes large ones too."""
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        return f"{missing[0]} is missing"
    if not (folder / MANIFEST).is_file():
        return _legacy_problem(folder)[0]
    try:
        files = _load(folder)["files"]
    except (OSError, ValueError):
        return f"its {MANIFEST} is unreadable"
    for rel, record in sorted(files.items()):
        path = folder / rel
        try:
            stat = path.stat()
        except OSError:
            return f"{rel} is missing"
        if stat.st_size != record["size"]:
            return f"{rel} has {stat.st_size} bytes, {record['size']} recorded"
        checked = full or stat.st_size <= ALWAYS_HASH_BYTES or stat.st_mtime_ns != record["mtime_ns"]
        if checked and hash_file(path) != record["sha256"]:
            return f"{rel} differs from its recorded sha256"
    return None


def usable(folder: Path, what: str, required: Iterable[str] = ()) -> bool:
    """Whether `folder` holds an intact artefact to reuse. Absent: False. Damaged: one log line naming
    it, moved aside, False (the caller rebuilds it). Intact but unsealed (written before manifests):
    sealed now, True."""
    if not folder.exists():
        return False
    required = tuple(required)
    if (folder / MANIFEST).is_file() or any(not (folder / name).is_file() for name in required):
        reason = problem(folder, required)
        if reason is None:
            return True
    else:
        reason, files = _legacy_problem(folder)
        if reason is None:
            try:
                _write(folder, files, {})
            except OSError:  # a read-only cache: still usable, just not sealed
                pass
            return True
    quarantine(folder, what, reason)
    return False


def quarantine(path: Path, what: str, reason: str) -> Path | None:
    """Move a damaged artefact (folder or file, with a SQLite file's -wal/-shm) under <cache>/corrupt/
    and log one line naming it; None when another process moved it first."""
    root = cache_dir()
    try:
        name = str(path.relative_to(root)).replace(os.sep, "-")
    except ValueError:
        name = path.name
    dest = root / QUARANTINE / f"{name}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.move(str(path), str(dest))
    except FileNotFoundError:
        return None
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            shutil.move(str(companion), str(dest.with_name(dest.name + suffix)))
    log.warning("cached %s %s is damaged (%s): moved to %s, rebuilding it", what, path, reason, dest)
    return dest


def read_json(path: Path, what: str) -> Any | None:
    """A single-file JSON artefact, or None when absent or damaged (then moved aside)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        quarantine(path, what, f"unreadable JSON: {exc}")
        return None


_CHECKED_SQLITE: set[str] = set()


def check_sqlite(path: Path, what: str, full: bool = False) -> str | None:
    """Check a SQLite cache once per process (`quick_check`; `integrity_check` with `full`); a damaged
    file is moved aside (a fresh one is then created by its user). Returns the problem found, if any."""
    key = os.path.realpath(path)
    if (key in _CHECKED_SQLITE and not full) or not path.exists():
        return None
    reason = sqlite_problem(path, full)
    if reason is not None:
        quarantine(path, what, reason)
    _CHECKED_SQLITE.add(key)
    return reason


def sqlite_problem(path: Path, full: bool = False) -> str | None:
    try:
        db = sqlite3.connect(path, timeout=60)  # read-write: a WAL file may need its -shm created
        try:
            rows = db.execute("PRAGMA integrity_check" if full else "PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError as exc:  # locked, unopenable, read-only: the environment, not damage
        raise ForgetbenchError(f"{path}: cannot check this SQLite cache ({first_line(exc)})") from None
    except sqlite3.DatabaseError as exc:  # not a database, malformed: damage
        return f"not a readable SQLite database: {exc}"
    if rows != [("ok",)]:
        return f"SQLite check failed: {rows[0][0] if rows else 'no answer'}"
    return None


# -- folders written before manifests -------------------------------------------------------------

def _legacy_problem(folder: Path) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """(problem, file records) of an unsealed folder, from its files' structure."""
    files = {}
    for rel in _files(folder):
        path = folder / rel
        files[rel] = _record(path)
        reason = structure_problem(path)
        if reason:
            return f"{rel}: {reason}", files
    if "mix.json" in files and "mix.jsonl" in files:
        meta = json.loads((folder / "mix.json").read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("sha256") != files["mix.jsonl"]["sha256"]:
            return "mix.jsonl differs from the sha256 recorded in mix.json", files
    if "forgetbench.sha256" in files:
        recorded = (folder / "forgetbench.sha256").read_text().strip()
        if recorded != checkpoint_sha(files):
            return "the checkpoint differs from the hash recorded in forgetbench.sha256", files
    return None, files


def structure_problem(path: Path) -> str | None:
    """What is wrong with a file's structure (JSON, JSON lines, safetensors), or None."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".jsonl":
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if line.strip():
                    try:
                        json.loads(line)
                    except json.JSONDecodeError as exc:
                        return f"line {number}: malformed JSON ({exc.msg})"
        elif path.suffix == ".safetensors":
            return safetensors_problem(path)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"malformed ({exc})"
    return None


def safetensors_problem(path: Path) -> str | None:
    """A safetensors file must be exactly as long as its header says (8-byte header length, JSON
    header, tensor data): catches truncation and appended junk by reading the header only."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"truncated safetensors file ({size} bytes)"
        length = int.from_bytes(head, "little")
        if 8 + length > size:
            return f"truncated safetensors header ({size} bytes, header needs {8 + length})"
        try:
            header = json.loads(handle.read(length))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            return f"malformed safetensors header ({exc})"
    if 8 + length + end != size:
        return f"safetensors file has {size} bytes, its header describes {8 + length + end}"
    return None
