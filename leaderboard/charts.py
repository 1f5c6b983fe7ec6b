"""The report's figures as Vega-Lite specifications (built with Altair), rendered offline.

Each builder takes a tidy frame and returns an Altair chart; the report embeds the specifications in
its single HTML file together with the Vega, Vega-Lite and vega-embed JavaScript that vl-convert
bundles (no network at view time), and `figure_png` renders the same specification to PNG through
vl-convert (no browser). Every mark carries a tooltip with its exact numbers and counts.

A recipe keeps its colour in every chart of a report: `recipe_scale` maps the recipe labels, in the
report's order, to one palette.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import altair as alt
import pandas as pd

VEGA_LITE = "6.4"  # the Vega-Lite version Altair 6 writes (alt.SCHEMA_VERSION v6.4.x), bundled by vl-convert
PNG_SCALE = 2  # device pixels per CSS pixel in the PNG files
FONT = "DejaVu Sans, Liberation Sans, Arial, sans-serif"  # the same text metrics in Chromium and vl-convert
SIGNIFICANT = "Holm p < 0.05"
NOT_SIGNIFICANT = "not significant"


@dataclass
class Figure:
    """One figure of the report: `name` is its element id and PNG file stem, `note` its caption or,
    without a chart, why there is nothing to draw. `draw` builds the chart from the report's colour
    scale (known once every figure has named its recipes); `chart` holds the result."""

    name: str
    title: str
    note: str
    draw: Callable[[alt.Scale], alt.TopLevelMixin] | None = None
    chart: alt.TopLevelMixin | None = None

    def spec(self) -> dict:
        return self.chart.to_dict()


@functools.lru_cache(maxsize=1)
def javascript_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script that sets window.vegaEmbed (about 0.9 MB)."""
    import vl_convert

    return vl_convert.javascript_bundle(vl_version=VEGA_LITE)


