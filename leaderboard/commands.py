"""The leaderboard's CLI commands: leaderboard (printing), leaderboard profile, compare, query, export, report.

Only argparse and pathlib are imported at module level, so building the parser stays instant."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from harness.errors import ConfigError


def _board(path: Path):
    """The leaderboard opened for reading only: these commands never write the file."""
    from leaderboard.store import Leaderboard

    if not Path(path).is_file():
        raise ConfigError(f"--leaderboard {path}: no such leaderboard file (run a study first)")
    return Leaderboard(path, read_only=True)


def _fmt(fmt: str) -> str:
    return "markdown" if fmt == "md" else fmt


def add_commands(commands, default_leaderboard: Path) -> None:
    """Register compare, query, export and report on the CLI's sub-parsers."""
    def common(p, formats: bool = True):
        p.add_argument("--leaderboard", type=Path, default=default_leaderboard,
                       help="DuckDB file (default: %(default)s)")
        if formats:
            p.add_argument("--format", choices=("table", "csv", "json", "markdown", "md"), default="table",
                           help="output format (default: %(default)s)")

    p = commands.add_parser("compare", help="paired bootstrap comparison of two runs or two recipes, per benchmark")
    p.add_argument("run_a", metavar="RUN_A", help="a run_id, or a recipe name (all its seeds)")
    p.add_argument("run_b", metavar="RUN_B", help="a run_id, or a recipe name; differences are B - A")
    p.add_argument("--study", help="where RUN_A/RUN_B are recipe names: the study they belong to")
    p.add_argument("--benchmarks", nargs="+", metavar="B", help="only these benchmarks")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level, Holm-corrected (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap RNG seed (default: %(default)s)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="pair runs even where their evaluation settings differ (limits, max_new_tokens, subsets, "
                        "data hashes, ...) or they trained on different domain rows (none:extra-domain against a "
                        "rehearsal recipe); the output then names what differs")
    common(p)
    p.set_defaults(command=cmd_compare)

    p = commands.add_parser("query", help="run read-only SQL against the leaderboard file")
    p.add_argument("sql", metavar="SQL", help='one statement, e.g. "SELECT recipe, count(*) FROM runs GROUP BY recipe"')
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before the query is stopped (default: %(default)s)")
    p.add_argument("--max-rows", type=int, default=1000, help="rows fetched and printed at most (default: %(default)s)")
    common(p)
    p.set_defaults(command=cmd_query)

    p = commands.add_parser("export", help="write runs, scores, examples and shift measures as parquet files")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory for the parquet files")
    p.add_argument("--study", help="only runs of this study")
    common(p, formats=False)
    p.set_defaults(command=cmd_export)

    p = commands.add_parser("report", help="write a self-contained HTML report (table and interactive charts)")
    p.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file (default: %(default)s)")
    p.add_argument("--figures", type=Path, metavar="DIR", help="also write each chart as DIR/<name>.png")
    p.add_argument("--study", help="only runs of this study")
    p.add_argument("--benchmarks", nargs="+", metavar="B", help="only these benchmarks")
    p.add_argument("--force", action="store_true", help="overwrite --out even if it is not an earlier report")
    common(p, formats=False)
    p.set_defaults(command=cmd_report)

    p = commands.add_parser("publish", help="write a study's results into a folder: paper view and comparisons as "
                                            "Markdown, the HTML report, its figures as PNG, versions, a README")
    p.add_argument("--study", required=True, help="the study whose runs are published")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder to write (replaced as a whole; new, empty or written by an earlier publish)")
    p.add_argument("--study-file", type=Path, metavar="FILE",
                   help="the study's YAML, named in the README's regenerate command and ordering ties "
                        "(default: the bundled study of that name, if there is one)")
    p.add_argument("--notes", type=Path, metavar="FILE",
                   help="Markdown of your own (e.g. which findings reproduce), kept outside the folder and "
                        "copied into its README under 'Findings' on every publish")
    common(p, formats=False)
    p.set_defaults(command=cmd_publish, default_leaderboard=default_leaderboard)

    # `forgetbench leaderboard profile`: an optional action under the existing `leaderboard` command
    board_actions = commands.choices["leaderboard"].add_subparsers(metavar="ACTION", required=False)
    p = board_actions.add_parser("profile", help="task-category shares of each recipe's rehearsal data, side by side")
    p.add_argument("--study", help="only runs of this study")
    p.add_argument("--recipe", nargs="+", metavar="R", help="only these recipes (default: every profiled recipe)")
    p.add_argument("--reference", nargs="+", metavar="R",
                   help="total variation distance to these recipes (default: to every recipe shown)")
    common(p)
    p.set_defaults(command=cmd_profile)

    p = board_actions.add_parser("migrate", help="upgrade an older leaderboard file to this forgetbench's schema")
    common(p, formats=False)
    p.set_defaults(command=cmd_migrate)


