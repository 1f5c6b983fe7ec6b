"""The straight line from a study config to leaderboard rows.

    plan:  [seed-model baseline] + recipes x seeds
    run:   build mix -> fine-tune -> evaluate -> record (one transaction per run)

Every step is cached by the hashes of its inputs (mixes, checkpoints, evaluations), so a rerun
skips finished work and a new recipe costs only its own.
"""
from __future__ import annotations

import gc
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from harness import artefacts
from harness.config import RecipeEntry, StudyConfig
from harness.data import source_hash
from harness.domains import Domain, check_domain_data, resolve_domain
from harness.errors import ConfigError, DataError, ForgetbenchError
from harness.evaluation.suite import check_eval_data, eval_config_hash, evaluate_model
from harness.hashing import hash_json
from harness.mixing import Mix, build_mix
from harness.models import ResolvedModel, hash_checkpoint, resolve_model
from harness.paths import resolve_data_dir
from harness.provenance import now, run_record
from harness.recipe import make_recipe
from harness.results import BenchmarkResult, RunRecord, ShiftMeasure, SweepPoint
from harness.sweep import Point, check_sweep, entry_at, point_label, study_at
from harness.sweep import points as sweep_points

log = logging.getLogger("forgetbench")


@dataclass(frozen=True)
class PlannedRun:
    recipe: RecipeEntry | None  # None: the untouched seed model (baseline)
    seed: int
    sweep: Point | None = None  # (parameter, value) of a sweep point; None outside a sweep

    @property
    def label(self) -> str:
        """`none`, `public:alpaca`, `baseline`; a sweep point adds `@parameter=value`."""
        label = self.recipe.label if self.recipe else "baseline"
        return f"{label}@{point_label(*self.sweep)}" if self.sweep else label

    def study(self, study: StudyConfig) -> StudyConfig:
        """The study's settings as this run uses them (a swept mix or fine-tuning value applied)."""
        return study_at(study, self.sweep)

    def entry(self) -> RecipeEntry | None:
        """The recipe entry as this run builds it (a swept recipe parameter applied)."""
        return None if self.recipe is None else entry_at(self.recipe, self.sweep)


def plan(study: StudyConfig) -> list[PlannedRun]:
    """[baseline] + recipes x seeds, each recipe once per sweep value; the baseline is evaluated once."""
    problems = check_sweep(study)
    if problems:
        raise ConfigError(problems)
    return [PlannedRun(None, study.seeds[0])] + [
        PlannedRun(entry, seed, point) for seed in study.seeds for entry in study.recipes
        for point in sweep_points(study, entry)
    ]


def preflight(study: StudyConfig, data_dir: Path | None) -> list[str]:
    """Every data problem of a study, found before any work starts (one line each)."""
    domain = resolve_domain(study.domain)
    problems = check_domain_data(domain, data_dir)  # every bad line of the domain's files
    checks = [] if problems else [lambda: check_eval_data(study.eval, domain, data_dir, study.generation_backend,
                                                              study.base_model)]
    if study.diagnostics.enabled:
        from harness.shift import probe_prompts

        checks.append(lambda: probe_prompts(study.diagnostics, data_dir))
    for entry in study.recipes:
        checks.append(lambda entry=entry: make_recipe(entry).fingerprint(data_dir))
    if not problems:
        checks.append(lambda: _check_domain_rows(study, domain, data_dir))
    checks.append(lambda: _check_model(study))
    for check in checks:
        try:
            check()
        except ForgetbenchError as exc:
            problems.extend(line for line in exc.lines if line not in problems)
    if not problems:  # rows that training would drop: the model's tokenizer over the rows each mix draws
        from harness.row_lengths import long_row_problems

        lengths, why_not = row_lengths(study, data_dir)
        if why_not:
            log.warning("domain row lengths not checked against finetune.max_seq_length: %s", why_not)
        problems += long_row_problems(lengths)
    return problems