def figure_png(figure: Figure) -> bytes:
    import vl_convert

    return vl_convert.vegalite_to_png(figure.spec(), vl_version=VEGA_LITE, scale=PNG_SCALE)


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts: NaN becomes null, numpy scalars plain Python values."""
    out = []
    for row in frame.to_dict(orient="records"):
        clean = {}
        for key, value in row.items():
            if hasattr(value, "item") and not isinstance(value, (str, bytes)):
                value = value.item()
            if isinstance(value, float) and math.isnan(value):
                value = None
            clean[str(key)] = value
        out.append(clean)
    return out


def recipe_scale(labels: list[str]) -> alt.Scale:
    scheme = "tableau10" if len(labels) <= 10 else "category20"
    return alt.Scale(domain=list(labels), scheme=scheme)


def _recipe_channels(colours: alt.Scale, present, shapes: bool = True) -> dict:
    """Colour (and shape) by recipe label, the legend listing only the recipes this chart shows."""
    shown = [label for label in colours.domain if label in set(present)]
    channels = {"color": alt.Color("label:N", scale=colours, title="recipe", legend=alt.Legend(values=shown))}
    if shapes:
        channels["shape"] = alt.Shape("label:N", scale=alt.Scale(domain=list(colours.domain)), title="recipe",
                                      legend=alt.Legend(values=shown))
    return channels


def _configure(chart):
    return (chart.configure(font=FONT, background="white")
            .configure_axis(labelFontSize=11, titleFontSize=12, labelLimit=360, labelSeparation=6)
            .configure_header(labelFontSize=12, titleFontSize=12, labelFontWeight="bold")
            .configure_legend(labelFontSize=11, titleFontSize=12, labelLimit=420)
            .configure_view(stroke="#ddd"))


def delta_chart(deltas: pd.DataFrame, colours: alt.Scale, title: str) -> alt.TopLevelMixin:
    """One panel per benchmark: each recipe's mean paired difference to the baseline (point) and its
    95 % bootstrap interval (bar); filled points are significant, a rule marks no difference.
    Columns: label, benchmark, metric, n, a_mean, b_mean, diff, ci_low, ci_high, p_value, p_holm,
    significant."""
    data = deltas.assign(significance=[SIGNIFICANT if s else NOT_SIGNIFICANT for s in deltas.significant])
    labels = list(colours.domain)
    y = alt.Y("label:N", title=None, sort=labels)
    tooltip = [alt.Tooltip("label:N", title="recipe"), alt.Tooltip("benchmark:N"), alt.Tooltip("metric:N"),
               alt.Tooltip("n:Q", title="n (paired examples)"),
               alt.Tooltip("a_mean:Q", title="baseline", format=".4f"),
               alt.Tooltip("b_mean:Q", title="recipe", format=".4f"),
               alt.Tooltip("diff:Q", title="difference", format="+.4f"),
               alt.Tooltip("ci_low:Q", title="95% CI low", format="+.4f"),
               alt.Tooltip("ci_high:Q", title="95% CI high", format="+.4f"),
               alt.Tooltip("p_value:Q", title="p", format=".4f"), alt.Tooltip("p_holm:Q", title="p (Holm)", format=".4f"),
               alt.Tooltip("significance:N")]
    base = alt.Chart().encode(y=y)
    zero = alt.Chart().mark_rule(color="#666", strokeDash=[4, 3]).encode(x=alt.datum(0))
    interval = base.mark_rule(strokeWidth=2.5).encode(
        x=alt.X("ci_low:Q", title="difference to the baseline (95% CI)", scale=alt.Scale(zero=True, padding=8)),
        x2="ci_high:Q",
        color=alt.Color("label:N", scale=colours, legend=None), tooltip=tooltip)
    point = base.mark_point(size=90, strokeWidth=2, opacity=1).encode(
        x="diff:Q", color=alt.Color("label:N", scale=colours, legend=None),
        fill=alt.condition("datum.significant", alt.Fill("label:N", scale=colours, legend=None), alt.value("white")),
        tooltip=tooltip)
    height = max(60, 22 * len(labels))
    chart = alt.layer(zero, interval, point, data=alt.Data(values=records(data))).properties(width=260, height=height)
    chart = chart.facet(facet=alt.Facet("benchmark:N", title=None, sort=list(dict.fromkeys(data.benchmark))),
                        columns=3).resolve_scale(x="independent")
    subtitle = f"filled point: {SIGNIFICANT} (paired bootstrap); hollow: {NOT_SIGNIFICANT}; dashed: no difference"
    return _configure(chart.properties(title=alt.Title(title, subtitle=subtitle)))


def gain_chart(points: pd.DataFrame, colours: alt.Scale, title: str) -> alt.TopLevelMixin:
    """x = change of the leaderboard average (avg_delta), y = domain gain, one point per recipe with
    ± std over seeds where it has several; the seed model sits at the crossing of the zero rules.
    Columns: label, runs, avg_delta, avg_delta_std, domain_gain, domain_gain_std."""
    data = points.assign(x_low=points.avg_delta - points.avg_delta_std.fillna(0),
                         x_high=points.avg_delta + points.avg_delta_std.fillna(0),
                         y_low=points.domain_gain - points.domain_gain_std.fillna(0),
                         y_high=points.domain_gain + points.domain_gain_std.fillna(0))
    tooltip = [alt.Tooltip("label:N", title="recipe"), alt.Tooltip("runs:Q", title="n (seeds)"),
               alt.Tooltip("avg_delta:Q", title="avg_delta (points)", format="+.2f"),
               alt.Tooltip("avg_delta_std:Q", title="avg_delta std", format=".2f"),
               alt.Tooltip("domain_gain:Q", title="domain gain", format="+.4f"),
               alt.Tooltip("domain_gain_std:Q", title="domain gain std", format=".4f")]
    recipe = _recipe_channels(colours, points.label)
    x = alt.X("avg_delta:Q", title="change of the leaderboard average, points (negative = forgetting)",
              scale=alt.Scale(zero=True, nice=True))
    y = alt.Y("domain_gain:Q", title="domain gain (score difference)", scale=alt.Scale(zero=True, nice=True))
    zero_x = alt.Chart().mark_rule(color="#999").encode(x=alt.datum(0))
    zero_y = alt.Chart().mark_rule(color="#999").encode(y=alt.datum(0))
    spread_x = alt.Chart().mark_rule(strokeWidth=1.5).encode(x="x_low:Q", x2="x_high:Q", y=y,
                                                             color=recipe["color"], tooltip=tooltip)
    spread_y = alt.Chart().mark_rule(strokeWidth=1.5).encode(y="y_low:Q", y2="y_high:Q", x=x,
                                                             color=recipe["color"], tooltip=tooltip)
    point = alt.Chart().mark_point(size=130, filled=True, opacity=0.9).encode(x=x, y=y, **recipe, tooltip=tooltip)
    chart = alt.layer(zero_x, zero_y, spread_x, spread_y, point, data=alt.Data(values=records(data)))
    return _configure(chart.properties(width=560, height=380, title=title))


def shift_chart(runs: pd.DataFrame, colours: alt.Scale, title: str) -> alt.TopLevelMixin:
    """One panel per shift measure: x = the measure, y = avg_delta, one point per fine-tuned run.
    Columns: label, seed, run_id, measure, value, avg_delta."""
    tooltip = [alt.Tooltip("label:N", title="recipe"), alt.Tooltip("seed:Q"), alt.Tooltip("run_id:N"),
               alt.Tooltip("measure:N"), alt.Tooltip("value:Q", title="measure value", format=".4g"),
               alt.Tooltip("avg_delta:Q", title="avg_delta (points)", format="+.2f")]
    point = alt.Chart().mark_point(size=80, filled=True, opacity=0.9).encode(
        x=alt.X("value:Q", title=None, scale=alt.Scale(zero=False, nice=True, padding=12), axis=alt.Axis(tickCount=5)),
        y=alt.Y("avg_delta:Q", title="avg_delta (points)", scale=alt.Scale(zero=False, nice=True, padding=12)),
        **_recipe_channels(colours, runs.label), tooltip=tooltip)
    chart = alt.layer(point, data=alt.Data(values=records(runs))).properties(width=240, height=200)
    chart = chart.facet(facet=alt.Facet("measure:N", title=None, sort=list(dict.fromkeys(runs.measure))),
                        columns=3).resolve_scale(x="independent")
    return _configure(chart.properties(title=title))


def profile_chart(shares: pd.DataFrame, colours: alt.Scale, categories: list[str], title: str) -> alt.TopLevelMixin:
    """Grouped bars: per task category, the share of each recipe's rehearsal rows.
    Columns: label, category, count, n, runs, share."""
    tooltip = [alt.Tooltip("label:N", title="recipe"), alt.Tooltip("category:N"),
               alt.Tooltip("share:Q", format=".1%"), alt.Tooltip("count:Q", title="rows in category"),
               alt.Tooltip("n:Q", title="n (rehearsal rows profiled)"), alt.Tooltip("runs:Q", title="runs")]
    bars = alt.Chart().mark_bar().encode(
        y=alt.Y("category:N", sort=categories, title=None),
        yOffset=alt.YOffset("label:N", sort=list(colours.domain)),
        x=alt.X("share:Q", title="share of rehearsal rows", axis=alt.Axis(format="%")),
        color=_recipe_channels(colours, shares.label, shapes=False)["color"], tooltip=tooltip)
    chart = alt.layer(bars, data=alt.Data(values=records(shares)))
    chart = chart.properties(width=520, height=alt.Step(12), title=title)  # with yOffset: 12 px per bar
    return _configure(chart)


def sweep_chart(points: pd.DataFrame, parameter: str, numeric: bool, order: list, title: str) -> alt.TopLevelMixin:
    """One panel per metric (benchmark, avg_delta, shift measure): the mean over seeds against the
    swept value, one line per recipe, the seed model as a dashed rule. Its recipes (unswept labels)
    appear in no other chart, so they get their own colours.
    Columns: metric, label, x, y, runs, baseline."""
    colours = recipe_scale(list(dict.fromkeys(points.label)))
    tooltip = [alt.Tooltip("label:N", title="recipe"), alt.Tooltip("metric:N"),
               alt.Tooltip("x:Q" if numeric else "x:N", title=parameter),
               alt.Tooltip("y:Q", title="mean over seeds", format=".4g"), alt.Tooltip("runs:Q", title="n (seeds)")]
    x = (alt.X("x:Q", title=parameter, scale=alt.Scale(zero=False, nice=False), axis=alt.Axis(values=order))
         if numeric else alt.X("x:N", title=parameter, sort=[str(v) for v in order]))
    lines = alt.Chart().mark_line(point=alt.OverlayMarkDef(size=50, filled=True)).encode(
        x=x, y=alt.Y("y:Q", title=None, scale=alt.Scale(zero=False, nice=True)),
        color=_recipe_channels(colours, points.label, shapes=False)["color"], tooltip=tooltip)
    baseline = alt.Chart().mark_rule(color="#555", strokeDash=[4, 3]).encode(
        y="baseline:Q", tooltip=[alt.Tooltip("metric:N"), alt.Tooltip("baseline:Q", title="seed model", format=".4g")])
    chart = alt.layer(baseline, lines, data=alt.Data(values=records(points))).properties(width=240, height=180)
    chart = chart.facet(facet=alt.Facet("metric:N", title=None, sort=list(dict.fromkeys(points.metric))),
                        columns=3).resolve_scale(y="independent")
    return _configure(chart.properties(title=title))


def dose_chart(points: pd.DataFrame, parameter: str, title: str) -> alt.TopLevelMixin:
    """One panel per benchmark: the paired difference to the seed model against the swept value, its 95 %
    interval as a vertical rule, one line per recipe, zero as a dashed rule; a log x axis where the
    values are positive and span a factor of 10 or more (learning rates).
    Columns: metric, label, x, diff, ci_low, ci_high, p_holm, n, runs."""
    colours = recipe_scale(list(dict.fromkeys(points.label)))
    values = [v for v in points.x if isinstance(v, (int, float))]
    log = len(values) == len(points) and min(values) > 0 and max(values) >= 10 * min(values)
    scale = alt.Scale(type="log") if log else alt.Scale(zero=False, nice=False)
    x = alt.X("x:Q", title=parameter, scale=scale, axis=alt.Axis(values=sorted(set(values)), format="g"))
    tooltip = [alt.Tooltip("label:N", title="recipe"), alt.Tooltip("metric:N"), alt.Tooltip("x:Q", title=parameter),
               alt.Tooltip("diff:Q", title="difference to the seed model", format="+.4f"),
               alt.Tooltip("ci_low:Q", title="95 % CI low", format="+.4f"),
               alt.Tooltip("ci_high:Q", title="95 % CI high", format="+.4f"),
               alt.Tooltip("p_holm:Q", title="p (Holm)", format=".3g"), alt.Tooltip("n:Q", title="examples"),
               alt.Tooltip("runs:Q", title="seeds")]
    colour = _recipe_channels(colours, points.label, shapes=False)["color"]
    zero = alt.Chart().mark_rule(color="#555", strokeDash=[4, 3]).encode(y=alt.datum(0))
    interval = alt.Chart().mark_rule(strokeWidth=2).encode(x=x, y="ci_low:Q", y2="ci_high:Q", color=colour,
                                                           tooltip=tooltip)
    line = alt.Chart().mark_line(point=alt.OverlayMarkDef(size=50, filled=True)).encode(
        x=x, y=alt.Y("diff:Q", title=None, scale=alt.Scale(zero=False, nice=True)), color=colour, tooltip=tooltip)
    chart = alt.layer(zero, interval, line, data=alt.Data(values=records(points))).properties(width=240, height=180)
    chart = chart.facet(facet=alt.Facet("metric:N", title=None, sort=list(dict.fromkeys(points.metric))),
                        columns=3).resolve_scale(y="independent")
    return _configure(chart.properties(title=title))