def print_board(args: argparse.Namespace) -> int:
    from leaderboard.render import render
    from leaderboard.views import paper_table, paper_view

    if getattr(args, "export", None):
        from harness.paths import check_writable

        check_writable(args.export, "--export", folder=True)
    board = _board(args.leaderboard)
    fmt = _fmt(args.format)
    benchmarks = getattr(args, "benchmarks", None)
    _check_names(board, args.study, benchmarks)
    if args.view == "paper":
        frame = paper_view(paper_table(board, args.study, benchmarks), fmt)
    elif args.view == "deltas":
        frame = board.deltas(study=args.study)
        if benchmarks:
            frame = frame[frame.benchmark.isin(benchmarks)]
    else:
        frame = {"table": board.table, "runs": board.runs}[args.view](study=args.study)
    print(render(frame, fmt), end="")
    if getattr(args, "export", None):
        _export(board, args.export, args.study)
    return 0


def _export(board, out: Path, study: str | None) -> None:
    import sys

    from leaderboard.sql import export_parquet

    written = export_parquet(board, out, study)
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)


def cmd_compare(args) -> int:
    from leaderboard.compare import compare
    from leaderboard.render import render

    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha: {args.alpha} must be between 0 and 1")
    board = _board(args.leaderboard)
    _check_names(board, args.study, args.benchmarks)
    frame = compare(board, args.run_a, args.run_b, study=args.study, benchmarks=args.benchmarks,
                    resamples=args.resamples, seed=args.seed, alpha=args.alpha, allow_mismatch=args.allow_mismatch)
    fmt = _fmt(args.format)
    print(render(frame, fmt), end="")
    mismatches = frame.attrs.get("mismatches")
    if mismatches:
        note = "--allow-mismatch: paired despite differing settings: " + "; ".join(mismatches)
        # tables get the note as their last line; csv/json stay machine-readable (the column says it)
        print(note, file=sys.stdout if fmt in ("table", "markdown") else sys.stderr)
    return 0


