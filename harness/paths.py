"""Where things live (cache, data mirror) and how files are written without ever leaving half a file."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

CACHE_ENV = "FORGETBENCH_CACHE"
DATA_ENV = "FORGETBENCH_DATA_DIR"


def cache_dir() -> Path:
    """Content-addressed artefact store: $FORGETBENCH_CACHE, else ~/.cache/forgetbench."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "forgetbench"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(option: str | Path | None = None) -> Path | None:
    """The local data mirror: the --data-dir option / study setting, else $FORGETBENCH_DATA_DIR."""
    value = option or os.environ.get(DATA_ENV)
    return Path(value).expanduser().resolve() if value else None


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; rename it onto `target` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():  # another process finished the same artefact first: keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
