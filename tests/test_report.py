"""The HTML report and its figures: Vega-Lite charts inlined for offline viewing, the deltas exactly
as `compare` reports them, a sentence instead of an empty chart, PNG export, and the page as headless
Chromium draws it (every chart drawn, no label over another)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import chart_rows, chart_specs, record_study

from harness.cli import main
from leaderboard.compare import compare
from leaderboard.report import build_report, report_figures
from leaderboard.views import paper_table

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PNG = b"\x89PNG\r\n\x1a\n"


def test_report_inlines_its_scripts_and_keeps_leaderboard_text_inert(tmp_path):
    evil = '<script>alert("x")</script>&'
    board = record_study(tmp_path / "lb.duckdb", recipes=("none",), seeds=(0,), study=evil)
    html = build_report(board)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)  # nothing loaded from anywhere
    assert all("src=" not in tag for tag in re.findall(r"<script[^>]*>", html))
    assert "window.vegaEmbed=" in html  # the Vega / Vega-Lite / vega-embed bundle itself
    assert '<script>alert("x")' not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in html
    specs = chart_specs(html)
    assert {"deltas", "gain-vs-forgetting", "shift-vs-forgetting"} <= set(specs)
    assert any(row.get("study") == evil for row in chart_rows(specs["deltas"]))  # kept as data, escaped in JSON


def test_the_delta_chart_plots_what_compare_reports_for_each_recipe(study_board):
    specs = chart_specs(build_report(study_board))
    rows = chart_rows(specs["deltas"])
    assert {r["label"] for r in rows} == {"none", "public:alpaca", "reconstructed-single", "sdft-rewrite"}
    for recipe in ("none", "sdft-rewrite"):
        expected = compare(study_board, "base", recipe, study="med").set_index("benchmark")
        plotted = {r["benchmark"]: r for r in rows if r["label"] == recipe}
        assert set(plotted) == set(expected.index)
        for benchmark, row in plotted.items():
            for column in ("n", "a_mean", "b_mean", "diff", "ci_low", "ci_high", "p_value", "p_holm", "significant"):
                assert row[column] == pytest.approx(expected.loc[benchmark, column]), (recipe, benchmark, column)
    none_ifeval = next(r for r in rows if r["label"] == "none" and r["benchmark"] == "ifeval")
    assert none_ifeval["significant"] and none_ifeval["ci_high"] < 0 and none_ifeval["n"] == 80
    tooltip = {t["field"] for layer in specs["deltas"]["spec"]["layer"][1:] for t in layer["encoding"]["tooltip"]}
    assert {"n", "diff", "ci_low", "ci_high", "p_value", "p_holm"} <= tooltip


def test_the_dose_chart_plots_compare_of_each_sweep_point_against_the_seed_model(tmp_path):
    board = record_study(tmp_path / "lb.duckdb", recipes=("none", "public:alpaca"), seeds=(0, 1), study="dose",
                         sweep=("finetune.learning_rate", [1e-5, 1e-4, 1e-3]))
    spec = chart_specs(build_report(board))["dose-1"]
    rows = chart_rows(spec)
    assert {r["label"] for r in rows} == {"none", "public:alpaca"} and {r["x"] for r in rows} == {1e-5, 1e-4, 1e-3}
    for value in (1e-5, 1e-3):
        expected = compare(board, "baseline", f"none@finetune.learning_rate={value}", study="dose").set_index("benchmark")
        plotted = {r["metric"]: r for r in rows if r["label"] == "none" and r["x"] == value}
        assert set(plotted) == set(expected.index)
        for benchmark, row in plotted.items():
            for column in ("diff", "ci_low", "ci_high", "p_holm", "n"):
                assert row[column] == pytest.approx(expected.loc[benchmark, column]), (value, benchmark, column)
            assert row["runs"] == 2  # both seeds pooled per example, as compare does
    assert spec["spec"]["layer"][2]["encoding"]["x"]["scale"]["type"] == "log"  # two decades of learning rate


def _colour_scales(spec) -> list:
    """Every colour scale (one with a scheme) anywhere in a spec."""
    if isinstance(spec, list):
        return [s for item in spec for s in _colour_scales(item)]
    if not isinstance(spec, dict):
        return []
    own = [spec["scale"]] if "scheme" in (spec.get("scale") or {}) else []
    return own + [s for value in spec.values() for s in _colour_scales(value)]


def test_every_chart_keeps_one_colour_per_recipe_and_has_tooltips(study_board):
    specs = chart_specs(build_report(study_board))
    assert len(specs) == 4
    scales = [scale for spec in specs.values() for scale in _colour_scales(spec)]
    assert len(scales) >= len(specs)
    assert all(s == {"domain": ["none", "public:alpaca", "reconstructed-single", "sdft-rewrite"], "scheme": "tableau10"}
               for s in scales)
    assert all('"tooltip"' in json.dumps(spec) for spec in specs.values())


def test_gain_and_shift_charts_plot_the_paper_table_and_each_run(study_board):
    specs = chart_specs(build_report(study_board))
    table = paper_table(study_board, "med").set_index("recipe")
    gain = {r["label"]: r for r in chart_rows(specs["gain-vs-forgetting"])}
    assert set(gain) == set(table.index) - {"baseline"}
    assert gain["none"]["avg_delta"] == pytest.approx(table.loc["none", "avg_delta"]) and gain["none"]["runs"] == 2
    assert gain["none"]["domain_gain_std"] == pytest.approx(table.loc["none", "domain_gain_std"])
    shift = chart_rows(specs["shift-vs-forgetting"])
    assert {r["measure"] for r in shift} == {"output_bleu4", "param_l2", "train_nll"}
    assert len(shift) == 3 * 4 * 2  # every measure of every fine-tuned run, the seed model left out
    profiles = chart_rows(specs["profiles"])
    assert {r["label"] for r in profiles} == {"public:alpaca", "reconstructed-single"}
    assert sum(r["share"] for r in profiles if r["label"] == "public:alpaca") == pytest.approx(1.0)


@pytest.mark.parametrize("case, kwargs, missing", [
    ("only the seed model", {"recipes": ()}, {"deltas": "Only the seed model is on the leaderboard",
                                               "gain-vs-forgetting": "Only the seed model",
                                               "shift-vs-forgetting": "Only the seed model",
                                               "profiles": "No run has a category profile"}),
    ("no baseline", {"baseline": False}, {"deltas": "no seed-model run with the same base model",
                                          "gain-vs-forgetting": "No fine-tuned recipe has a seed-model run",
                                          "shift-vs-forgetting": "no run has an average forgetting"}),
    ("no diagnostics, one run", {"recipes": ("none",), "seeds": (0,), "shift": False, "profiles": False},
     {"shift-vs-forgetting": "No shift measures are recorded", "profiles": "No run has a category profile"}),
])
def test_a_figure_with_nothing_to_draw_is_a_sentence_saying_why(tmp_path, case, kwargs, missing):
    board = record_study(tmp_path / "lb.duckdb", **kwargs)
    _, figures, _ = report_figures(board)
    html = build_report(board)
    for figure in figures:
        if figure.name in missing:
            assert figure.chart is None and missing[figure.name] in figure.note, (case, figure.name, figure.note)
            assert f'id="chart-{figure.name}"' not in html
        else:
            assert figure.chart is not None, (case, figure.name)
    assert 'id="correlation-table"' not in html and "<td>-</td>" not in html
    if len(missing) == len(figures):
        assert "window.vegaEmbed=" not in html  # no chart, no 0.9 MB of JavaScript


def test_alpaca_eval_pairs_on_its_per_example_wins_and_is_drawn_beside_the_others(tmp_path):
    """AlpacaEval records each judged example under its primary metric `win_rate`, so compare pairs it
    with the baseline and the delta chart draws it; nothing is named as undrawable."""
    board = record_study(tmp_path / "lb.duckdb", recipes=("none",), seeds=(0,), alpaca_eval=True)
    deltas = next(f for f in report_figures(board)[1] if f.name == "deltas")
    assert "alpaca_eval" in {r["benchmark"] for r in chart_rows(deltas.spec())}
    assert "No paired per-example results" not in deltas.note


def test_correlations_are_listed_only_where_they_are_defined(tmp_path):
    html = build_report(record_study(tmp_path / "lb.duckdb", recipes=("none", "public:alpaca"), seeds=(0,)))
    assert 'id="correlation-table"' not in html  # two runs: no correlation is defined
    assert "No correlation for output_bleu4, param_l2, train_nll: it needs at least three runs" in html


def test_report_figures_option_writes_one_png_per_chart(study_board, tmp_path, capsys):
    out, folder = tmp_path / "report.html", tmp_path / "figures"
    assert main(["report", "--out", str(out), "--figures", str(folder), "--leaderboard", str(study_board.path)]) == 0
    pngs = sorted(p.name for p in folder.iterdir())
    assert pngs == ["deltas.png", "gain-vs-forgetting.png", "profiles.png", "shift-vs-forgetting.png"]
    for name in pngs:
        data = (folder / name).read_bytes()
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert data[:8] == PNG and width > 600 and height > 300, name
    assert out.is_file() and f"wrote {folder / 'deltas.png'}" in capsys.readouterr().out
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["report", "--out", str(tmp_path / "r2.html"), "--figures", str(blocker),
                 "--leaderboard", str(study_board.path)]) == 2
    assert capsys.readouterr().err.strip() == f"forgetbench: error: --figures {blocker}: exists and is not a folder"
    assert not (tmp_path / "r2.html").exists()


# -- the page as a browser draws it ------------------------------------------------------------------

# Injected into a copy of the report: once every chart has rendered, writes per chart the data marks
# drawn (SVG elements with a non-empty box, by mark type) and every pair of visible text labels whose
# boxes overlap, or come closer than 2 px side by side (text boxes include the line's leading, so
# stacked labels count only when they overlap), as JSON into the DOM that --dump-dom prints.
CHECK = """
(function () {
  function put(result) {
    var pre = document.createElement("pre"); pre.id = "forgetbench-check";
    pre.textContent = JSON.stringify(result); document.body.appendChild(pre);
  }
  function visible(el) {
    for (var node = el; node && node.getAttribute; node = node.parentNode)
      if (node.getAttribute("opacity") === "0" || node.getAttribute("display") === "none") return false;
    var box = el.getBoundingClientRect();
    return el.textContent.trim() !== "" && box.width > 0 && box.height > 0;
  }
  if (!window.forgetbenchCharts) { put({error: "the report set no window.forgetbenchCharts"}); return; }
  window.forgetbenchCharts.then(function () {
    var divs = document.querySelectorAll("div.chart");
    put({height: document.documentElement.scrollHeight, charts: Array.from(divs, function (div) {
      var marks = {};
      div.querySelectorAll("svg g.role-mark").forEach(function (group) {
        var kind = Array.from(group.classList).find(function (c) { return c.indexOf("mark-") === 0; });
        marks[kind] = (marks[kind] || 0) + Array.from(group.children).filter(function (child) {
          var box = child.getBoundingClientRect(); return box.width > 0 || box.height > 0; }).length;
      });
      var texts = Array.from(div.querySelectorAll("svg text")).filter(visible).map(function (el) {
        var b = el.getBoundingClientRect(); return [el.textContent, b.left, b.top, b.right, b.bottom]; });
      var overlaps = [];
      for (var i = 0; i < texts.length; i++) for (var j = i + 1; j < texts.length; j++) {
        var a = texts[i], b = texts[j];
        var w = Math.min(a[3], b[3]) - Math.max(a[1], b[1]), h = Math.min(a[4], b[4]) - Math.max(a[2], b[2]);
        if (w > -2 && h > 1) overlaps.push([a[0], b[0]]);  // over each other, or side by side closer than 2 px
      }
      return {id: div.id, rendered: div.dataset.rendered === "true", marks: marks, labels: texts.length, overlaps: overlaps};
    })});
  }, function (error) { put({error: String(error)}); });
})();
"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000"]
    return subprocess.run([*flags, *args], check=True, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="headless Chromium not installed (apt-get install -y chromium)")
