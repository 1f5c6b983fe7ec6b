"""Reading a study file: YAML into the schema of harness/config.py, every name checked against what
is registered.

`load_study` reports *every* problem at once, each as `FILE: FIELD: reason`: YAML errors and keys
given twice (with their lines), schema errors, unknown or mistyped recipes, benchmarks and domains
(with the nearest registered name), recipe and benchmark parameters their classes reject, settings
that moved, and sweep values that do not validate.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harness.config import MOVED_EVAL_KEYS, RecipeEntry, StudyConfig, benchmark_mapping
from harness.errors import ConfigError
from harness.hashing import hash_json
from harness.sweep import check_sweep


def benchmark_problems(benchmarks: dict[str, Any]) -> list[str]:
    """Every problem of a suite, one per line as `NAME: reason`: unregistered names, parameters the
    benchmark's Params reject, two entries naming the same benchmark."""
    from harness.benchmark import make_benchmark  # local: the registry loads entry points

    problems, labels = [], {}
    for name, params in benchmarks.items():
        if not isinstance(params, dict):
            problems.append(f"{name}: expected a mapping of parameters")
            continue
        try:
            label = make_benchmark(str(name), params).label
        except ConfigError as exc:
            problems += [f"{name}: {line}" for line in exc.lines]
            continue
        if label in labels:
            problems.append(f"{name}: the same benchmark as {labels[label]} ({label})")
        labels.setdefault(label, name)
    return problems




def _format_location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("function-before", "function-after") or str(item).startswith("function-"):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _domain_union_errors(errors: list[dict], data: dict) -> list[tuple[tuple, str]]:
    """(location, message) of each validation error, where `domain` (a name or a mapping of files)
    reports only the branch the YAML chose, located as the user wrote it."""
    chosen = "DomainFiles" if isinstance(data.get("domain"), dict) else "str"
    found = []
    for error in errors:
        loc, msg = tuple(error["loc"]), error["msg"].removeprefix("Value error, ")
        if loc[:1] == ("domain",) and len(loc) > 1 and loc[1] in ("str", "DomainFiles"):
            if loc[1] != chosen:
                continue
            if chosen == "str":
                msg = "expected a registered domain's name or a mapping {name, train, test, answer, max_new_tokens}"
            loc = loc[:1] + loc[2:]
        found.append((loc, msg))
    return found


def parse_study(data: Any, source: str) -> StudyConfig:
    """Validate a parsed YAML document; every problem becomes one line `SOURCE: FIELD: reason`."""
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: (top level): expected a mapping of study settings"])
    problems: list[str] = []
    study = None
    evaluation = data.get("eval")
    if isinstance(evaluation, dict) and MOVED_EVAL_KEYS.keys() & evaluation.keys():  # one line per moved key
        problems += [f"{source}: eval.{key}: moved to {MOVED_EVAL_KEYS[key]}" for key in evaluation if key in MOVED_EVAL_KEYS]
        data = {**data, "eval": {k: v for k, v in evaluation.items() if k not in MOVED_EVAL_KEYS}}
    suite = benchmark_mapping((data.get("eval") or {}).get("benchmarks")) if isinstance(data.get("eval"), dict) else None
    suite_problems = benchmark_problems(suite) if isinstance(suite, dict) else []
    problems += [f"{source}: eval.benchmarks.{line}" for line in suite_problems]  # one line each
    try:
        study = StudyConfig.model_validate(data)
    except ValidationError as exc:
        problems += [f"{source}: {_format_location(loc)}: {msg}" for loc, msg in _domain_union_errors(exc.errors(), data)
                     if not (suite_problems and loc == ("eval", "benchmarks"))]
    # Recipes and domain are checked against what is registered even when other fields failed,
    # so one `validate` shows every problem.
    problems += _check_recipes(data.get("recipes"), source) + _check_domain(data.get("domain"), source)
    if study is not None and not problems:  # a sweep's values are checked against the valid study
        problems += [f"{source}: {line}" for line in check_sweep(study)]
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    assert study is not None
    return study


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML would
    silently keep the last value)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice (first on line {seen[key]})", key_node.start_mark)
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """A YAML document; a syntax error or a duplicated key is a ConfigError naming the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError([f"{source}: {where}: invalid YAML ({getattr(exc, 'problem', exc)})"]) from None


def load_study(path: str | Path) -> StudyConfig:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read study file ({exc.strerror})"]) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}: line {line}: not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                           f"at offset {exc.start})"]) from None
    data = parse_yaml(text, str(path))
    study = parse_study(data, str(path))
    return study.relative_to(path.parent)


def _check_domain(name: Any, source: str) -> list[str]:
    """A domain named by a string must be registered (files of one's own are checked by preflight)."""
    from harness.domains import get_domain  # local: the registry loads entry points

    if isinstance(name, str):
        try:
            get_domain(name)
        except ConfigError as exc:
            return [f"{source}: domain: {line}" for line in exc.lines]
    return []


def _check_recipes(entries: Any, source: str) -> list[str]:
    """Recipe names must be registered and their parameters must validate against the recipe."""
    from harness.recipe import registry, resolve_params  # local: registry loads entry points

    if not isinstance(entries, list):
        return []
    problems = []
    known = registry()
    seen: dict[str, int] = {}  # identity (name + resolved parameters) -> first index
    labels: dict[str, int] = {}  # label -> first index
    for index, raw in enumerate(entries):
        where = f"{source}: recipes[{index}]"
        try:
            entry = RecipeEntry.model_validate(raw)
        except ValidationError:
            continue  # already reported by the study's own validation
        if entry.name not in known:
            from harness.registry import did_you_mean

            problems.append(f"{where}: unknown recipe {entry.name!r}{did_you_mean(entry.name, known)}; "
                            f"registered: {', '.join(sorted(known))}")
            continue
        try:
            params = resolve_params(known[entry.name], entry.params)
        except ConfigError as exc:
            problems.extend(f"{where}.params.{line}" for line in exc.lines)
            continue
        identity = hash_json({"name": entry.name, "params": params.model_dump(mode="json")})
        if identity in seen:
            problems.append(f"{where}: {entry.label} repeats recipes[{seen[identity]}] (same recipe, same "
                            f"parameters); each recipe runs once per seed")
        elif entry.label in labels:
            problems.append(f"{where}: its label {entry.label!r} is recipes[{labels[entry.label]}]'s too; give one of "
                            f"them a `label:` of its own")
        elif entry.label in RESERVED_LABELS:
            problems.append(f"{where}: label {entry.label!r} is reserved (the seed model's runs go by it)")
        seen.setdefault(identity, index)
        labels.setdefault(entry.label, index)
    return problems


RESERVED_LABELS = ("baseline", "eval")  # what the seed model's and `forgetbench eval`'s runs are recorded as
