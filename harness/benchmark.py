"""The benchmark interface and its registry.

A benchmark scores one model. It is a class with a docstring, a pydantic `Params` model (typed,
defaulted, validated settings: every benchmark takes `limit` and `max_new_tokens`, and its own, such
as GPQA's `subset` or AlpacaEval's `judge_model`), a `group` (`general`, `side` or `domain`: where
views show it and whether it can enter the forgetting average), and four methods:

- `check_data(ctx)`: fail before any model work, one line naming the missing file;
- `fingerprint(ctx)`: the identity of its data and prompts (file hashes, task YAML hashes), part of
  its cache key;
- `scoring_code()`: versions of the code that scores it (e.g. lm-eval's), part of its cache key;
- `evaluate(ctx) -> BenchmarkResult`.

Each benchmark's result is cached on its own (harness/evaluation/suite.py), under the model's hash,
the benchmark's name, its resolved parameters, its fingerprint, the subset seed, the generation
backend and its scoring code: adding a benchmark to a study evaluates only that benchmark.

Benchmarks register through the entry-point group `forgetbench.benchmarks`, built-ins exactly like
third-party packages:

    [project.entry-points."forgetbench.benchmarks"]
    my-benchmark = "my_package.my_module:MyBenchmark"

A benchmark with a `shorthand` parameter is named `name:value` in a study or on the command line,
e.g. `lm_eval:hellaswag` (the `lm_eval` benchmark, `task: hellaswag`), and its results are recorded
under that label.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import ConfigError
from harness.registry import Registry, describe_params, shorthand_line, validate_params

if TYPE_CHECKING:
    from harness.domains import Domain
    from harness.generation import GenerationBackend
    from harness.models import ResolvedModel
    from harness.results import BenchmarkResult

ENTRY_POINT_GROUP = "forgetbench.benchmarks"
SCORING_VERSION = 1  # the harness's own scoring code (result conversion, subsets): bump to invalidate cached results
Group = Literal["general", "side", "domain"]


class BenchmarkParams(BaseModel):
    """Base for a benchmark's parameters: unknown keys are errors, values are immutable. A subclass
    sets its own default budget by redeclaring `max_new_tokens`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int | None = Field(None, gt=0, description="examples evaluated (a seeded subset, the same for every "
                                                       "model); all if unset")
    max_new_tokens: int | None = Field(None, gt=0, description="generation budget; the benchmark's default if unset")


@dataclass(frozen=True)
class LeaderboardNorm:
    """How a general benchmark becomes a 0-100 score of its suite's average: the mean of `metrics`,
    then (raw - random_baseline) / (1 - random_baseline) x 100, clipped at 0 where `clip`.

    `suite` names the average it enters: `v2`, the Open LLM Leaderboard v2's (seed 000 Table 1: MMLU-Pro,
    GPQA, IFEval, MATH-L5; clipped as there), or `small`, the small-model suite (ARC, HellaSwag, PIQA,
    WinoGrande, BoolQ, MMLU; not clipped: a small model sits near chance on some, and a clip would hide a
    loss below chance)."""

    metrics: tuple[str, ...]
    random_baseline: float
    suite: Literal["v2", "small"] = "v2"
    clip: bool = True


@dataclass
class BenchmarkContext:
    """What a benchmark gets to work with. `model` is None while data are only checked or
    fingerprinted (before any model work). `generator()` and `lm()` are made on first call and shared
    by every benchmark of the same model."""

    model: ResolvedModel | None
    domain: Domain  # the study's domain task (the `domain` benchmark scores it)
    data_dir: Path | None  # local mirror, or None for the Hugging Face Hub
    subset_seed: int  # seed of every benchmark's example subset (paired runs)
    batch_size: int | None = None  # cap on generation batches; None: memory decides
    backend_name: str = "transformers"  # the study's generation backend
    include_path: Path | None = None  # extra lm-eval task folder (`--include-path`, `eval.include_path`)
    base_model: str | None = None  # the study's seed model spec (None outside a study or `eval`)
    lm_factory: Callable[[Any], Any] | None = None  # generator -> lm-eval LM (the evaluation layer supplies it)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("forgetbench.benchmark"))
    _generator: Any = field(default=None, repr=False)
    _lm: Any = field(default=None, repr=False)

    def _require_model(self, what: str) -> ResolvedModel:
        if self.model is None:
            raise RuntimeError(f"{what}: no model in this context (data checks and fingerprints run without one)")
        return self.model

    def generator(self) -> GenerationBackend:
        """The model's harness generation backend (cached, batched), made once."""
        if self._generator is None:
            from harness.generation import make_backend

            self._generator = make_backend(self.backend_name, self._require_model("generator()"),
                                           batch_size=self.batch_size)
        return self._generator

    def lm(self) -> Any:
        """The model as an lm-eval LM (`lm_factory` over the generator: lm-eval's `forgetbench` model, the
        same load and cache), made once and shared by every lm-eval benchmark of this model."""
        if self._lm is None:
            if self.lm_factory is None:
                raise RuntimeError("lm(): this context was made without an lm-eval model factory")
            self._lm = self.lm_factory(self.generator())
        return self._lm