def cmd_query(args) -> int:
    from leaderboard.render import render
    from leaderboard.sql import run_query

    frame = run_query(_board(args.leaderboard), args.sql, timeout=args.timeout, max_rows=args.max_rows)
    print(render(frame, _fmt(args.format)), end="")
    if frame.attrs.get("truncated"):
        print(f"(the first {args.max_rows} rows; --max-rows shows more)", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from harness.paths import check_writable

    check_writable(args.out, "--out", folder=True)
    _export(_board(args.leaderboard), args.out, args.study)
    return 0


def cmd_report(args) -> int:
    from harness.paths import atomic_write_text, check_writable
    from leaderboard.report import report_figures, report_html, write_figure_pngs

    check_writable(args.out, "--out")
    _refuse_foreign_file(args.out, args.force)
    if args.figures:
        check_writable(args.figures, "--figures", folder=True)
    board = _board(args.leaderboard)
    _check_names(board, args.study, args.benchmarks)
    table, figures, after = report_figures(board, args.study, args.benchmarks)
    html = report_html(board, args.study, table, figures, after)
    if args.figures:
        written = write_figure_pngs(figures, args.figures)
        print(f"wrote {', '.join(str(p) for p in written) or f'no figure to {args.figures} (nothing to draw)'}")
    atomic_write_text(args.out, html)
    print(f"wrote {args.out}")
    return 0


def _refuse_foreign_file(out: Path, force: bool) -> None:
    """`report --out FILE` replaces FILE only where it is an earlier report (or with --force)."""
    from leaderboard.report import REPORT_MARKER

    if force or not out.is_file() or out.stat().st_size == 0:
        return
    with open(out, "rb") as handle:
        head = handle.read(4096).decode("utf-8", errors="replace")
    if REPORT_MARKER not in head:
        raise ConfigError(f"--out {out}: exists and is not a forgetbench report; name another file or pass --force")


def _check_names(board, study: str | None, benchmarks: list[str] | None) -> None:
    """`--study` must name a study of the leaderboard and `--benchmarks` benchmarks it has scores of
    (within that study): an unknown name is an error with the nearest known one, not an empty output."""
    from harness.registry import did_you_mean
    from leaderboard.sql import known_studies

    with board.connect() as con:
        if study is not None:
            known_studies(con, study, "--study")
        if benchmarks:
            present = [b for (b,) in con.execute(
                "SELECT DISTINCT s.benchmark FROM scores s JOIN runs r USING (run_id) "
                "WHERE ? IS NULL OR r.study = ? ORDER BY 1", [study, study]).fetchall()]
            for name in benchmarks:
                if name not in present:
                    raise ConfigError(f"--benchmarks: no scores of {name!r}{' in study ' + repr(study) if study else ''}"
                                      f"{did_you_mean(name, present)}; present: {', '.join(present) or 'none'}")


def cmd_publish(args) -> int:
    from harness.paths import check_writable
    from leaderboard.publish import Regenerate, publish, study_order

    check_writable(args.out, "--out", folder=True)
    check_writable(args.out.parent, f"--out {args.out}: its folder", folder=True)  # the new folder is made beside
    board = _board(args.leaderboard)
    study_file, study = _study_file(args.study_file, args.study)
    leaderboard = None if args.leaderboard == args.default_leaderboard else str(args.leaderboard)
    notes = _notes(args.notes, args.out)
    words = ["--study", args.study, "--out", str(args.out), *(("--study-file", study_file) if args.study_file else ()),
             *(("--notes", str(args.notes)) if args.notes else ())]
    command = shlex.join(["forgetbench", "publish", *words, *(("--leaderboard", leaderboard) if leaderboard else ())])
    written = publish(board, args.study, args.out, Regenerate(study_file, str(args.leaderboard), leaderboard, command),
                      study_order(study) if study else None, notes=notes)
    print(f"wrote {len(written)} files to {args.out}: {', '.join(str(p.relative_to(args.out)) for p in written)}")
    return 0


def _notes(path: Path | None, out: Path) -> str | None:
    """The text of `--notes FILE`: readable UTF-8 and outside `--out` (which publish replaces whole)."""
    if path is None:
        return None
    if path.resolve().is_relative_to(out.resolve()):
        raise ConfigError(f"--notes {path}: lies inside --out {out}, which publish replaces; keep it outside")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--notes {path}: cannot be read ({type(error).__name__}: {error})") from None


def _study_file(path: Path | None, name: str):
    """(the study file as the README names it, its config) for `--study-file`, else for the bundled study
    called `name`; (None, None) when neither is there."""
    from importlib import resources

    from harness.study_file import load_study, parse_yaml

    if path is None:
        for entry in sorted(resources.files("harness").joinpath("studies").iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".yaml"):
                data = parse_yaml(entry.read_text(encoding="utf-8"), entry.name)
                if isinstance(data, dict) and data.get("name") == name:
                    path = Path(str(entry))
                    break
        else:
            return None, None
        try:
            shown = str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            shown = str(path)
    else:
        shown = str(path)
    study = load_study(path)
    if study.name != name:
        raise ConfigError(f"--study-file {path}: defines study {study.name!r}, not {name!r}")
    return shown, study


def cmd_migrate(args) -> int:
    from leaderboard.store import SCHEMA_VERSION, Leaderboard

    if not Path(args.leaderboard).is_file():
        raise ConfigError(f"--leaderboard {args.leaderboard}: no such leaderboard file")
    Leaderboard.verify_file(args.leaderboard)  # a damaged file is refused, not migrated
    Leaderboard(args.leaderboard)  # a writing open migrates in one transaction
    Leaderboard.verify_file(args.leaderboard)
    print(f"{args.leaderboard}: schema_version {SCHEMA_VERSION}")
    return 0


def cmd_profile(args) -> int:
    from leaderboard.category_profiles import profile_table
    from leaderboard.render import render

    frame = profile_table(_board(args.leaderboard), args.study, args.recipe, args.reference)
    print(render(frame, _fmt(args.format)), end="")
    return 0
