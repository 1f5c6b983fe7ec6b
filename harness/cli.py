"""forgetbench: measure how much a fine-tuned chat model forgets, and compare rehearsal recipes.

Heavy libraries are imported inside the commands, so `--help` stays instant."""
from __future__ import annotations

import argparse
import functools
import logging
import re
import sys
from importlib import resources
from pathlib import Path

from harness.errors import ConfigError, DataError, ForgetbenchError

DEFAULT_LEADERBOARD = Path("forgetbench.duckdb")
FORMATS = ("table", "csv", "json", "markdown")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return args.command(args) or 0
    except ForgetbenchError as exc:
        for line in exc.lines:
            print(f"forgetbench: error: {line}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        print("forgetbench: interrupted; finished runs are recorded, the rest resumes from the cache", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forgetbench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging from the libraries too")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def data_option(p):
        p.add_argument("--data-dir", type=Path, help="local data mirror (default: $FORGETBENCH_DATA_DIR, else the Hub)")

    p = commands.add_parser("validate", help="check a study file and its data without running it")
    p.add_argument("study", type=Path)
    data_option(p)
    p.set_defaults(command=cmd_validate)

    p = commands.add_parser("run", help="run a study: baseline + recipes x seeds, recorded in the leaderboard")
    p.add_argument("study", type=Path)
    data_option(p)
    p.add_argument("--leaderboard", type=Path, help="DuckDB file (default: the study's `leaderboard` setting)")
    p.add_argument("--executor", choices=("local", "ray"),
                   help="where runs execute: one after another here, or as Ray tasks (default: the study's "
                        "`executor.kind`, else local)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="existing Ray cluster to join, e.g. ray://head:10001 or auto (default: a local instance)")
    p.set_defaults(command=cmd_run)

    p = commands.add_parser("demo", help="run the bundled demo study (SmolLM2-135M-Instruct on OpenFunctions), "
                                         "then print its result")
    data_option(p)
    p.add_argument("--leaderboard", type=Path, default=DEFAULT_LEADERBOARD, help="DuckDB file (default: %(default)s)")
    p.set_defaults(command=cmd_demo)

    p = commands.add_parser("eval", help="evaluate one model (seed model or any checkpoint) and record it")
    p.add_argument("--model", required=True, help="model spec: smollm2-135m-instruct, a checkpoint dir or a Hub id")
    p.add_argument("--suite", help="comma-separated benchmarks, e.g. ifeval,gpqa,lm_eval:hellaswag (default: every "
                                   "registered benchmark that needs no parameter: the eight built-ins)")
    p.add_argument("--include-path", type=Path, metavar="DIR",
                   help="a folder of lm-eval task YAMLs, for `lm_eval:<task>` of your own (as lm-eval's --include_path)")
    p.add_argument("--limit", type=int, help="examples per benchmark (seeded subset; default: all)")
    p.add_argument("--max-new-tokens", type=int, help="generation budget of every generative benchmark")
    p.add_argument("--domain", default="medmcqa", help="registered domain of the `domain` benchmark (default: %(default)s)")
    p.add_argument("--domain-file", type=Path, metavar="FILE",
                   help="score the model on a domain of your own instead: a JSON/JSONL file of test conversations "
                        "(messages or Alpaca-style rows); without --suite the suite is `domain` alone")
    p.add_argument("--answer", default="exact", metavar="SPEC",
                   help="with --domain-file: how answers are read, letter | number | exact | call | regex:<pattern> | "
                        "module:function (default: %(default)s)")
    p.add_argument("--base-model", default="smollm2-135m-instruct",
                   help="seed model: evaluating it records a baseline (default: %(default)s)")
    p.add_argument("--param", action="append", default=[], metavar="BENCH.KEY=VALUE",
                   help="one parameter of one benchmark of the suite, as `benchmarks show BENCH` lists them, e.g. "
                        "alpaca_eval.judge_model=http://host/v1#model or gpqa.subset=diamond (repeatable; VALUE "
                        "is read as YAML: numbers and true/false are typed)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="cap on generation batch sizes (default: as large as memory allows)")
    p.add_argument("--subset-seed", type=int, default=1234)
    p.add_argument("--study", default="eval", help="study name the run is recorded under (default: %(default)s)")
    data_option(p)
    p.add_argument("--leaderboard", type=Path, default=DEFAULT_LEADERBOARD, help="DuckDB file (default: %(default)s)")
    p.set_defaults(command=cmd_eval)

    p = commands.add_parser("cache", help="verify the artefact cache, or prune what no leaderboard row uses")
    sub = p.add_subparsers(required=True, metavar="ACTION")
    verify = sub.add_parser("verify", help="hash every cached artefact against its manifest; exit 1 if any is damaged")
    verify.add_argument("--fix", action="store_true", help="move damaged artefacts aside (the next run rebuilds them)")
    verify.set_defaults(command=cmd_cache_verify)
    prune = sub.add_parser("prune", help="delete cached mixes, checkpoints, evaluations and diagnostics that no "
                                         "row of the given leaderboards references")
    prune.add_argument("--leaderboard", type=Path, nargs="+", default=[DEFAULT_LEADERBOARD], metavar="PATH",
                       help="every leaderboard whose runs keep their artefacts (default: %(default)s)")
    prune.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    prune.set_defaults(command=cmd_cache_prune)

    p = commands.add_parser("recipes", help="list registered recipes or show one")
    sub = p.add_subparsers(required=True, metavar="ACTION")
    sub.add_parser("list", help="every registered recipe").set_defaults(command=cmd_recipes_list)
    show = sub.add_parser("show", help="a recipe's description and parameters")
    show.add_argument("name")
    show.set_defaults(command=cmd_recipes_show)

    p = commands.add_parser("benchmarks", help="list registered benchmarks or show one")
    sub = p.add_subparsers(required=True, metavar="ACTION")
    sub.add_parser("list", help="every registered benchmark").set_defaults(command=cmd_benchmarks_list)
    show = sub.add_parser("show", help="a benchmark's description, group, data and parameters")
    show.add_argument("name")
    show.set_defaults(command=cmd_benchmarks_show)

    p = commands.add_parser("profile", help="task-category profile of a public set or data file, without a study")
    p.add_argument("--data", required=True, metavar="FILE_OR_SET",
                   help="a public set (alpaca, dolly, lima, sharegpt, ...) or a .json/.jsonl file of conversations")
    p.add_argument("--model", default="smollm2-135m-instruct", help="classifier model spec (default: %(default)s)")
    p.add_argument("--limit", type=int, default=100, help="classify a seeded sample of this many rows (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    p.add_argument("--format", choices=(*FORMATS, "md"), default="table", help="output format (default: %(default)s)")
    data_option(p)
    p.set_defaults(command=cmd_profile)

    p = commands.add_parser("leaderboard", help="print the leaderboard")
    p.add_argument("--leaderboard", type=Path, default=DEFAULT_LEADERBOARD, help="DuckDB file (default: %(default)s)")
    p.add_argument("--study", help="only runs of this study")
    p.add_argument("--view", choices=("paper", "table", "deltas", "runs"), default="paper",
                   help="one row per recipe, mean ± std over seeds (paper), scores per run (table), "
                        "differences to the baseline (deltas), or provenance (runs); default: %(default)s")
    p.add_argument("--benchmarks", nargs="+", metavar="B", help="only these benchmarks (paper and deltas views)")
    p.add_argument("--format", choices=(*FORMATS, "md"), default="table", help="output format (default: %(default)s)")
    p.add_argument("--export", type=Path, metavar="DIR",
                   help="also write runs/scores/examples/shift_measures parquet files into DIR")
    p.set_defaults(command=cmd_leaderboard)

    from leaderboard.commands import add_commands  # compare, query, export, report

    add_commands(commands, DEFAULT_LEADERBOARD)
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if not verbose:
        for noisy in ("transformers", "datasets", "lm_eval", "lm-eval", "httpx", "urllib3", "filelock", "accelerate"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _check_outputs(leaderboard: Path, option: str) -> None:
    """Before any work: the leaderboard can be written (and, if it exists, opened) and so can the cache."""
    from harness.paths import CACHE_ENV, cache_dir, check_writable

    check_writable(leaderboard, option)
    check_writable(cache_dir(), f"cache ({CACHE_ENV})", folder=True)
    if Path(leaderboard).is_file():
        from leaderboard.store import Leaderboard

        Leaderboard.verify_file(leaderboard)  # a damaged or foreign file fails here, not after the work


class _leaderboard:  # noqa: N801 - used like a function: the leaderboard at `path`, opened on first use
    """A study's leaderboard, created or migrated only when the study first asks it something (after
    the preflight checks, so a study refused before any work leaves no file behind)."""

    def __init__(self, path: Path):
        self.path = path

    @functools.cached_property
    def _board(self):
        from leaderboard.store import Leaderboard

        return Leaderboard(self.path)

    def find_baseline(self, base_model_sha: str, eval_config_hash: str) -> str | None:
        return self._board.find_baseline(base_model_sha, eval_config_hash)

    def record(self, run, results) -> None:
        self._board.record(run, results)


def _load(path: Path, data_dir: Path | None):
    from harness.study_file import load_study

    study = load_study(path)
    return study, data_dir or study.data_dir


def cmd_validate(args) -> int:
    from harness.paths import check_writable, resolve_data_dir
    from harness.study import plan, preflight, row_lengths

    study, data_dir = _load(args.study, args.data_dir)
    problems = preflight(study, resolve_data_dir(data_dir))
    try:
        check_writable(study.leaderboard, "leaderboard")
        if Path(study.leaderboard).is_file():
            from leaderboard.store import Leaderboard

            Leaderboard.verify_file(study.leaderboard)  # what `run` checks first: a leaderboard, undamaged
    except ForgetbenchError as exc:
        problems += exc.lines
    if problems:
        raise ConfigError([f"{args.study}: {line}" for line in problems])
    runs = ", ".join(run.label for run in plan(study)[: 1 + len(study.recipes)])
    print(f"{args.study}: ok — {runs}; seeds {study.seeds}; mix {study.mix.size} rows "
          f"({study.mix.domain_share:.0%} domain {_domain_name(study)}); leaderboard {study.leaderboard}")
    lengths, why_not = row_lengths(study, resolve_data_dir(data_dir))
    for report in lengths:
        print(f"  {report.summary()}")
    if why_not:
        print(f"  domain row lengths not checked against finetune.max_seq_length: {why_not}")
    return 0


def _domain_name(study) -> str:
    """The study's domain as a person reads it: a registered name, or a files domain's name and files."""
    domain = study.domain
    if isinstance(domain, str):
        return domain
    test = f", test {domain.test}" if domain.test else ""
    return f"{domain.name} (train {domain.train}{test})"


def cmd_run(args) -> int:
    from harness.study import run_study

    study, data_dir = _load(args.study, args.data_dir)
    overrides = {"kind": args.executor} if args.executor else {}
    if args.ray_address:
        if (args.executor or study.executor.kind) != "ray":
            raise ConfigError("--ray-address: needs --executor ray")
        overrides["address"] = args.ray_address
    if overrides:
        study = study.model_copy(update={"executor": study.executor.model_copy(update=overrides)})
    _check_outputs(args.leaderboard or study.leaderboard, "--leaderboard" if args.leaderboard else "leaderboard")
    run_ids = run_study(study, _leaderboard(args.leaderboard or study.leaderboard), data_dir=data_dir)
    print(f"recorded {len(run_ids)} runs in {args.leaderboard or study.leaderboard}")
    return 0


def cmd_demo(args) -> int:
    from harness.study import run_study
    from harness.study_file import parse_study, parse_yaml

    _check_outputs(args.leaderboard, "--leaderboard")
    text = resources.files("harness").joinpath("studies/demo.yaml").read_text(encoding="utf-8")
    study = parse_study(parse_yaml(text, "demo.yaml (bundled)"), "demo.yaml (bundled)")
    run_study(study, _leaderboard(args.leaderboard), data_dir=args.data_dir)
    print(demo_summary(args.leaderboard, study))
    return 0


def demo_summary(leaderboard: Path, study) -> str:
    """What the demo prints at its end: the paper view, then `compare` of the seed model against `none`
    and against the recipe that forgot least (leaderboard/publish.py), each headed by its command."""
    from leaderboard.publish import study_order, summary_text
    from leaderboard.store import Leaderboard

    option = None if Path(leaderboard) == DEFAULT_LEADERBOARD else str(leaderboard)
    return summary_text(Leaderboard(leaderboard, read_only=True), study.name, study_order(study), option)


def cmd_eval(args) -> int:
    from harness.evaluation.eval_command import build_eval_config, evaluate_and_record, parse_params, parse_suite
    from harness.paths import resolve_data_dir

    for option, value in (("--limit", args.limit), ("--max-new-tokens", args.max_new_tokens),
                          ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise ConfigError(f"{option}: must be at least 1, got {value}")
    if args.include_path is not None and not args.include_path.is_dir():
        raise ConfigError(f"--include-path {args.include_path}: not a folder (of lm-eval task YAMLs)")
    _check_outputs(args.leaderboard, "--leaderboard")  # before any evaluation work
    domain = _eval_domain(args)
    suite = parse_suite(args.suite) if args.suite or args.domain_file is None else ["domain"]
    eval_cfg = build_eval_config(suite, args.limit, args.max_new_tokens, args.batch_size,
                                 args.subset_seed, include_path=args.include_path, params=parse_params(args.param))
    run_id, results = evaluate_and_record(args.model, eval_cfg, domain=domain,
                                          data_dir=resolve_data_dir(args.data_dir), leaderboard=_leaderboard(args.leaderboard),
                                          base_model=args.base_model, study=args.study)
    for result in results:
        primary = next(s for s in result.scores if s.metric == result.primary_metric)
        stderr = f" ± {primary.stderr:.3f}" if primary.stderr is not None else ""
        print(f"{result.benchmark:<18} {primary.metric:<24} {primary.value:.3f}{stderr} (n={primary.n}, "
              f"{result.settings.get('wall_seconds', '?')} s)")
    print(f"recorded {run_id} in {args.leaderboard}")
    return 0


def _eval_domain(args):
    """`--domain NAME`, or with `--domain-file` a domain whose test rows are that file (checked line by line)."""
    from pydantic import ValidationError

    from harness.domains import DomainFiles, check_domain_data, file_domain, get_domain

    if args.domain_file is None:
        return get_domain(args.domain)
    path = args.domain_file.resolve()
    try:
        files = DomainFiles(name=re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem) or "domain", train=path, test=path,
                            answer=args.answer)
    except ValidationError as exc:
        raise ConfigError([f"--answer: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]) from None
    domain = file_domain(files)
    problems = check_domain_data(domain, None, trained=False)  # evaluated only: the file is its own test set
    if problems:
        raise DataError(problems)
    return domain


def cmd_cache_verify(args) -> int:
    from harness.cache_admin import verify_cache
    from harness.paths import cache_dir

    checked, damaged = verify_cache(fix=args.fix)
    for item in damaged:
        print(f"damaged {item.what} {item.path}: {item.reason}")
    action = "moved aside" if args.fix else "run `forgetbench cache verify --fix` to move them aside"
    print(f"{cache_dir()}: {checked} artefacts checked, {len(damaged)} damaged"
          + (f" ({action})" if damaged else ""))
    return 1 if damaged and not args.fix else 0


def cmd_cache_prune(args) -> int:
    from harness.cache_admin import prune_cache
    from harness.paths import cache_dir

    missing = [str(p) for p in args.leaderboard if not Path(p).is_file()]
    if missing:
        raise ConfigError(f"--leaderboard {missing[0]}: no such leaderboard file (prune keeps what leaderboards use)")
    result = prune_cache(list(args.leaderboard), dry_run=args.dry_run)
    for path in result.removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {path}")
    for path in result.unknown:
        print(f"kept {path} (written before artefacts recorded their leaderboard references)")
    print(f"{cache_dir()}: {'would remove' if args.dry_run else 'removed'} {len(result.removed)} artefacts "
          f"({result.freed_bytes / 1e6:.1f} MB); kept {result.kept} in use and {len(result.unknown)} of unknown use")
    return 0


def cmd_recipes_list(args) -> int:
    from harness.recipe import registry
    from harness.registry import summary

    for name, cls in sorted(registry().items()):
        print(f"{name:<24} {summary(cls)}")
    return 0


def cmd_recipes_show(args) -> int:
    from harness.recipe import describe

    print(describe(args.name))
    return 0


def cmd_benchmarks_list(args) -> int:
    from harness.benchmark import registry
    from harness.registry import summary

    for name, cls in sorted(registry().items()):
        print(f"{name:<18} {cls.group:<8} {summary(cls)}")
    return 0


def cmd_benchmarks_show(args) -> int:
    from harness.benchmark import describe

    print(describe(args.name))
    return 0


def cmd_profile(args) -> int:
    import random

    import pandas as pd

    from harness.models import resolve_model
    from harness.paths import resolve_data_dir
    from harness.task_categories import conversations_from, profile_rows
    from leaderboard.render import render

    if args.limit < 1:
        raise ConfigError(f"--limit: must be at least 1, got {args.limit}")
    rows = conversations_from(args.data, resolve_data_dir(args.data_dir))
    rows = random.Random(args.seed).sample(rows, min(args.limit, len(rows)))
    profile = profile_rows(rows, resolve_model(args.model))
    frame = pd.DataFrame({"category": list(profile["counts"]), "count": list(profile["counts"].values()),
                          "share": [profile["shares"][c] for c in profile["counts"]]})
    print(render(frame, "markdown" if args.format == "md" else args.format), end="")
    return 0


def cmd_leaderboard(args) -> int:
    from leaderboard.commands import print_board

    return print_board(args)


if __name__ == "__main__":
    sys.exit(main())
