"""A study's results for readers who do not know the commands: what `forgetbench demo` prints at its
end, and what `forgetbench publish` writes into a folder.

`summary_sections` gives three sections, each the output of an existing command with a one-line
header naming what it is and the command that prints it: the paper view of the study
(`forgetbench leaderboard --view paper`), then `forgetbench compare` of the seed model (baseline)
against `none` and against the *best recipe*, and, where the study scored `drift`, each recipe's
drift from the seed model with its paired CI. The best recipe is the rehearsal recipe (any recipe of
the study other than `none` and the baseline, sweep points of `none` included) with the least
forgetting: the highest average delta of the paper view — ``small_avg_delta`` (the small-model
suite's normalised average) where the study scored that suite, else ``avg_delta`` (the Open LLM
Leaderboard v2 average) — against the seed model, in points, averaged over the recipe's seeds. Ties
go to the recipe first in the study's order (the study file's `recipes` when known, else the paper
view's order); recipes without that delta (no paired baseline) are not candidates.

Each comparison is `compare(board, BASELINE, RECIPE, study=...)` with its defaults (10 000 resamples,
seed 0, alpha 0.05), rendered by the same `render` as the command: BASELINE is `baseline` where that
recipe name resolves to exactly the seed-model run the recipe's runs are paired with on the
leaderboard, else that run's id (a baseline recorded by another study, or several baselines in the
study). A recipe whose runs pair with different seed-model runs is compared run by run, as the
report's delta chart does.

`publish` writes, into a fresh folder renamed into place only when every file is written:
paper.md, comparisons.md (every recipe against the baseline), report.html and figures/*.png (the
report), versions.md (package versions now and as recorded with the runs, the source's git commit)
and README.md (the files, the commands that regenerate them, the study's recorded wall time, the
date, and the summary sections).
"""
from __future__ import annotations

import datetime as _dt
import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.errors import ConfigError
from harness.paths import swap_in_folder
from leaderboard.compare import compare, resolve
from leaderboard.render import render
from leaderboard.store import BASELINE_RECIPE, Leaderboard
from leaderboard.views import FORGETTING, SUITE_AVERAGES, baseline_pairing, paper_table, paper_view

NO_REHEARSAL = "none"
# Beyond what every run records (harness.provenance.PACKAGES): what renders and judges the results.
PUBLISH_PACKAGES = ("alpaca_eval", "pandas", "numpy", "altair", "vl-convert-python")
MARKER = "<!-- written by `forgetbench publish`: the whole folder is rewritten by the command below -->"


@dataclass(frozen=True)
class Section:
    """One block of output: what it shows, the command that prints it ("" where there is none to run),
    and that output."""

    title: str
    command: str
    body: str

    def text(self) -> str:
        run = f" — run: {self.command}" if self.command else ""
        return f"== {self.title}{run}\n{self.body}"

    def markdown(self, level: int = 2) -> str:
        run = f"`{self.command}`\n\n" if self.command else ""
        return f"{'#' * level} {self.title}\n\n{run}{self.body}"


def _command(*words: str, leaderboard: str | None = None, fmt: str = "table") -> str:
    """A forgetbench command line, quoted for a POSIX shell; `fmt` is table or markdown, as every
    function here takes it."""
    extra = [*(("--leaderboard", str(leaderboard)) if leaderboard else ()), *(("--format", "md") if fmt != "table" else ())]
    return shlex.join(["forgetbench", *words, *extra])


def paper_section(table: pd.DataFrame, study: str, fmt: str = "table", leaderboard: str | None = None) -> Section:
    """The paper view of `study` (its paper table given), as `forgetbench leaderboard --view paper --study
    STUDY` prints it."""
    return Section(f"Paper view of study {study}: one row per recipe, mean ± std over seeds",
                   _command("leaderboard", "--view", "paper", "--study", study, leaderboard=leaderboard, fmt=fmt),
                   render(paper_view(table, fmt), fmt))


