"""A self-contained HTML report: the paper table, a bar chart of forgetting deltas per benchmark and
recipe, and a scatter of domain gain against average forgetting. Charts are inline SVG drawn here (no
plotting dependency, no scripts, no external resources); every text from the file is html-escaped."""
from __future__ import annotations

import math
from html import escape

import pandas as pd

from leaderboard.store import BASELINE_RECIPE, Leaderboard
from leaderboard.views import DOMAIN, paper_display, paper_table

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac"]
_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
table{border-collapse:collapse;margin:8px 0 24px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td.text{text-align:left}svg{border:1px solid #ddd;background:#fff;margin-bottom:24px}
.note{color:#555;font-size:90%}
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
             f'average delta on general benchmarks (negative = forgetting)</text>',
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
        f"</body></html>\n"
    )
