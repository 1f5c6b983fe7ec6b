"""The persistent generation cache: every output and log-likelihood of every backend, keyed by
(backend, model hash, prompt, sampling settings, occurrence index)."""
from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from harness.artefacts import check_sqlite
from harness.errors import ForgetbenchError
from harness.generation.sampling import Sampling
from harness.hashing import hash_json
from harness.paths import cache_dir


class GenerationCache:
    """A SQLite key-value store of generations; safe for several processes at once (Ray workers on
    one machine included): WAL journal, a 60 s busy timeout, one short transaction per batch, and
    every connection closed after use. A killed writer leaves the last committed batch, never a
    partial one. WAL needs a local file system: on a cluster, give each node its own cache."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "generations.sqlite"
        check_sqlite(self.path, "generation cache")  # a damaged file is moved aside; a fresh one starts
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file
            db.execute("CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, output TEXT NOT NULL)")

    @contextlib.contextmanager
    def _connect(self):
        try:
            db = sqlite3.connect(self.path, timeout=60)
        except sqlite3.Error as exc:
            raise ForgetbenchError(f"generation cache {self.path}: cannot open ({exc})") from None
        try:
            with db:  # commit on success, roll back on error
                yield db
        except sqlite3.DatabaseError as exc:
            hint = "" if isinstance(exc, sqlite3.OperationalError) else \
                " (`forgetbench cache verify --fix` moves a damaged file aside)"
            raise ForgetbenchError(f"generation cache {self.path}: {exc}{hint}") from None
        finally:
            db.close()

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                found.update(db.execute(f"SELECT key, output FROM generations WHERE key IN ({marks})", chunk))
        return found

    def complete(self, keys: Sequence[str], produce: Callable[[list[int]], Iterator[tuple[list[int], list[str]]]]
                 ) -> list[str]:
        """The outputs of `keys`: cached ones read, the missing ones made by `produce(missing positions)`,
        which yields (positions, outputs) part by part; each part is saved as it arrives, so an
        interrupted request keeps what it finished. Every backend's cache loop."""
        found = self.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        if missing:
            for positions, outputs in produce(missing):
                fresh = {keys[i]: output for i, output in zip(positions, outputs)}
                self.put_many(fresh)
                found.update(fresh)
        return [found[key] for key in keys]

    def put_many(self, items: dict[str, str]) -> None:
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO generations VALUES (?, ?)", items.items())


def occurrence_indices(texts: Sequence[str]) -> list[int]:
    """For each text, how many times the same text came before it in this request (0, 1, 2, ...)."""
    seen: Counter[str] = Counter()
    indices = []
    for text in texts:
        indices.append(seen[text])
        seen[text] += 1
    return indices


def cache_keys(identity: list, texts: Sequence[str], sampling: Sampling) -> list[str]:
    """One generation-cache key per text under a generator's identity; the k-th repeat of the same
    text in one request gets its own key (occurrence index k), so repeated sampling stays distinct."""
    settings = sampling.key()
    return [hash_json([*identity, text, settings, k]) for text, k in zip(texts, occurrence_indices(texts))]
