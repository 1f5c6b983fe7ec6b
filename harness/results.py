"""Plain data records passed between the pipeline stages and into the leaderboard."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Score:
    """One aggregate number of one benchmark (e.g. ifeval / prompt_level_strict_acc)."""

    metric: str
    value: float
    stderr: float | None
    n: int


def proportion_score(metric: str, values: list[float]) -> Score:
    """The share of 0/1 outcomes that are 1, with the binomial standard error sqrt(p(1-p)/(n-1))
    (lm-eval's sample standard error of the mean, for 0/1 values); NaN and no error without data."""
    n = len(values)
    share = sum(values) / n if n else float("nan")
    return Score(metric, share, math.sqrt(share * (1 - share) / (n - 1)) if n > 1 else None, n)


@dataclass(frozen=True)
class ExampleResult:
    """One example's outcome under one metric, kept for paired comparisons between runs."""

    example_id: str
    metric: str
    value: float
    prediction: str = ""
    target: str = ""


@dataclass
class BenchmarkResult:
    """Everything one benchmark produced for one model: scores, per-example outcomes, settings."""

    benchmark: str
    primary_metric: str  # the metric shown in tables and used for deltas and averages
    scores: list[Score]
    examples: list[ExampleResult]
    settings: dict[str, Any] = field(default_factory=dict)  # generation settings, limits, data hashes


@dataclass(frozen=True)
class ShiftMeasure:
    """One distribution-shift number of one run: e.g. (`param_l2`, `q_proj`) or (`train_nll`, `domain`);
    `n` counts what it averages or sums over (probe answers, parameters, tokens)."""

    measure: str
    part: str
    value: float
    n: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SweepPoint:
    """Where a swept run sits in its sweep: the parameter, its value here, and the unswept recipe label."""

    parameter: str
    value: Any
    recipe: str


@dataclass
class RunRecord:
    """Provenance of one run: what produced the model that was evaluated, what it was evaluated on
    (domain, generation backend), its training mix's summary (mix.json: sizes, statistics, recipe
    provenance, category profile), its sweep point and its shift measures."""

    run_id: str
    study: str
    recipe: str  # label such as "public:alpaca"; "baseline" for the untouched seed model
    recipe_params: dict[str, Any]
    seed: int
    base_model: str
    base_model_sha: str
    checkpoint_sha: str
    mix_sha: str | None
    config_hash: str
    finetune_config_hash: str | None
    eval_config_hash: str
    data_hashes: dict[str, str]
    package_versions: dict[str, str]
    started_at: str
    finished_at: str
    domain: str
    generation_backend: str
    mix: dict[str, Any] | None = None  # None: no training (baseline, `eval`)
    sweep: SweepPoint | None = None
    shift: list[ShiftMeasure] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # `eval`'s own provenance (model spec, settings, times)


def result_to_json(result: BenchmarkResult) -> dict[str, Any]:
    return asdict(result)


def result_from_json(data: dict[str, Any]) -> BenchmarkResult:
    return BenchmarkResult(
        benchmark=data["benchmark"],
        primary_metric=data["primary_metric"],
        scores=[Score(**s) for s in data["scores"]],
        examples=[ExampleResult(**e) for e in data["examples"]],
        settings=data.get("settings", {}),
    )
