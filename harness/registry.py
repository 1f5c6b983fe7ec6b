"""One registry for everything a package can plug in (recipes, domains, benchmarks): an entry-point
group, read once, where built-ins register exactly like third-party packages do (`Registry`): get a
plugin by name (a mistyped one gets the nearest name suggested), make one from a study entry (its
parameters validated), list and describe them."""
from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from importlib import metadata
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from harness.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """The plugins of one entry-point group.

    `accepts` says what a target must be (`expected` words it for the error); `check(name, target)`
    may refuse a registration (a ConfigError); `build(target, name, params)` makes a plugin object
    from a class and its validated parameters (None: the targets are the plugins themselves, as
    domains are)."""

    def __init__(self, group: str, kind: str, accepts: Callable[[Any], bool], expected: str,
                 build: Callable[[Any, str, Any], Any] | None = None,
                 check: Callable[[str, Any], None] | None = None):
        self.group, self.kind, self.expected = group, kind, expected
        self._accepts, self._build, self._check = accepts, build, check

    @functools.cache  # noqa: B019 - one registry object per group for the whole process
    def entries(self) -> dict[str, T]:
        """Every registered target, by entry-point name (read once per process)."""
        found = load_group(self.group, self.kind, self._accepts, self.expected)
        if self._check is not None:
            for name, target in found.items():
                self._check(name, target)
        return found

    def names(self) -> list[str]:
        return sorted(self.entries())

    def get(self, name: str) -> T:
        return lookup(self.entries(), name, self.kind, self.group)

    def params(self, name: str, raw: dict[str, Any] | None = None):
        """`name`'s parameters validated from `raw` (the "" key is the `name:value` shorthand)."""
        cls = self.get(name)
        return validate_params(cls.Params, getattr(cls, "shorthand", None), raw or {}, self.kind)

    def make(self, name: str, raw: dict[str, Any] | None = None):
        """The plugin a study entry names: `name` and its raw parameters."""
        target = self.get(name)
        if self._build is None:
            return target
        return self._build(target, name, self.params(name, raw))

    def describe(self, name: str, sections: Callable[[Any], list[str]] = lambda target: []) -> str:
        """Text for `show NAME`: where the plugin lives and its docstring, then its kind's `sections`."""
        target = self.get(name)
        owner = target if inspect.isclass(target) else type(target)
        lines = [f"{name}  ({owner.__module__}.{owner.__qualname__})", ""]
        lines += [line.rstrip() for line in inspect.cleandoc(target.__doc__ or "(no description)").splitlines()]
        return "\n".join(lines + sections(target))


def shorthand_line(name: str, target: Any) -> list[str]:
    """`Shorthand: `public:VALUE` sets `set`.` where the plugin takes one."""
    shorthand = getattr(target, "shorthand", None)
    return [f"Shorthand: `{name}:VALUE` sets `{shorthand}`."] if shorthand else []


def load_group(group: str, kind: str, accepts: Callable[[Any], bool], expected: str) -> dict[str, Any]:
    """Every object registered under `group`, by entry-point name. A name registered twice with
    different targets, a target that does not import, or one `accepts` rejects is a ConfigError
    naming the entry point (`kind` and `expected` word the message)."""
    found: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for entry in metadata.entry_points(group=group):
        where = f"entry point {entry.name!r} ({entry.value})"
        if entry.name in found and origin[entry.name] != entry.value:
            raise ConfigError(f"{where}: {kind} name already registered by {origin[entry.name]}")
        try:
            target = entry.load()
        except Exception as exc:
            raise ConfigError(f"{where}: cannot be imported ({type(exc).__name__}: {exc})") from None
        if not accepts(target):
            raise ConfigError(f"{where}: is not {expected}")
        found[entry.name], origin[entry.name] = target, entry.value
    return found


def lookup(known: dict[str, Any], name: str, kind: str, group: str) -> Any:
    """`known[name]`, or a ConfigError listing what is registered (or, when nothing is, saying that
    the package's entry points are missing: an install older than the group, or none)."""
    if not known:
        raise ConfigError(f"unknown {kind} {name!r}: nothing is registered under the entry-point group {group!r}; "
                          f"(re)install forgetbench (pip install -e .) so its entry points are recorded")
    if name not in known:
        raise ConfigError(f"unknown {kind} {name!r}{did_you_mean(name, known)}; registered: {', '.join(sorted(known))}")
    return known[name]


def did_you_mean(name: str, known) -> str:
    """`; did you mean 'reconstructed-single'?` for the registered name closest to a mistyped one, or ''."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def validate_params(params_cls: type[BaseModel], shorthand: str | None, raw: dict[str, Any], kind: str) -> Any:
    """Validate raw parameters into `params_cls`; the "" key is the `name:value` shorthand, which sets
    the `shorthand` field (a ConfigError when the plugin takes none). One line per problem, `field: reason`."""
    raw = dict(raw)
    if "" in raw:
        value = raw.pop("")
        if shorthand is None:
            raise ConfigError(f"{value!r}: this {kind} takes no `name:value` shorthand")
        raw[shorthand] = value
    try:
        return params_cls.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            [f"{'.'.join(map(str, e['loc'])) or '(params)'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        ) from None


def describe_params(params_cls: type[BaseModel]) -> list[str]:
    """`show` lines for a Params model: each field with its type, default (or `required`) and description."""
    fields = params_cls.model_fields
    if not fields:
        return ["Parameters: none."]
    lines = ["Parameters:"]
    for field_name, info in fields.items():
        kind = _type_name(info.annotation)
        default = "required" if info.is_required() else f"default {info.get_default(call_default_factory=True)!r}"
        lines.append(f"  {field_name} ({kind}, {default})" + (f": {info.description}" if info.description else ""))
    return lines


def _type_name(annotation: Any) -> str:
    if annotation in (None, type(None)):
        return "unused"
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(annotation)))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def summary(target: Any) -> str:
    """The first line of a registered class's docstring (`recipes list`, `benchmarks list`)."""
    doc = (target.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