class Benchmark:
    """Base class of all benchmarks. Subclasses write a docstring (shown by `benchmarks show`),
    declare `Params` and `group`, may name a `shorthand` parameter (set by `name:value`), and
    implement `check_data`, `fingerprint` and `evaluate`."""

    Params: ClassVar[type[BenchmarkParams]] = BenchmarkParams
    shorthand: ClassVar[str | None] = None
    group: ClassVar[Group] = "general"
    leaderboard: ClassVar[LeaderboardNorm | None] = None  # set: part of the paper view's leaderboard average
    column_order: ClassVar[int] = 100  # position within its group in tables (ties: by name)
    data_sources: ClassVar[tuple[str, ...]] = ()  # where its data come from, for `benchmarks show`

    def __init__(self, name: str, params: BenchmarkParams):
        self.name = name
        self.params = params

    @property
    def label(self) -> str:
        """The name its results are recorded under: `name`, or `name:value` when the shorthand is set."""
        value = getattr(self.params, self.shorthand, None) if self.shorthand else None
        return f"{self.name}:{value}" if value is not None else self.name

    def check_data(self, ctx: BenchmarkContext) -> None:
        """Raise a one-line DataError naming what is missing. Default: the fingerprint's own checks."""
        self.fingerprint(ctx)

    def fingerprint(self, ctx: BenchmarkContext) -> dict[str, Any]:
        """Identity of the data and prompts the scores depend on (e.g. file hashes). Default: nothing."""
        return {}

    def scoring_code(self) -> dict[str, Any]:
        """Versions of the code that scores this benchmark. Default: the harness's scoring version."""
        return {"harness_scoring": SCORING_VERSION}

    def evaluate(self, ctx: BenchmarkContext) -> BenchmarkResult:
        raise NotImplementedError

    @classmethod
    def departure(cls, settings: dict[str, Any]) -> str | None:
        """How a recorded score's setup departs from its reference setup (the paper view's `lb_notes`),
        read from its settings; None when it does not. Default: None."""
        return None


BENCHMARKS: Registry[type[Benchmark]] = Registry(
    ENTRY_POINT_GROUP, "benchmark", lambda cls: isinstance(cls, type) and issubclass(cls, Benchmark),
    "a subclass of harness.benchmark.Benchmark", build=lambda cls, name, params: cls(name, params))


def registry() -> dict[str, type[Benchmark]]:
    """All benchmarks registered under the `forgetbench.benchmarks` entry-point group, by name."""
    return BENCHMARKS.entries()


def get_benchmark(name: str) -> type[Benchmark]:
    return BENCHMARKS.get(name)


def benchmark_class(label: str) -> type[Benchmark] | None:
    """The registered class behind a recorded benchmark label (`gpqa`, `lm_eval:hellaswag`), or None
    for one not registered here (e.g. rows of a plugin no longer installed)."""
    try:
        known = registry()
    except ConfigError:
        return None
    return known.get(label.partition(":")[0])


def averaged(cls: type[Benchmark] | None) -> bool:
    """Whether a benchmark enters the leaderboard average: a general one with a leaderboard normalisation."""
    return cls is not None and cls.group == "general" and cls.leaderboard is not None


def column_key(label: str) -> tuple[int, int, str]:
    """Where a benchmark sits in tables and suites: averaged general benchmarks, side, the others (not
    averaged, or unknown to the registry), the domain group; within each by `column_order`, then name."""
    cls = benchmark_class(label)
    if averaged(cls):
        return (0, cls.column_order, label)
    if cls is not None and cls.group in ("side", "domain"):
        return ({"side": 1, "domain": 3}[cls.group], cls.column_order, label)
    return (2, 0, label)


def resolve_params(cls: type[Benchmark], raw: dict[str, Any]) -> BenchmarkParams:
    """Validate raw parameters (the "" key is the `name:value` shorthand) into the benchmark's Params."""
    return validate_params(cls.Params, cls.shorthand, raw, "benchmark")


def split_label(label: str) -> tuple[str, dict[str, Any]]:
    """`lm_eval:hellaswag` -> ("lm_eval", {"": "hellaswag"}); `gpqa` -> ("gpqa", {})."""
    name, _, argument = label.partition(":")
    return name, ({"": argument} if argument else {})


def make_benchmark(label: str, raw: dict[str, Any] | None = None) -> Benchmark:
    """The benchmark a study names: `label` (`name` or `name:value`) and its raw parameters."""
    name, shorthand = split_label(label)
    return BENCHMARKS.make(name, {**shorthand, **(raw or {})})


def describe(name: str) -> str:
    """Text for `forgetbench benchmarks show NAME`: docstring, group, shorthand, data, each parameter."""
    suite = {"v2": "the Open LLM Leaderboard v2 average, avg", "small": "the small-model suite average, small_avg"}

    def sections(cls: type[Benchmark]) -> list[str]:
        lines = ["", f"Group: {cls.group}" + (f" (in {suite[cls.leaderboard.suite]})" if cls.leaderboard else "")]
        if cls.leaderboard:
            lines.append(f"Leaderboard score: mean of {', '.join(cls.leaderboard.metrics)}, random baseline "
                         f"{cls.leaderboard.random_baseline:g}" + ("" if cls.leaderboard.clip else ", not clipped at 0"))
        lines += shorthand_line(name, cls)
        if cls.data_sources:
            lines.append("Data: " + "; ".join(cls.data_sources))
        return lines + ["", *describe_params(cls.Params)]

    return BENCHMARKS.describe(name, sections)