def comparison_sections(board: Leaderboard, study: str, recipe: str, fmt: str = "table",
                        leaderboard: str | None = None, title: str | None = None) -> list[Section]:
    """`forgetbench compare BASELINE RECIPE --study STUDY` for one recipe of the study (see the module
    docstring for BASELINE); one section per run where its runs pair with different seed-model runs,
    and a sentence instead of a table where the leaderboard has no baseline to pair with."""
    title = title or f"{recipe} against the seed model (B − A = {recipe} − baseline, per benchmark)"
    pairing = baseline_pairing(board, study)
    runs = pairing[pairing.recipe == recipe]
    if runs.empty or runs.baseline_run_id.isna().any():
        why = ("no finished run" if runs.empty else
               "no seed-model run with the same base model and evaluation settings is on the leaderboard")
        return [Section(title, "", f"Not compared: {recipe}: {why}.\n")]
    baselines = list(dict.fromkeys(runs.baseline_run_id))
    if len(baselines) == 1:
        sides = [(_baseline_reference(board, study, baselines[0]), recipe, title)]
    else:
        sides = [(r.baseline_run_id, r.run_id, f"{title}, seed {r.seed}") for r in runs.itertuples()]
    sections = []
    for baseline, side, heading in sides:
        command = _command("compare", baseline, side, "--study", study, leaderboard=leaderboard, fmt=fmt)
        try:
            body = render(compare(board, baseline, side, study=study), fmt)
        except ConfigError as error:  # e.g. evaluated with different settings: say so, keep the rest
            body = f"Not compared: {error}\n"
        sections.append(Section(heading, command, body))
    return sections


def _baseline_reference(board: Leaderboard, study: str, baseline_run_id: str) -> str:
    """`baseline` where that name resolves to exactly this seed-model run in `study`, else its run id."""
    with board.connect() as con:
        try:
            named = resolve(con, BASELINE_RECIPE, study, "RUN_A")
        except ConfigError:  # no baseline recorded under this study
            return baseline_run_id
    return BASELINE_RECIPE if named == [baseline_run_id] else baseline_run_id


def best_recipe(table: pd.DataFrame, order: list[str] | None = None) -> tuple[str | None, str]:
    """(recipe, why) for the rehearsal recipe with the least forgetting in a paper table of one study
    (see the module docstring), or (None, why there is none)."""
    def rehearsal(recipe: str) -> bool:
        return recipe != BASELINE_RECIPE and recipe.split("@")[0] != NO_REHEARSAL

    # The small-model suite's average where the study scored it, else the Open LLM Leaderboard v2's.
    average_name, forgetting = next((pair for pair in (SUITE_AVERAGES["small"], SUITE_AVERAGES["v2"])
                                     if pair[1] in table.columns), (None, None))
    if forgetting is None:
        return None, ("no general benchmark with a leaderboard score was evaluated, so no recipe has an "
                      f"average forgetting ({FORGETTING})")
    candidates = table[[rehearsal(r) for r in table.recipe]]
    if candidates.empty:
        return None, f"the study has no rehearsal recipe, only {NO_REHEARSAL} and the baseline"
    candidates = candidates.dropna(subset=[forgetting])
    if candidates.empty:
        return None, (f"no rehearsal recipe (other than {NO_REHEARSAL} and the baseline) has an average "
                      f"forgetting ({forgetting}) against a seed-model run")
    rank: dict[str, int] = {}
    for recipe in [*(order or []), *table.recipe]:
        rank.setdefault(recipe, len(rank))
    candidates = candidates.assign(_rank=[rank[r] for r in candidates.recipe])
    best = candidates.sort_values([forgetting, "_rank"], ascending=[False, True]).iloc[0]
    average = next((c for c in table.columns if c.startswith(f"{average_name}(")), forgetting)
    runs = int(best["runs"])
    unit = "leaderboard points" if forgetting == FORGETTING else "points"
    why = (f"least mean forgetting on the general benchmarks: {forgetting} {best[forgetting]:+.2f} {unit} "
           f"on {average} against the seed model, mean over {runs} seed{'s' if runs != 1 else ''}")
    others = table[table.recipe == NO_REHEARSAL].dropna(subset=[forgetting])
    if not others.empty:
        why += f"; {NO_REHEARSAL}: {others[forgetting].iloc[0]:+.2f}"
    return str(best.recipe), why


