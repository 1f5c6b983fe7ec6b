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


def mirror_file(data_dir: Path | None, relative: str, what: str, *, hub_id: str | None = None,
                hub_fallback: bool = False) -> Path | None:
    """The data-mirror file `relative` of the data set `what`, or a DataError (one line) saying how to
    supply it. Without a data directory: None when the set can load from the Hub (`hub_fallback`),
    else an error asking for the mirror. `hub_id` is named as the Hub equivalent."""
    from harness.errors import DataError

    hub = f" (Hub equivalent {hub_id})" if hub_id and not hub_fallback else ""
    if data_dir is None:
        if hub_fallback:
            return None
        raise DataError(f"{what}: reads {relative} from the data mirror{hub}: pass --data-dir or set {DATA_ENV}")
    path = Path(data_dir) / relative
    if not path.is_file():
        how = (f", or unset them to load Hub id {hub_id!r} (needs network)" if hub_fallback and hub_id else hub)
        raise DataError(f"{path}: data file of {what} not found; point --data-dir or {DATA_ENV} at a mirror "
                        f"that has it{how}")
    return path


def cache_dir() -> Path:
    """Content-addressed artefact store: $FORGETBENCH_CACHE, else ~/.cache/forgetbench."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "forgetbench"
    path = Path(root).expanduser()
    if not path.is_dir():
        check_writable(path, f"cache ({CACHE_ENV})", folder=True)
        path.mkdir(parents=True, exist_ok=True)
    return path


def check_writable(path: str | Path, option: str, folder: bool = False) -> None:
    """Fail now, with one line naming `option`, when `path` (a file, or with `folder` a directory)
    cannot be written: it sits under an existing file, is the wrong kind of thing, or a probe write
    into it or its nearest existing folder fails (a real write, so it holds for root too).
    Creates nothing that stays."""
    from harness.errors import ConfigError

    path = Path(path).expanduser()
    where = f"{option} {path}"
    if path.exists():
        if folder and not path.is_dir():
            raise ConfigError(f"{where}: exists and is not a folder")
        if not folder and path.is_dir():
            raise ConfigError(f"{where}: is a folder, not a file")
    ancestor = path if path.exists() and path.is_dir() else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{where}: cannot be created, {ancestor} is a file, not a folder")
    try:
        if path.is_file():
            with open(path, "r+b"):  # opened for writing, nothing written
                pass
        else:
            fd, probe = tempfile.mkstemp(prefix=".forgetbench-probe-", dir=ancestor)
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot write there ({exc.strerror or exc})") from None


def resolve_data_dir(option: str | Path | None = None) -> Path | None:
    """The local data mirror: the --data-dir option / study setting, else $FORGETBENCH_DATA_DIR."""
    value = option or os.environ.get(DATA_ENV)
    return Path(value).expanduser().resolve() if value else None


@contextlib.contextmanager
def swap_in_folder(out: Path) -> Iterator[Path]:
    """Yield a new empty folder beside `out`; when the block succeeds it takes `out`'s place whole (an
    earlier `out` is moved aside first, restored should the rename fail, then deleted); when it fails,
    `out` is left as it was. For output folders a command writes in full (publish, export)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # as mkdir would have made it (mkdtemp makes it private)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
        try:
            os.replace(tmp, out)
        except BaseException:
            if old is not None:
                os.replace(old / out.name, out)
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
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


def ensure_text(path: Path, text: str) -> None:
    """`path` holds exactly `text`: written (atomically) when absent, or rewritten when a damaged or
    stale copy differs. For small generated files such as lm-eval task YAMLs."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)
