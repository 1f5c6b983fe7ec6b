"""A self-contained HTML report: the paper table, a bar chart of forgetting deltas per benchmark and
recipe, a scatter of domain gain against average forgetting, and — where runs carry them — "why did
it forget?": the correlation of each shift measure with the average forgetting, and for each sweep
one small line chart per benchmark and shift measure against the swept value (a line per recipe).
Charts are inline SVG drawn here (no plotting dependency, no scripts, no external resources); every
text from the file is html-escaped."""
from __future__ import annotations

import json
import math
from html import escape

import pandas as pd

from leaderboard.store import BASELINE_RECIPE, Leaderboard
from leaderboard.views import (
    DOMAIN,
    FORGETTING,
    benchmark_order,
    paper_display,
    paper_table,
    shift_columns,
    shift_correlations,
    sweep_points,
)

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac"]
_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
table{border-collapse:collapse;margin:8px 0 24px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td.text{text-align:left}svg{border:1px solid #ddd;background:#fff;margin-bottom:24px}
.note{color:#555;font-size:90%}.plots{display:flex;flex-wrap:wrap;gap:8px}.plots svg{margin-bottom:8px}
"""


def _e(value) -> str:
    return escape(str(value), quote=True)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _label(row) -> str:
    return f"{row.study}/{row.recipe}" if row.study_count > 1 else str(row.recipe)


def _table_html(display: pd.DataFrame) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in display.columns)
    body = []
    for row in display.itertuples(index=False, name=None):
        cells = "".join(
            f'<td class="{"num" if isinstance(v, (int, float)) and not isinstance(v, bool) else "text"}">'
            f'{"-" if _missing(v) else _e(f"{v:.4f}" if isinstance(v, float) else v)}</td>'
            for v in row)
        body.append(f"<tr>{cells}</tr>")
    return (f'<table id="leaderboard-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _scale(lo: float, hi: float, a: float, b: float):
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    return lambda v: a + (v - lo) / (hi - lo) * (b - a)


def _bar_chart(deltas: pd.DataFrame) -> str:
    """Grouped bars: x = benchmark, one bar per recipe, y = mean delta to the baseline."""
    if deltas.empty:
        return '<p class="note">No deltas to plot (no run has a matching baseline).</p>'
    benchmarks = list(dict.fromkeys(deltas.benchmark))
    recipes = list(dict.fromkeys(deltas.label))
    width, height, left, top, bottom = 1000, 360, 70, 20, 60
    lo, hi = min(0.0, deltas.delta.min()), max(0.0, deltas.delta.max())
    y = _scale(lo, hi, height - bottom, top)
    group = (width - left - 20) / len(benchmarks)
    bar = group * 0.8 / len(recipes)
    parts = [f'<svg id="bar-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="forgetting deltas per benchmark and recipe">']
    for tick in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" font-size="11" text-anchor="end">{tick:+.3f}</text>')
    parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#333"/>')
    for i, benchmark in enumerate(benchmarks):
        x0 = left + i * group + group * 0.1
        for j, recipe in enumerate(recipes):
            hit = deltas[(deltas.benchmark == benchmark) & (deltas.label == recipe)]
            if hit.empty or _missing(hit.delta.iloc[0]):
                continue
            value = float(hit.delta.iloc[0])
            y_top, y_bottom = sorted((y(value), y(0)))
            parts.append(f'<rect x="{x0 + j * bar:.1f}" y="{y_top:.1f}" width="{bar * 0.9:.1f}" '
                         f'height="{max(y_bottom - y_top, 0.5):.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                         f'<title>{_e(recipe)} on {_e(benchmark)}: {value:+.4f}</title></rect>')
        parts.append(f'<text x="{left + (i + 0.5) * group:.1f}" y="{height - bottom + 18}" font-size="12" '
                     f'text-anchor="middle">{_e(benchmark)}</text>')
    x = left
    for j, recipe in enumerate(recipes):
        parts.append(f'<rect x="{x}" y="{height - 22}" width="12" height="12" fill="{PALETTE[j % len(PALETTE)]}"/>'
                     f'<text x="{x + 16}" y="{height - 12}" font-size="12">{_e(recipe)}</text>')
        x += 40 + 7 * len(str(recipe))
    parts.append("</svg>")
    return "".join(parts)


def _scatter(points: pd.DataFrame) -> str:
    """x = average forgetting (avg_delta), y = domain gain, one labelled point per recipe."""
    if points.empty:
        return '<p class="note">No recipe has both an average delta and a domain gain to plot.</p>'
    width, height, margin = 700, 420, 70
    x = _scale(min(0.0, points.x.min()), max(0.0, points.x.max()), margin, width - margin)
    y = _scale(min(0.0, points.y.min()), max(0.0, points.y.max()), height - margin, margin / 2)
    parts = [f'<svg id="scatter" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="domain gain against average forgetting">',
             f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{margin / 2}" y2="{height - margin}" stroke="#999"/>',
             f'<line x1="{margin}" x2="{width - margin}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#999"/>',
             f'<text x="{width / 2}" y="{height - 20}" font-size="12" text-anchor="middle">'
             f'change of the leaderboard average, points (negative = forgetting)</text>',
             f'<text x="16" y="{height / 2}" font-size="12" text-anchor="middle" '
             f'transform="rotate(-90 16 {height / 2})">domain gain</text>']
    for j, p in enumerate(points.itertuples()):
        colour = PALETTE[j % len(PALETTE)]
        parts.append(f'<circle cx="{x(p.x):.1f}" cy="{y(p.y):.1f}" r="6" fill="{colour}">'
                     f'<title>{_e(p.label)}: avg delta {p.x:+.4f}, domain gain {p.y:+.4f}</title></circle>'
                     f'<text x="{x(p.x) + (-9 if x(p.x) > width / 2 else 9):.1f}" y="{y(p.y) - 8:.1f}" font-size="12" '
                     f'text-anchor="{"end" if x(p.x) > width / 2 else "start"}">{_e(p.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _correlation_html(correlations: pd.DataFrame) -> str:
    if correlations.empty:
        return ('<p class="note">No shift measures to correlate (they need diagnostics on, fine-tuned runs and '
                'a general benchmark for the average forgetting).</p>')
    head = "".join(f"<th>{_e(c)}</th>" for c in ("study", "measure", "n", "Pearson r", "Spearman ρ"))
    body = "".join(
        f'<tr><td class="text">{_e(r.study)}</td><td class="text">{_e(r.measure)}</td><td>{int(r.n)}</td>'
        f'<td>{"-" if _missing(r.pearson) else f"{r.pearson:+.3f}"}</td>'
        f'<td>{"-" if _missing(r.spearman) else f"{r.spearman:+.3f}"}</td></tr>'
        for r in correlations.itertuples())
    return (f'<table id="correlation-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f'<p class="note">Across the fine-tuned runs of each study: correlation between each shift measure '
            f'and {FORGETTING} (change of the Open LLM Leaderboard average against the seed model, in leaderboard '
            f'points; negative = forgetting). A negative r for '
            f'param_l2 or train_nll, or a positive one for the output similarities, says the runs that moved '
            f'further from the seed model forgot more. Needs at least three runs.</p>')


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _tick(value: float, span: float) -> str:
    """A y tick with as many decimals as the chart's span needs to tell its ticks apart."""
    decimals = 3 if span <= 0 else min(max(2 - math.floor(math.log10(span)), 0), 8)
    return f"{value:.{decimals}f}"


def _line_chart(chart_id: str, title: str, parameter: str, lines: dict[str, list[tuple]],
                reference: float | None) -> str:
    """Small line chart: x = swept value (numeric scale, or categories in sweep order), y = `title`,
    one line per recipe; a dashed line at the baseline's value where there is one."""
    width, height, left, right, top, bottom = 340, 230, 56, 12, 26, 58
    xs = list(dict.fromkeys(x for points in lines.values() for x, _ in points))
    numeric = _numeric(xs)
    if numeric:
        xs = sorted(xs)
        x = _scale(min(xs), max(xs), left + 10, width - right - 10)
    else:
        x = lambda v: _scale(0, max(len(xs) - 1, 1), left + 10, width - right - 10)(xs.index(v))  # noqa: E731
    ys = [y for points in lines.values() for _, y in points] + ([reference] if reference is not None else [])
    y = _scale(min(ys), max(ys), height - bottom, top)
    parts = [f'<svg id="{_e(chart_id)}" class="sweep-plot" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" role="img" aria-label="{_e(title)} against {_e(parameter)}">',
             f'<text x="{width / 2}" y="16" font-size="12" text-anchor="middle" font-weight="bold">{_e(title)}</text>',
             f'<line x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}" stroke="#999"/>',
             f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}" stroke="#999"/>']
    lo, hi = min(ys), max(ys)
    for tick in dict.fromkeys((lo, (lo + hi) / 2, hi)):
        parts.append(f'<text x="{left - 4}" y="{y(tick) + 4:.1f}" font-size="10" text-anchor="end">'
                     f'{_tick(tick, hi - lo)}</text>')
    for value in xs:
        parts.append(f'<text x="{x(value):.1f}" y="{height - bottom + 14}" font-size="10" text-anchor="middle">'
                     f'{_e(value)}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - bottom + 28}" font-size="11" '
                 f'text-anchor="middle">{_e(parameter)}</text>')
    if reference is not None:
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(reference):.1f}" y2="{y(reference):.1f}" '
                     f'stroke="#555" stroke-dasharray="4 3"><title>baseline: {reference:.4g}</title></line>')
    for j, (label, points) in enumerate(lines.items()):
        colour = PALETTE[j % len(PALETTE)]
        points = sorted(points, key=lambda p: xs.index(p[0]))
        path = " ".join(f"{x(px):.1f},{y(py):.1f}" for px, py in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts += [f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="3.5" fill="{colour}"><title>{_e(label)} at '
                  f'{_e(parameter)}={_e(px)}: {py:.4g}</title></circle>' for px, py in points]
    legend_x = left
    for j, label in enumerate(lines):
        parts.append(f'<rect x="{legend_x}" y="{height - 16}" width="10" height="10" '
                     f'fill="{PALETTE[j % len(PALETTE)]}"/>'
                     f'<text x="{legend_x + 13}" y="{height - 7}" font-size="10">{_e(label)}</text>')
        legend_x += 24 + 6 * len(str(label))
    parts.append("</svg>")
    return "".join(parts)


def _sweep_html(points: pd.DataFrame, baselines: dict[tuple[str, str], float]) -> str:
    """One block per (study, swept parameter): a chart per benchmark, avg_delta and shift measure."""
    if points.empty:
        return ""
    blocks = []
    for (study, parameter), sweep in points.groupby(["study", "parameter"], sort=True):
        skip = {"study", "parameter", "value", "recipe", "seed", "run_id"}
        benchmarks = benchmark_order([c for c in sweep.columns if c not in skip and not c.startswith("avg(")
                                      and c not in (FORGETTING, "domain_gain") and c not in shift_columns(sweep)])
        charts = []
        for column in [*benchmarks, *([FORGETTING] if FORGETTING in sweep.columns else []), *shift_columns(sweep)]:
            data = sweep[["recipe", "value", column]].dropna()
            if data.empty:
                continue
            data = data.assign(key=[json.dumps(v) for v in data.value])
            means = data.groupby(["recipe", "key"], sort=False)[column].mean()
            lines: dict[str, list[tuple]] = {}
            for (recipe, key), value in means.items():
                lines.setdefault(str(recipe), []).append((json.loads(key), float(value)))
            chart_id = f"sweep-{len(blocks)}-{len(charts)}"
            charts.append(_line_chart(chart_id, column, parameter, lines, baselines.get((study, column))))
        blocks.append(f'<h3>{_e(study)}: sweep over {_e(parameter)}</h3>'
                      f'<p class="note">Mean over seeds at each swept value, one line per recipe; the dashed line '
                      f'is the seed model (baseline).</p><div class="plots">{"".join(charts)}</div>')
    return "<h2>Sweeps</h2>" + "".join(blocks)


def build_report(board: Leaderboard, study: str | None = None, benchmarks: list[str] | None = None) -> str:
    """The whole report as one HTML string."""
    table = paper_table(board, study, benchmarks)
    table["study_count"] = table.study.nunique() if not table.empty else 0
    deltas = board.deltas(study)
    if benchmarks:
        deltas = deltas[deltas.benchmark.isin(benchmarks)]
    deltas = deltas[deltas.benchmark != DOMAIN]
    multi = deltas.study.nunique() > 1
    deltas = deltas.assign(label=[f"{s}/{r}" if multi else str(r) for s, r in zip(deltas.study, deltas.recipe)])
    bars = deltas.groupby(["benchmark", "label"], sort=True, as_index=False).delta.mean()
    recipes = table[table.recipe != BASELINE_RECIPE]
    if {"avg_delta", "domain_gain"} <= set(recipes.columns):
        points = pd.DataFrame({"label": [_label(r) for r in recipes.itertuples()],
                               "x": recipes.avg_delta, "y": recipes.domain_gain}).dropna()
    else:
        points = pd.DataFrame(columns=["label", "x", "y"])
    display = paper_display(table.drop(columns="study_count"))
    baselines = {(row["study"], column): value for row in table[table.recipe == BASELINE_RECIPE].to_dict("records")
                 for column, value in row.items() if isinstance(value, float) and not math.isnan(value)}
    sweeps = _sweep_html(sweep_points(board, study), baselines)
    why = ""
    if not board.shift(study).empty:
        why = ("<h2>Why did it forget? Shift measures against forgetting</h2>"
               + _correlation_html(shift_correlations(board, study)))
    title = f"forgetbench report — {study}" if study else "forgetbench report"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>"
        f'<p class="note">Leaderboard {_e(board.path.name)}. Values are primary metrics, mean ± std over '
        f"seeds; avg(...) averages the general benchmarks named; avg_delta and domain_gain are differences "
        f"to the baseline of the same base model and evaluation settings.</p>"
        f"<h2>Leaderboard</h2>{_table_html(display)}"
        f"<h2>Forgetting: delta to the baseline per benchmark</h2>{_bar_chart(bars)}"
        f"<h2>Domain gain against average forgetting</h2>{_scatter(points)}"
        f"{why}{sweeps}"
        f"</body></html>\n"
    )
