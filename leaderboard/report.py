"""A self-contained HTML report: the paper table and, as interactive Vega-Lite charts,

- the per-benchmark difference of every recipe to the seed model (baseline) with its 95 % paired
  bootstrap interval and Holm-corrected significance, exactly as `forgetbench compare` computes them;
- domain gain against the change of the leaderboard average (avg_delta, negative = forgetting);
- "why did it forget?": each shift measure against avg_delta, with the correlations that are defined;
- the task-category profiles of the recipes' rehearsal data side by side;
- per sweep, each benchmark and shift measure against the swept value.

The Vega, Vega-Lite and vega-embed JavaScript is inlined (leaderboard/charts.py), so the file opens
offline; hovering a mark shows its exact numbers and n. A figure with nothing to draw (one run, no
baseline, no shift measures, no profiles) is replaced by a sentence saying why. `report_figures`
gives the same figures for `write_figure_pngs`, one PNG per chart. Text from the leaderboard is
html-escaped in the page and inert data in the charts.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from html import escape
from pathlib import Path

import pandas as pd

from harness.benchmark import registry as benchmark_registry
from harness.errors import ConfigError
from harness.task_categories import CATEGORIES
from leaderboard.category_profiles import recipe_profiles
from leaderboard.charts import (
    Figure,
    delta_chart,
    figure_png,
    gain_chart,
    javascript_bundle,
    profile_chart,
    recipe_scale,
    shift_chart,
)
from leaderboard.compare import compare
from leaderboard.store import BASELINE_RECIPE, Leaderboard
from leaderboard.sweep_figures import dose_figures, sweep_figures
from leaderboard.views import (
    FORGETTING,
    averaged,
    baseline_pairing,
    benchmark_order,
    paper_display,
    paper_table,
    per_run,
    shift_columns,
    shift_correlations,
)

# In every report's head: `report --out` overwrites a file only when it holds this (an earlier report).
REPORT_MARKER = '<meta name="generator" content="forgetbench report">'

_CSS = """
body{font-family:"DejaVu Sans","Liberation Sans",Arial,sans-serif;margin:24px;color:#222;background:#fff;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 24px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3;text-align:left}td{white-space:nowrap}td.text{text-align:left}.wide{overflow-x:auto}.note{color:#555;font-size:90%;max-width:70em}
.chart{margin:8px 0 28px}
"""
_EMBED = """
window.forgetbenchCharts = Promise.all(Array.from(document.querySelectorAll("script.chart-spec"), function (s) {
  return vegaEmbed("#" + s.dataset.chart, JSON.parse(s.textContent), {actions: false, renderer: "svg"})
    .then(function (result) { document.getElementById(s.dataset.chart).dataset.rendered = "true"; return result.view; });
}));
"""


class _Labels:
    """Display labels of (study, recipe) pairs, in first-seen order: `study/recipe` when the report
    spans several studies; the order fixes each recipe's colour in every chart."""

    def __init__(self, studies: int):
        self.prefix = studies > 1
        self.order: list[str] = []

    def __call__(self, study: str, recipe: str) -> str:
        label = f"{study}/{recipe}" if self.prefix else str(recipe)
        if label not in self.order:
            self.order.append(label)
        return label


def _e(value) -> str:
    return escape(str(value), quote=True)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _table_html(display: pd.DataFrame, table_id: str) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in display.columns)
    body = []
    for row in display.itertuples(index=False, name=None):
        cells = "".join(
            f'<td class="{"num" if isinstance(v, (int, float)) and not isinstance(v, bool) else "text"}">'
            f'{"" if _missing(v) else _e(f"{v:.4f}" if isinstance(v, float) else v)}</td>'
            for v in row)
        body.append(f"<tr>{cells}</tr>")
    return (f'<div class="wide"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


# -- the figures' data -------------------------------------------------------------------------------

def paired_deltas(board: Leaderboard, study: str | None, benchmarks: list[str] | None,
                  label: _Labels) -> tuple[pd.DataFrame, list[str]]:
    """`compare(baseline, recipe)` for every fine-tuned recipe (all its seeds; per run where its runs
    pair with different baselines), with a `label` column; and one line per recipe not compared."""
    pairing = baseline_pairing(board, study)
    frames, skipped = [], []
    for (name, recipe), runs in pairing.groupby(["study", "recipe"], sort=True):
        shown = label(name, recipe)
        if runs.baseline_run_id.isna().any():
            skipped.append(f"{shown}: no seed-model run with the same base model and evaluation settings")
            continue
        baselines = runs.baseline_run_id.unique()
        sides = ([(baselines[0], recipe, shown)] if len(baselines) == 1 else
                 [(r.baseline_run_id, r.run_id, label(name, f"{recipe} (seed {r.seed})")) for r in runs.itertuples()])
        for baseline, side, side_label in sides:
            try:
                result = compare(board, baseline, side, study=name, benchmarks=benchmarks)
            except ConfigError as error:
                skipped.append(f"{side_label}: {str(error).removeprefix('RUN_A/RUN_B: ')}")
                continue
            frames.append(result.assign(study=name, recipe=recipe, label=side_label))
    if not frames:
        return pd.DataFrame(), skipped
    deltas = pd.concat(frames, ignore_index=True)
    order = benchmark_order(deltas.benchmark.unique())
    deltas["_order"] = [order.index(b) for b in deltas.benchmark]
    return deltas.sort_values(["_order", "label"]).drop(columns="_order").reset_index(drop=True), skipped


def _delta_figure(board, study, benchmarks, label) -> Figure:
    deltas, skipped = paired_deltas(board, study, benchmarks, label)
    unpaired = (" Not compared: " + "; ".join(skipped) + ".") if skipped else ""
    scored = {b for b in board.deltas(study).benchmark if not benchmarks or b in benchmarks}
    unplotted = benchmark_order(scored - set(deltas.benchmark if not deltas.empty else []))
    if unplotted and not deltas.empty:
        unpaired += (f" No paired per-example results under the primary metric for {', '.join(unplotted)}, so no "
                     "interval to draw (their scores are in the table).")
    if deltas.empty:
        why = ("Only the seed model is on the leaderboard: fine-tune a recipe to measure forgetting."
               if not skipped else "No recipe could be paired with the seed model.")
        return Figure("deltas", "Difference to the seed model per benchmark", why + unpaired)
    note = ("Per benchmark, each recipe's mean per-example difference to the seed model (recipe − baseline; "
            "below 0 = forgetting, for the domain a gain above 0) on the examples both were evaluated on, with "
            "its 95 % paired bootstrap interval (10 000 resamples; a recipe with several seeds contributes "
            "its per-example mean), exactly as `forgetbench compare baseline RECIPE` reports it. Filled points: "
            "Holm-corrected p < 0.05 over the benchmarks of that comparison. Hover for the numbers and n."
            + unpaired)
    title = "Difference to the seed model (95% paired bootstrap CI)"
    return Figure("deltas", title, note, lambda colours: delta_chart(deltas, colours, title))


def _gain_figure(table: pd.DataFrame, label) -> Figure:
    title = "Domain gain against forgetting"
    tuned = table[table.recipe != BASELINE_RECIPE]
    if tuned.empty:
        return Figure("gain-vs-forgetting", title,
                      "Only the seed model is on the leaderboard: there is no gain or forgetting to plot.")
    if FORGETTING not in tuned.columns:
        return Figure("gain-vs-forgetting", title,
                      f"No general benchmark ({', '.join(averaged(benchmark_registry()))}) was evaluated, so there is no average "
                      f"forgetting ({FORGETTING}) to plot the domain gain against.")
    if "domain_gain" not in tuned.columns:
        return Figure("gain-vs-forgetting", title,
                      "The domain task was not evaluated, so there is no domain gain to plot.")
    points = tuned[["study", "recipe", "runs", FORGETTING, f"{FORGETTING}_std", "domain_gain", "domain_gain_std"]]
    points = points.dropna(subset=[FORGETTING, "domain_gain"])
    if points.empty:
        return Figure("gain-vs-forgetting", title,
                      "No fine-tuned recipe has a seed-model run evaluated with the same settings, so neither "
                      "gain nor forgetting can be measured.")
    points = points.assign(label=[label(s, r) for s, r in zip(points.study, points.recipe)])
    return Figure("gain-vs-forgetting", title,
                  f"One point per recipe: x = {FORGETTING}, the change of the Open LLM Leaderboard average against "
                  "the seed model in leaderboard points (left = forgetting); y = the domain score's change (up = "
                  "learned). The seed model sits where the grey rules cross. Bars: ± standard deviation over "
                  "seeds (recipes with several). Hover for the numbers and n.",
                  lambda colours: gain_chart(points, colours, title))


def _shift_figure(board, study, benchmarks, label) -> tuple[Figure, str]:
    title = "Shift measures against forgetting"
    runs = per_run(board, study, benchmarks)
    runs = runs[runs.recipe != BASELINE_RECIPE] if not runs.empty else runs
    if runs.empty:
        return Figure("shift-vs-forgetting", title,
                      "Only the seed model is on the leaderboard: no fine-tuned run has moved away from it."), ""
    measures = [m for m in shift_columns(runs) if runs[m].notna().any()]
    if not measures:
        return Figure("shift-vs-forgetting", title,
                      "No shift measures are recorded for the fine-tuned runs (they need `diagnostics` enabled, "
                      "the default)."), ""
    if FORGETTING not in runs.columns or runs[FORGETTING].isna().all():
        return Figure("shift-vs-forgetting", title,
                      f"Shift measures are recorded, but no run has an average forgetting ({FORGETTING}) to plot "
                      "them against: that needs a general benchmark and a seed-model run with the same "
                      "evaluation settings."), ""
    long = runs.melt(id_vars=["run_id", "study", "recipe", "seed", FORGETTING], value_vars=measures,
                     var_name="measure", value_name="value").dropna(subset=["value", FORGETTING])
    long = long.assign(label=[label(s, r) for s, r in zip(long.study, long.recipe)])
    note = ("One point per fine-tuned run: x = how far it moved from the seed model (output similarities "
            "output_bleu4/rougeL/cosine, weight change param_l2/param_rel, the seed's NLL of the training mix "
            f"train_nll), y = {FORGETTING} in leaderboard points (down = forgetting). Hover for the run and numbers.")
    return (Figure("shift-vs-forgetting", title, note, lambda colours: shift_chart(long, colours, title)),
            _correlation_html(shift_correlations(board, study)))


def _correlation_html(correlations: pd.DataFrame) -> str:
    defined = correlations.dropna(subset=["pearson"]) if not correlations.empty else correlations
    undefined = sorted(set(correlations.measure) - set(defined.measure)) if not correlations.empty else []
    parts = []
    if not defined.empty:
        head = "".join(f"<th>{_e(c)}</th>" for c in ("study", "measure", "n", "Pearson r", "Spearman ρ"))
        body = "".join(
            f'<tr><td class="text">{_e(r.study)}</td><td class="text">{_e(r.measure)}</td><td>{int(r.n)}</td>'
            f'<td>{r.pearson:+.3f}</td><td>{"" if _missing(r.spearman) else f"{r.spearman:+.3f}"}</td></tr>'
            for r in defined.itertuples())
        parts.append(
            f'<table id="correlation-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f'<p class="note">Across the fine-tuned runs of each study: correlation between each shift measure and '
            f'{FORGETTING}. A negative r for param_l2 or train_nll, or a positive one for the output similarities, '
            f'says the runs that moved further from the seed model forgot more.</p>')
    if undefined:
        parts.append(f'<p class="note">No correlation for {_e(", ".join(undefined))}: it needs at least three '
                     f'runs with both numbers and a measure that varies.</p>')
    return "".join(parts)


def _profile_figure(board, study, label) -> Figure:
    title = "Task categories of the rehearsal data"
    studies = [study] if study else sorted(board.runs().study.unique())
    rows = []
    for name in studies:
        for recipe, found in recipe_profiles(board, name).items():
            shown = label(name, recipe)
            rows += [{"label": shown, "category": c, "count": found["counts"][c], "n": found["n"],
                      "runs": found["runs"], "share": found["counts"][c] / found["n"]} for c in CATEGORIES]
    if not rows:
        return Figure("profiles", title,
                      "No run has a category profile: only recipes that add rehearsal rows (public sets, "
                      "reconstructed data, compose) record one.")
    shares = pd.DataFrame(rows)
    return Figure("profiles", title,
                  "The share of each recipe's rehearsal rows per Magpie task category, as the seed model classifies "
                  "them zero-shot (summed over the recipe's seeds). Hover for counts and n; "
                  "`forgetbench leaderboard profile` prints them with total variation distances.",
                  lambda colours: profile_chart(shares, colours, list(CATEGORIES), title))


def report_figures(board: Leaderboard, study: str | None = None,
                   benchmarks: list[str] | None = None) -> tuple[pd.DataFrame, list[Figure], dict[str, str]]:
    """The paper table, the report's figures in order, and extra HTML to show after a figure (by name)."""
    table = paper_table(board, study, benchmarks)
    label = _Labels(table.study.nunique() if not table.empty else 0)
    for row in table[table.recipe != BASELINE_RECIPE].itertuples():
        label(row.study, row.recipe)
    shift_figure, correlations = _shift_figure(board, study, benchmarks, label)
    figures = [_delta_figure(board, study, benchmarks, label), _gain_figure(table, label), shift_figure,
               _profile_figure(board, study, label), *dose_figures(board, study, label),
               *sweep_figures(board, study, table, label)]
    colours = recipe_scale(label.order)  # every recipe named by any figure: one colour each, everywhere
    for figure in figures:
        figure.chart = figure.draw(colours) if figure.draw else None
    return table, figures, {shift_figure.name: correlations}


# -- output -----------------------------------------------------------------------------------------

def _spec_json(figure: Figure) -> str:
    """The figure's spec as JSON safe inside a <script> element (no `<`, `>` or `&` left)."""
    text = json.dumps(figure.spec(), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _figure_html(figure: Figure, heading: str, after: str) -> str:
    parts = [f'<section class="figure" id="figure-{_e(figure.name)}"><h2>{_e(heading)}</h2>',
             f'<p class="note">{_e(figure.note)}</p>']
    if figure.chart is not None:
        chart_id = f"chart-{figure.name}"
        parts.append(f'<div class="chart" id="{_e(chart_id)}" role="img" aria-label="{_e(figure.title)}"></div>'
                     f'<script type="application/json" class="chart-spec" data-chart="{_e(chart_id)}">'
                     f"{_spec_json(figure)}</script>")
    parts.append(after + "</section>")
    return "".join(parts)


HEADINGS = {"deltas": "Forgetting: difference to the seed model per benchmark",
            "gain-vs-forgetting": "Domain gain against average forgetting",
            "shift-vs-forgetting": "Why did it forget? Shift measures against forgetting",
            "profiles": "Rehearsal data: task categories"}


def build_report(board: Leaderboard, study: str | None = None, benchmarks: list[str] | None = None) -> str:
    """The whole report as one HTML string (scripts inline, no external resources)."""
    return report_html(board, study, *report_figures(board, study, benchmarks))


def report_html(board: Leaderboard, study: str | None, table: pd.DataFrame, figures: list[Figure],
                after: dict[str, str]) -> str:
    """The report page from `report_figures`' results."""
    display = paper_display(table)
    sections = []
    for figure in figures:
        if figure.name.startswith("sweep-") and not any(s.startswith("<h2>Sweeps") for s in sections):
            sections.append("<h2>Sweeps</h2>")
        sections.append(_figure_html(figure, HEADINGS.get(figure.name, figure.title), after.get(figure.name, "")))
    charts = any(f.chart is not None for f in figures)
    scripts = (f"<script>{javascript_bundle()}</script>", f"<script>{_EMBED}</script>") if charts else ("", "")
    title = f"forgetbench report — {study}" if study else "forgetbench report"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{REPORT_MARKER}<title>{_e(title)}</title>'
        f"<style>{_CSS}</style>{scripts[0]}</head><body><h1>{_e(title)}</h1>"
        f'<p class="note">Leaderboard {_e(board.path.name)}. Values are primary metrics, mean ± std over '
        f"seeds; avg(...) averages the general benchmarks named as Open LLM Leaderboard scores; avg_delta and "
        f"domain_gain are differences to the seed model (baseline) of the same base model and evaluation "
        f"settings. An empty cell: not measured.</p>"
        f"<h2>Leaderboard</h2>{_table_html(display, 'leaderboard-table')}"
        f"{''.join(sections)}{scripts[1]}</body></html>\n"
    )


def write_figure_pngs(figures: list[Figure], folder: Path) -> list[Path]:
    """One PNG per drawn figure, `<folder>/<name>.png`; every picture is rendered before any is
    written, and each file is written under a temporary name and renamed into place."""
    rendered = [(Path(folder) / f"{f.name}.png", figure_png(f)) for f in figures if f.chart is not None]
    Path(folder).mkdir(parents=True, exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    for path, data in rendered:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~umask)  # as open() would create it (mkstemp makes it private)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return [path for path, _ in rendered]