def test_report_draws_every_chart_in_headless_chromium_without_overlapping_labels(tmp_path):
    board = record_study(tmp_path / "lb.duckdb")
    record_study(tmp_path / "lb.duckdb", recipes=("none", "public:alpaca"), seeds=(0,), study="share-sweep",
                 sweep=("mix.domain_share", [0.1, 0.17, 0.3]), prefix="sweep-")
    out = tmp_path / "report.html"
    assert main(["report", "--out", str(out), "--leaderboard", str(board.path)]) == 0
    html = out.read_text()
    # a probe the check must catch: two labels drawn on the same spot
    probe = {"data": {"values": [{"t": "first label"}, {"t": "second label"}]}, "mark": "text",
             "encoding": {"text": {"field": "t"}, "x": {"datum": 1, "type": "quantitative"}}}
    page_head, head_end, body = html.rpartition("</head><body>")  # the bundle in the head has one of its own
    body, body_end, tail = body.rpartition("</body>")
    checked = tmp_path / "checked.html"
    checked.write_text(f'{page_head}{head_end}<div class="chart" id="chart-probe"></div><script type="application/json" '
                       f'class="chart-spec" data-chart="chart-probe">{json.dumps(probe)}</script>'
                       f"{body}<script>{CHECK}</script>{body_end}{tail}")
    dom = chromium(tmp_path, "--window-size=1400,1000", "--dump-dom", checked.as_uri()).stdout
    found = json.loads(re.search(r'<pre id="forgetbench-check">(.*?)</pre>', dom, re.S).group(1)
                       .replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert "error" not in found, found
    charts = {c["id"]: c for c in found["charts"]}
    assert charts.pop("chart-probe")["overlaps"] == [["first label", "second label"]]
    assert set(charts) == {f"chart-{name}" for name in chart_specs(html)}
    assert {"chart-deltas", "chart-gain-vs-forgetting", "chart-shift-vs-forgetting", "chart-profiles",
            "chart-sweep-1"} <= set(charts)
    expected_marks = {"chart-deltas": "mark-symbol", "chart-gain-vs-forgetting": "mark-symbol",
                      "chart-shift-vs-forgetting": "mark-symbol", "chart-profiles": "mark-rect",
                      "chart-sweep-1": "mark-line"}
    for chart_id, chart in charts.items():
        assert chart["rendered"] and chart["labels"] > 5, chart
        assert chart["overlaps"] == [], (chart_id, chart["overlaps"])
    for chart_id, mark in expected_marks.items():
        assert charts[chart_id]["marks"].get(mark, 0) > 0, (chart_id, charts[chart_id]["marks"])
    # a point per recipe and benchmark: 4 x 4 in the study, 4 x 2 recipes x 3 values in the sweep
    assert charts["chart-deltas"]["marks"]["mark-symbol"] == len(chart_rows(chart_specs(html)["deltas"])) == 16 + 24
    rows = re.search(r'<table id="leaderboard-table">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    assert rows.count("<tr>") == len(paper_table(board))

    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--window-size=1400,{found['height']}", f"--screenshot={shot}", out.as_uri())
    data = shot.read_bytes()
    assert data[:8] == PNG and len(data) > 100_000  # a real picture, not a blank page
    keep = os.environ.get("FORGETBENCH_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
