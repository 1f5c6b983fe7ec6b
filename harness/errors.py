"""User-facing errors: each carries one line per problem, naming the file, field or option."""
from __future__ import annotations


class ForgetbenchError(Exception):
    """An error the CLI prints as one line (or one line per problem) and exits non-zero on."""

    def __init__(self, lines: str | list[str]):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


class ConfigError(ForgetbenchError):
    """A study file, option or recipe parameter is invalid."""


class DataError(ForgetbenchError):
    """A data file is missing or malformed, or a Hub data set could not be loaded."""


class ModelError(ForgetbenchError):
    """A model spec cannot be resolved or loaded."""


def first_line(error: BaseException, named: bool = False) -> str:
    """The first line of an error's message, for a one-line report (the error type's name when the
    message is empty); `named` puts the type's name in front (`OSError: disk full`)."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    if named:
        return f"{type(error).__name__}: {line}" if line else type(error).__name__
    return line or type(error).__name__