def summary_sections(board: Leaderboard, study: str, fmt: str = "table", order: list[str] | None = None,
                     leaderboard: str | None = None, table: pd.DataFrame | None = None) -> list[Section]:
    """The paper view, then the seed model against `none` and against the best recipe (module docstring).
    `leaderboard` is the --leaderboard value the printed commands need (None: the default file); `table`
    the study's paper table where the caller has it already."""
    table = paper_table(board, study) if table is None else table
    sections = [paper_section(table, study, fmt, leaderboard)]
    recipes = set(table.recipe)
    if NO_REHEARSAL in recipes:
        sections += comparison_sections(board, study, NO_REHEARSAL, fmt, leaderboard,
                                        f"{NO_REHEARSAL} (no rehearsal) against the seed model "
                                        f"(B − A = {NO_REHEARSAL} − baseline, per benchmark)")
    else:
        sections.append(Section(f"{NO_REHEARSAL} against the seed model", "",
                                f"Study {study} has no {NO_REHEARSAL} recipe.\n"))
    best, why = best_recipe(table, order)
    if best is None:
        sections.append(Section("Best recipe against the seed model", "", f"No best recipe: {why}.\n"))
    else:
        sections += comparison_sections(board, study, best, fmt, leaderboard,
                                        f"best recipe: {best} ({why}), against the seed model")
    if DRIFT in table.columns:
        sections.append(drift_section(board, study, table, fmt, leaderboard))
    return sections


DRIFT = "drift"


def drift_section(board: Leaderboard, study: str, table: pd.DataFrame, fmt: str = "table",
                  leaderboard: str | None = None) -> Section:
    """Every fine-tuned recipe's drift from the seed model: `compare` of the baseline against it on the
    drift benchmark alone (B − A of the log-probability per token of the seed model's own answers: 0 is
    no drift, more negative is further away), with its paired CI and p-value, least drift first."""
    rows = []
    pairing = baseline_pairing(board, study)
    for recipe in table.recipe:
        if recipe == BASELINE_RECIPE:
            continue
        baselines = pairing[pairing.recipe == recipe].baseline_run_id.dropna().unique()
        if len(baselines) != 1:
            continue  # no seed-model run to pair with, or several: the per-recipe sections say so
        try:
            row = compare(board, _baseline_reference(board, study, baselines[0]), recipe, study=study,
                          benchmarks=[DRIFT]).iloc[0]
        except ConfigError:
            continue
        rows.append({"recipe": recipe, "n": row["n"], "seed_model": row["a_mean"], "recipe_value": row["b_mean"],
                     "drift": row["diff"], "ci_low": row["ci_low"], "ci_high": row["ci_high"], "p_value": row["p_value"]})
    frame = pd.DataFrame(rows).sort_values("drift", ascending=False) if rows else pd.DataFrame(rows)
    command = _command("compare", "baseline", "RECIPE", "--study", study, "--benchmarks", DRIFT,
                       leaderboard=leaderboard, fmt=fmt)
    return Section("drift from the seed model per recipe (mean log-probability per token of the seed model's own "
                   "answers, recipe − seed model: nearer 0 moved less; least drift first)", command,
                   render(frame, fmt) if rows else "No recipe has a drift score paired with a seed-model run.\n")


def summary_text(board: Leaderboard, study: str, order: list[str] | None = None,
                 leaderboard: str | None = None) -> str:
    """What `forgetbench demo` prints once its study has run."""
    return "\n".join(section.text() for section in summary_sections(board, study, "table", order, leaderboard))


def study_order(study) -> list[str]:
    """The run labels of a study config in its plan's order (baseline, then recipes and sweep points)."""
    from harness.study import plan

    return list(dict.fromkeys(planned.label for planned in plan(study)))


# -- publish -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Regenerate:
    """How the published results are made again: the study file (None: not known to publish), the
    leaderboard file, the --leaderboard option the read commands need (None: their default file), and
    the publish command itself. `run` always names the file: without it, it would use the study's
    `leaderboard` setting."""

    study_file: str | None
    board_path: str
    leaderboard: str | None
    publish_command: str

    def commands(self) -> list[str]:
        study = self.study_file or "STUDY.yaml"
        return [_command("run", study, leaderboard=self.board_path), self.publish_command]


