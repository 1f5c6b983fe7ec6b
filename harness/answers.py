"""How an answer is read: the extractors a domain's `answer:` names. A domain's reference answer and a
model's answer go through the same extractor, and the two are compared as strings.

Bundled: `letter` (A-E), `number` (the final number, canonical form), `call` (a function call, spaces
normalised), `exact` (the whole text); `regex:<pattern>` (the first match's first group, or the whole
match); `module:function` (your own `str -> str | None`; a standard-library or builtin callable is
refused, and a non-string answer is an error).
"""
from __future__ import annotations

import functools
import importlib
import re
import sys
import types
from collections.abc import Callable

from harness.errors import ConfigError, DataError

Extractor = Callable[[str], "str | None"]


def extract_letter(text: str) -> str | None:
    for pattern in (r"answer is\s*\(?([A-E])\b", r"^\s*\(?([A-E])[\).:\s]", r"\b([A-E])\b"):
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    return None


def extract_number(text: str) -> str | None:
    number = r"(-?\$?\d[\d,]*(?:\.\d+)?)"
    for pattern in (rf"####\s*{number}", rf"answer is\s*:?\s*{number}"):
        match = re.search(pattern, text)
        if match:
            return _canonical_number(match.group(1))
    numbers = re.findall(number, text)
    return _canonical_number(numbers[-1]) if numbers else None


def _canonical_number(text: str) -> str:
    value = float(text.replace(",", "").replace("$", ""))
    return str(int(value)) if value.is_integer() else str(value)


def extract_call(text: str) -> str | None:
    """A function call compared modulo whitespace and code fences."""
    text = re.sub(r"```\w*", "", text).strip().strip("`")
    return re.sub(r"\s+", "", text) or None


def extract_exact(text: str) -> str | None:
    """The whole answer, compared modulo surrounding whitespace."""
    return text.strip() or None


NAMED_EXTRACTORS: dict[str, Extractor] = {"letter": extract_letter, "number": extract_number, "exact": extract_exact,
                                          "call": extract_call}
ANSWER_CHOICES = f"{' | '.join(NAMED_EXTRACTORS)} | regex:<pattern> | module:function"


def answer_extractor(spec: str) -> Extractor:
    """The extractor an `answer:` setting names: a bundled one, `regex:<pattern>` (the first match's
    first group, or the whole match without groups) or `module:function` (imported). A ConfigError
    says what is wrong with the spec."""
    if spec in NAMED_EXTRACTORS:
        return NAMED_EXTRACTORS[spec]
    kind, _, rest = spec.partition(":")
    if kind == "regex" and rest:
        try:
            pattern = re.compile(rest)
        except re.error as exc:
            raise ConfigError(f"regex {rest!r} does not compile ({exc})") from None
        return functools.partial(_regex_answer, pattern)
    if kind and rest and all(part.isidentifier() for part in (*kind.split("."), rest)):
        if kind.split(".")[0] in sys.stdlib_module_names or kind == "builtins":
            raise ConfigError(f"extractor {spec!r} is a standard-library callable, not an answer extractor; name a "
                              f"`str -> str | None` function of your own module")
        try:
            function = getattr(importlib.import_module(kind), rest)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot load extractor {spec!r} ({type(exc).__name__}: {exc})") from None
        if not isinstance(function, types.FunctionType):
            raise ConfigError(f"extractor {spec!r} is not a Python function (a `def` taking the answer text)")
        return functools.partial(_user_answer, spec, function)
    raise ConfigError(f"unknown extractor {spec!r}; choose {ANSWER_CHOICES}")


def _user_answer(spec: str, function: Callable, text: str) -> str | None:
    """A `module:function` extractor's answer, which must be a string or None."""
    answer = function(text)
    if answer is not None and not isinstance(answer, str):
        raise DataError(f"extractor {spec!r} returned {type(answer).__name__} {str(answer)[:40]!r}; an answer "
                        f"extractor returns a string, or None where it reads no answer")
    return answer


def is_user_code(extract: Extractor) -> bool:
    """Whether an extractor is a `module:function` of the user's (validate says when it runs one)."""
    return isinstance(extract, functools.partial) and extract.func is _user_answer


def _regex_answer(pattern: re.Pattern, text: str) -> str | None:
    match = pattern.search(text)
    if match is None:
        return None
    return (match.group(1) if pattern.groups else match.group(0)).strip() or None