def row_lengths(study: StudyConfig, data_dir: Path | None) -> tuple[list, str | None]:
    """How each planned recipe's domain rows fit its `max_seq_length` (harness.row_lengths.MixLengths),
    or [] and why they could not be checked (a Hub model whose tokenizer is not downloaded yet:
    training checks every row again)."""
    from harness.errors import ModelError
    from harness.row_lengths import domain_row_lengths

    variants = [(study_at(study, point), entry_at(entry, point),
                 f"{entry.label}@{point_label(*point)}" if point else entry.label)
                for entry in study.recipes for point in sweep_points(study, entry)]
    try:
        return domain_row_lengths(variants, study.seeds, resolve_domain(study.domain), data_dir, study.base_model), None
    except ModelError as exc:
        return [], exc.lines[0]


def _variants(study: StudyConfig) -> list[tuple[StudyConfig, RecipeEntry]]:
    """(settings, recipe entry) of every planned fine-tuning run, sweep points applied."""
    return [(study_at(study, point), entry_at(entry, point)) for entry in study.recipes
            for point in sweep_points(study, entry)]


def _check_domain_rows(study: StudyConfig, domain: Domain, data_dir: Path | None) -> None:
    """The domain has training rows, and as many as every planned mix draws."""
    from harness.data import locate
    from harness.mixing import split_sizes

    rows = len(domain.train_rows(data_dir))
    path = locate(domain.train, data_dir)
    where = str(path) if path is not None else domain.train.describe()
    if rows == 0:
        raise DataError(f"{where}: domain {domain.name!r} has no training rows")
    from harness.recipe import DomainOnlyRecipe

    for settings, entry in _variants(study):
        recipe = make_recipe(entry)
        n_domain, n_rehearsal = split_sizes(settings.mix)
        if n_rehearsal == 0 and not isinstance(recipe, DomainOnlyRecipe):
            raise ConfigError(f"mix.size: {settings.mix.size} rows at domain_share {settings.mix.domain_share} leave no "
                              f"rehearsal row for recipe {entry.label} ({n_domain} domain rows): it would train "
                              f"exactly as `none`; raise mix.size or lower mix.domain_share")
        needed = recipe.domain_rows_needed(n_domain, n_rehearsal)
        if needed > rows:
            raise ConfigError(f"mix.size: {settings.mix.size} rows at domain_share {settings.mix.domain_share} take "
                              f"{needed} domain rows for recipe {entry.label}, but {where} has {rows} training rows")


def _check_model(study: StudyConfig) -> None:
    """The base model resolves (read from its config only), and every LoRA target names a module of it."""
    from harness.models import check_lora_targets, model_config

    config = model_config(study.base_model)
    seen = []
    for settings, _ in _variants(study):
        job = settings.finetune
        if job.method == "lora" and job.lora.target_modules not in seen:
            seen.append(job.lora.target_modules)
            check_lora_targets(study.base_model, list(job.lora.target_modules), config)


class RunSink(Protocol):
    """Where a study's runs are recorded: leaderboard.store.Leaderboard (passed in by the caller, so the
    runner stays below the leaderboard package)."""

    def find_baseline(self, base_model_sha: str, eval_config_hash: str) -> str | None: ...

    def record(self, run: RunRecord, results: list[BenchmarkResult]) -> None: ...