def publish(board: Leaderboard, study: str, out: Path, regenerate: Regenerate,
            order: list[str] | None = None, notes: str | None = None) -> list[Path]:
    """Write the study's results into `out` (see the module docstring); returns the files written.
    Everything is written into a temporary sibling folder first, which replaces `out` only once
    complete; `out` may be absent, empty or an earlier publish's folder, never anything else. `notes`
    (Markdown of the author's own) goes into the README under "Findings"."""
    from leaderboard.report import report_figures, report_html, write_figure_pngs

    runs = board.runs(study)
    if runs.empty:
        known = ", ".join(sorted(set(board.runs().study))) or "none"
        raise ConfigError(f"--study {study}: no runs of that study in {board.path} (studies there: {known})")
    _check_replaceable(out)
    leaderboard = regenerate.leaderboard
    table, figures, after = report_figures(board, study)  # the study's paper table, for every file below
    commit = source_commit()
    files: dict[str, str] = {
        "paper.md": _paper_markdown(table, study, leaderboard),
        "comparisons.md": _comparisons_markdown(board, study, table, order, leaderboard),
        "report.html": report_html(board, study, table, figures, after),
        "versions.md": _versions_markdown(runs, commit),
    }
    with swap_in_folder(out) as tmp:
        pngs = write_figure_pngs(figures, tmp / "figures")
        listing = [*files, "README.md", *(f"figures/{p.name}" for p in pngs)]
        files["README.md"] = _readme(board, study, table, runs, regenerate, listing, order, notes, commit)
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
    return [out / name for name in sorted(listing)]


def _check_replaceable(out: Path) -> None:
    """`out` is absent, an empty folder or a folder an earlier publish wrote (its README's first line)."""
    if not out.is_dir() or not any(out.iterdir()):
        return
    readme = out / "README.md"
    try:
        first = readme.read_text(encoding="utf-8").splitlines()[:1]
    except (OSError, UnicodeDecodeError):
        first = []
    if first != [MARKER]:
        raise ConfigError(f"--out {out}: holds files that `forgetbench publish` did not write; "
                          "name a new or empty folder (publish replaces the whole folder)")


def _paper_markdown(table: pd.DataFrame, study: str, leaderboard: str | None) -> str:
    section = paper_section(table, study, "markdown", leaderboard)
    return (f"# Paper view: study {study}\n\n{section.markdown()}\n"
            "Primary metrics, mean ± std over seeds. `*_lb`: Open LLM Leaderboard v2 scores (points); `avg(...)`: "
            "their average; `avg_delta`: that average minus the seed model's (negative = forgetting); "
            "`domain_gain`: the domain score minus the seed model's. `-`: not measured.\n")


def _comparisons_markdown(board: Leaderboard, study: str, table: pd.DataFrame, order: list[str] | None,
                          leaderboard: str | None) -> str:
    recipes = [r for r in table.recipe if r != BASELINE_RECIPE]
    rank = {recipe: i for i, recipe in enumerate(order or [])}
    recipes.sort(key=lambda r: rank.get(r, len(rank)))  # stable: the paper view's order after the study's
    parts = [f"# Paired comparisons against the seed model: study {study}\n",
             "Per recipe and benchmark, as `forgetbench compare` reports them: A is the seed model (baseline), "
             "B the recipe (all its seeds: each example's value is the mean over the seeds); `diff` = mean "
             "per-example B − A on the examples both were evaluated on, `ci_low`/`ci_high` its 95 % paired "
             "bootstrap interval (10 000 resamples of example pairs, seed 0), `p_value` two-sided against no "
             "difference, `p_holm` Holm-corrected over the benchmarks of that comparison, `significant`: "
             "p_holm < 0.05.\n"]
    for recipe in recipes:
        parts += [s.markdown() for s in comparison_sections(board, study, recipe, "markdown", leaderboard)]
    return "\n".join(parts)


def _versions_markdown(runs: pd.DataFrame, commit: str) -> str:
    from harness.provenance import PACKAGES, package_versions

    now = package_versions((*PACKAGES, *PUBLISH_PACKAGES))
    recorded: dict[str, set[str]] = {}
    for text in runs.package_versions:
        for name, version in (json.loads(text or "{}") or {}).items():
            recorded.setdefault(name, set()).add(str(version))
    names = list(dict.fromkeys([*now, *sorted(recorded)]))
    rows = pd.DataFrame({"package": names, "publishing environment": [now.get(n, "-") for n in names],
                         "recorded with the runs": [", ".join(sorted(recorded[n])) if n in recorded else "-"
                                                    for n in names]})
    return ("# Versions\n\n"
            f"forgetbench source: {commit}\n\n"
            "Python and package versions where these files were written (`forgetbench publish`), and as every "
            "run recorded them when it finished (`runs.package_versions`; several values: runs finished "
            "under different versions).\n\n" + render(rows, "markdown"))


def source_commit() -> str:
    """The git commit of the forgetbench source tree these modules run from (`+ uncommitted changes`
    where tracked files differ from it), or a sentence saying it is not a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=20, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout (an installed package)"
    return f"git commit {commit}" + (" + uncommitted changes" if dirty else "")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def wall_time(runs: pd.DataFrame) -> str:
    """The study's wall time as its runs recorded it: first start to last finish, and the sum of the
    runs' own times."""
    started = pd.to_datetime(runs.started_at, utc=True, errors="coerce", format="ISO8601")
    finished = pd.to_datetime(runs.finished_at, utc=True, errors="coerce", format="ISO8601")
    if started.isna().all() or finished.isna().all():
        return "not recorded"
    span = (finished.max() - started.min()).total_seconds()
    total = (finished - started).dt.total_seconds().sum()
    return (f"{_duration(span)} from the first run's start to the last run's finish ({_duration(total)} "
            f"summed over the {len(runs)} runs, each timed when its results were first produced; the span "
            f"includes any pause between sessions)")


def _readme(board: Leaderboard, study: str, table: pd.DataFrame, runs: pd.DataFrame, regenerate: Regenerate,
            listing: list[str], order: list[str] | None, notes: str | None, commit: str) -> str:
    what = {"paper.md": "the paper view: one row per recipe, mean ± std over seeds",
            "comparisons.md": "every recipe against the seed model per benchmark: difference, 95 % paired "
                              "bootstrap CI, p-values (`forgetbench compare`)",
            "report.html": "the HTML report (`forgetbench report`): the table and interactive charts, offline",
            "versions.md": "Python and package versions, the forgetbench source's git commit",
            "README.md": "this file"}
    files = "\n".join(f"| `{name}` | {what.get(name, 'a chart of the report as PNG (`forgetbench report --figures`)')} |"
                      for name in listing)
    tuned = runs[runs.recipe != BASELINE_RECIPE]
    seeds = ", ".join(str(s) for s in sorted(set(tuned.seed))) or "-"
    base_models = ", ".join(sorted(set(runs.base_model)))
    study_note = ("\nThe data mirror as when the study ran: `--data-dir`, the study's `data_dir` or "
                  "`FORGETBENCH_DATA_DIR`." + ("" if regenerate.study_file else
                  f" `STUDY.yaml`: the study file that defines study `{study}` (not given to publish).") + "\n")
    summary = "\n".join(s.markdown(3) for s in summary_sections(board, study, "markdown", order, regenerate.leaderboard,
                                                                  table))
    return (f"{MARKER}\n# Results of study `{study}`\n\n"
            f"Published {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC from the leaderboard "
            f"`{board.path.name}` by forgetbench ({commit}).\n\n"
            "## Regenerate\n\n```bash\n" + "\n".join(regenerate.commands()) + "\n```\n" + study_note +
            f"\n## Files\n\n| file | what it holds |\n| --- | --- |\n{files}\n\n"
            f"## The study\n\nBase model {base_models}; fine-tuned runs: {len(tuned)} ({tuned.recipe.nunique()} "
            f"recipes × seeds {seeds}); seed-model runs recorded under this study: {len(runs) - len(tuned)}. "
            f"Wall time: {wall_time(runs)}.\n\n"
            + (f"## Findings\n\n{notes.strip()}\n\n" if notes and notes.strip() else "") +
            "## Summary\n\nThe paper view, then the seed model against `none` and against the recipe that forgot "
            f"least (what `forgetbench demo` prints at its end).\n\n{summary}")