def run_study(study: StudyConfig, leaderboard: RunSink, data_dir: Path | None = None, executor=None) -> list[str]:
    """Run every planned run (the baseline only when no matching one is on `leaderboard`) on the
    study's executor (`executor:` block, or the one given); record each in plan order from this
    process, the leaderboard's only writer. Returns the run ids recorded or reused, in plan order.

    A run that fails on a Ray worker does not stop the others: they are recorded, then the study fails
    naming every failed run. The local executor stops at the first failure."""
    from harness.executors import RunFailed, make_executor

    data_dir = resolve_data_dir(data_dir or study.data_dir)
    problems = preflight(study, data_dir)
    if problems:
        raise ForgetbenchError(problems)
    executor = executor or make_executor(study.executor)
    domain = resolve_domain(study.domain)
    base = resolve_model(study.base_model)
    eval_hash = eval_config_hash(study.eval, domain, data_dir, study.generation_backend, study.base_model)
    context = _RunContext(study, domain, data_dir, base, eval_hash)
    runs = plan(study)
    run_ids: list[str | None] = [None] * len(runs)
    existing = leaderboard.find_baseline(base.sha, eval_hash)
    for number, planned in enumerate(runs):
        if planned.recipe is None and existing:
            log.info("[%d/%d] baseline already on the leaderboard as %s", number + 1, len(runs), existing)
            run_ids[number] = existing
    todo = [number for number, planned in enumerate(runs) if run_ids[number] is None]
    log.info("%d of %d runs to execute on the %s executor", len(todo), len(runs), executor.name)
    failures = []
    for position, outcome in executor.map(RunJob(context, runs), todo):
        number = todo[position]
        planned = runs[number]
        if isinstance(outcome, RunFailed):
            log.error("[%d/%d] %s (seed %d) failed: %s", number + 1, len(runs), planned.label, planned.seed, outcome.line)
            failures.append(f"run {planned.label} (seed {planned.seed}): {outcome.line}")
            continue
        record, results = outcome
        leaderboard.record(record, results)
        log.info("[%d/%d] recorded %s: %s", number + 1, len(runs), record.run_id, _summary(results))
        run_ids[number] = record.run_id
    if failures:
        raise ForgetbenchError(failures)
    return [run_id for run_id in run_ids if run_id is not None]


@dataclass(frozen=True)
class RunJob:
    """One planned run's work, as a picklable callable that an executor can ship to a worker."""

    context: _RunContext
    runs: list[PlannedRun]

    def __call__(self, number: int) -> tuple[RunRecord, list[BenchmarkResult]]:
        planned = self.runs[number]
        log.info("[%d/%d] %s (seed %d)", number + 1, len(self.runs), planned.label, planned.seed)
        return self.context.run(planned)


@dataclass
class _RunContext:
    study: StudyConfig
    domain: Domain
    data_dir: Path | None
    base: ResolvedModel
    eval_hash: str

    def run(self, planned: PlannedRun) -> tuple[RunRecord, list[BenchmarkResult]]:
        """mix -> fine-tune -> evaluate -> shift measures -> the run's record, with the settings of its
        sweep point (so that its artefacts are keyed by them)."""
        return replace(self, study=planned.study(self.study))._run(planned)

    def _run(self, planned: PlannedRun) -> tuple[RunRecord, list[BenchmarkResult]]:
        started = now()
        model = self.base
        mix = self.mix(planned)
        training = None
        if mix is not None:
            model, training = self._finetune(mix, planned.seed)
        results = evaluate_model(model, self.study.eval, self.domain, self.data_dir, self.study.generation_backend,
                                 self.study.base_model)
        gc.collect()
        shift = self._shift_measures(model, mix)
        return self._record(planned, model, mix, started, shift, training), results

    def mix(self, planned: PlannedRun) -> Mix | None:
        """The run's training mix (None for the baseline): a function of the recipe entry, the seed,
        the mix settings, the domain data and the seed model only, never of the study's other recipes."""
        entry = planned.entry()
        if entry is None:
            return None
        return build_mix(entry, planned.seed, self.study.mix, self.domain, self.data_dir, self.base,
                         backend=self._seed_backend)

    def _shift_measures(self, model: ResolvedModel, mix: Mix | None) -> list[ShiftMeasure]:
        """The run's shift measures against the seed model (cached), or [] with diagnostics off."""
        if not self.study.diagnostics.enabled:
            return []
        from harness.shift import measure_run

        measures = measure_run(self.base, model, mix, self.study.diagnostics, data_dir=self.data_dir,
                               backend_name=self.study.generation_backend, batch_size=self.study.eval.batch_size,
                               max_seq_length=self.study.finetune.max_seq_length)
        gc.collect()
        return measures

    def _seed_backend(self):
        from harness.generation import make_backend

        return make_backend(self.study.generation_backend, self.base, batch_size=self.study.eval.batch_size)

    def _finetune(self, mix: Mix, seed: int) -> tuple[ResolvedModel, dict]:
        """The run's checkpoint (cached) and what training made of the mix (rows trained, dropped,
        truncated, steps: the checkpoint's train_log.json)."""
        from harness.finetune import finetune

        job = self.study.finetune
        target = artefacts.CHECKPOINT.folder({"base": self.base.sha, "mix": mix.sha, "job": job.model_dump(mode="json"),
                                              "seed": seed})
        if artefacts.CHECKPOINT.reusable(target):
            log.info("fine-tune: reusing checkpoint %s", target)
            sha = artefacts.refs(target).get("checkpoint_sha")
            if sha is None:  # sealed before references were recorded
                sha = hash_checkpoint(target / "model")
                artefacts.add_refs(target, {"checkpoint_sha": sha})
            model = ResolvedModel(spec=f"checkpoint:{target / 'model'}", path=target / "model", sha=sha)
        else:
            log.info("fine-tune (%s) on %d rows -> %s", job.method, mix.meta.get("rows", mix.meta["size"]), target)
            model = finetune(self.base, mix.path, job, seed, target)
        return model, training_summary(target / "train_log.json")

    def _record(self, planned: PlannedRun, model: ResolvedModel, mix: Mix | None, started: str,
                shift: list[ShiftMeasure], training: dict | None = None) -> RunRecord:
        """The run's provenance, sweep point and shift measures (the leaderboard stores the measures in
        their own table, in the same transaction as the run)."""
        study = self.study
        finetune_hash = hash_json(study.finetune.model_dump(mode="json")) if mix else None
        # The run's own inputs, not the whole study's hash: adding a recipe to a study must not
        # rename the runs already on the leaderboard (re-running them replaces their rows in place).
        identity = {"study": study.name, "recipe": planned.label, "params": _resolved_params(planned.entry()),
                    "seed": planned.seed, "mix": mix.sha if mix else None, "finetune": finetune_hash,
                    "model": model.sha, "eval": self.eval_hash}
        data_hashes = {"domain_train": source_hash(self.domain.train, self.data_dir),
                       "domain_test": source_hash(self.domain.test, self.data_dir)}
        if mix is not None:
            data_hashes["mix"] = mix.sha
            data_hashes.update({f"recipe.{k}": v for k, v in mix.meta["provenance"].items() if k.endswith("sha256")})
        return run_record(
            identity, study=study.name, recipe=planned.label, seed=planned.seed,
            recipe_params=_resolved_params(planned.entry()),
            base_model=study.base_model,
            base_model_sha=self.base.sha,
            checkpoint_sha=model.sha,
            mix_sha=mix.sha if mix else None,
            config_hash=study.config_hash(),
            finetune_config_hash=finetune_hash,
            eval_config_hash=self.eval_hash,
            data_hashes=data_hashes,
            started_at=started,
            domain=self.domain.name,
            generation_backend=study.generation_backend,
            mix={**json.loads(json.dumps(mix.meta)), "training": training} if mix else None,
            sweep=_sweep_point(planned),
            shift=shift,
        )


TRAINING_KEYS = ("rows_total", "rows_used", "rows_dropped", "rows_truncated", "steps")


def training_summary(train_log: Path) -> dict:
    """What fine-tuning made of the mix, from its train_log.json: rows given, trained, dropped (only with
    finetune.drop_long_rows), truncated, and optimizer steps; {} for a checkpoint without a log."""
    try:
        logged = json.loads(train_log.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {key: logged[key] for key in TRAINING_KEYS if key in logged}


def _sweep_point(planned: PlannedRun) -> SweepPoint | None:
    """Where a swept run sits in its sweep, for the report's plots: parameter, value, unswept label."""
    if planned.sweep is None:
        return None
    parameter, value = planned.sweep
    return SweepPoint(parameter, value, planned.recipe.label if planned.recipe else "baseline")


def _resolved_params(entry: RecipeEntry | None) -> dict:
    if entry is None:
        return {}
    return make_recipe(entry).params.model_dump(mode="json")


def _summary(results: list[BenchmarkResult]) -> str:
    parts = []
    for result in results:
        primary = next(s for s in result.scores if s.metric == result.primary_metric)
        parts.append(f"{result.benchmark} {primary.metric}={primary.value:.3f} (n={primary.n})")
    return ", ".join(parts)
