"""Sweeps: a study parameter varied over values expands into one run per value (the baseline once),
with readable labels; bad sweeps are named; sdft-rewrite's rewrite_share makes seed 003's Fig. 7-8
sweep expressible; a domain-share sweep on the tiny model records three runs and a report plots them."""
from __future__ import annotations

import json

import duckdb
import pytest
from conftest import chart_rows, chart_specs, make_mix

from harness.cli import main
from harness.config import MixConfig, RecipeEntry
from harness.errors import ConfigError
from harness.study import plan
from harness.study_file import parse_study

STUDY = {"name": "sw", "domain": "medmcqa", "recipes": ["none", "public:alpaca", "sdft-rewrite"]}


def test_a_sweep_plans_one_run_per_value_with_readable_labels_and_one_baseline():
    sweep = {"parameter": "mix.domain_share", "values": [0.1, 0.3]}
    study = parse_study({**STUDY, "seeds": [0, 1], "sweep": sweep}, "s.yaml")
    runs = plan(study)
    assert [r.label for r in runs][:3] == ["baseline", "none@mix.domain_share=0.1", "none@mix.domain_share=0.3"]
    assert len(runs) == 1 + 3 * 2 * 2 and sum(r.recipe is None for r in runs) == 1
    point = runs[2]
    assert point.study(study).mix == MixConfig(size=1000, domain_share=0.3) and point.study(study).sweep is None
    assert point.entry() == RecipeEntry(name="none")  # a mix sweep leaves the recipe as written

    study = parse_study({**STUDY, "sweep": {"parameter": "recipe.rewrite_share", "values": [0, 0.5, 1]}}, "s.yaml")
    runs = plan(study)
    assert [r.label for r in runs] == ["baseline", "none", "public:alpaca", "sdft-rewrite@recipe.rewrite_share=0",
                                       "sdft-rewrite@recipe.rewrite_share=0.5", "sdft-rewrite@recipe.rewrite_share=1"]
    assert runs[4].entry().params == {"rewrite_share": 0.5} and runs[4].study(study).mix == study.mix

    sweep = {"parameter": "recipe.set", "values": ["dolly", "lima"]}
    study = parse_study({**STUDY, "recipes": ["public:alpaca"], "sweep": sweep}, "s.yaml")
    assert [r.entry().params for r in plan(study)[1:]] == [{"set": "dolly"}, {"set": "lima"}]  # not the shorthand

    study = parse_study({**STUDY, "sweep": {"parameter": "finetune.lora.r", "values": [4, 16]}}, "s.yaml")
    assert plan(study)[2].study(study).finetune.lora.r == 16 and plan(study)[2].study(study).finetune.lora.alpha == 16


@pytest.mark.parametrize("sweep, message", [
    ({"parameter": "mix.domain_share", "values": [0.2, 1.5]},
     "s.yaml: sweep.values[1]: mix.domain_share=1.5: Input should be less than 1"),
    ({"parameter": "recipe.nope", "values": [1]},
     "s.yaml: sweep.parameter: no recipe of this study has a parameter 'nope'"),
    ({"parameter": "recipe.rewrite_share", "values": [2]},
     "s.yaml: sweep.values[0]: sdft-rewrite: recipe.rewrite_share=2: rewrite_share: Input should be less than"),
    ({"parameter": "eval.batch_size", "values": [1]}, "s.yaml: sweep.parameter: cannot sweep 'eval.batch_size'"),
    ({"parameter": "mix.size", "values": [8, 8]}, "s.yaml: sweep.values: values must be distinct"),
    ({"parameter": "mix.size", "values": []}, "s.yaml: sweep.values: List should have at least 1 item"),
])
def test_a_bad_sweep_is_one_line_naming_the_field(sweep, message):
    with pytest.raises(ConfigError) as caught:
        parse_study({**STUDY, "sweep": sweep}, "s.yaml")
    assert caught.value.lines[0].startswith(message)


class Scripted:
    """A backend that answers every rewrite prompt with a fixed text that keeps the answer letter."""

    def __init__(self):
        self.prompts = []

    def chat(self, conversations, sampling, desc=""):
        self.prompts += conversations
        return ["Rewritten in my own words. The answer is A." for _ in conversations]


def test_sdft_rewrite_share_offers_only_a_seeded_share_of_rows(tiny_model, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path))
    backend = Scripted()
    entry = RecipeEntry(name="sdft-rewrite", params={"rewrite_share": 0.25, "extractor": "none"})
    mix = make_mix(entry, tiny_model, data_dir, size=16, backend=lambda: backend)
    rows = [json.loads(line) for line in mix.path.read_text().splitlines()]
    assert len(backend.prompts) == 2 and len(rows) == 8  # the 8 domain rows alone; round(0.25 * 8) offered
    assert sum(r["messages"][-1]["content"].startswith("Rewritten") for r in rows) == 2
    assert mix.meta["provenance"]["counts"] == {"kept": 2, "fallback": 0, "not_offered": 6}
    assert mix.meta["provenance"]["rewrite_share"] == 0.25


def test_domain_share_sweep_on_the_tiny_model_records_three_runs_and_plots_them(tiny_study, data_dir, tmp_path, capsys):
    path = tiny_study(
        name="sweep", recipes=["public:alpaca"], mix={"size": 8},
        sweep={"parameter": "mix.domain_share", "values": [0.125, 0.25, 0.5]},
        finetune={"method": "lora", "max_steps": 1, "batch_size": 4, "max_seq_length": 256, "learning_rate": 1e-2},
        eval={"batch_size": 4, "benchmarks": {"domain": {"limit": 2, "max_new_tokens": 4}}},
        diagnostics={"probe_size": 2, "max_new_tokens": 4, "nll_rows": 4})
    board = tmp_path / "lb.duckdb"
    assert main(["run", str(path), "--data-dir", str(data_dir), "--leaderboard", str(board)]) == 0

    with duckdb.connect(str(board), read_only=True) as con:
        runs = con.execute("SELECT recipe, mix_sha, sweep_parameter, sweep_value, sweep_recipe, mix FROM runs "
                           "ORDER BY recipe").fetchall()
        measures = con.execute("SELECT r.recipe, m.value FROM shift_measures m JOIN runs r USING (run_id) "
                               "WHERE m.measure = 'param_l2' AND m.part = 'all' ORDER BY r.recipe").fetchall()
    assert [r[0] for r in runs] == ["baseline"] + [f"public:alpaca@mix.domain_share={v}" for v in (0.125, 0.25, 0.5)]
    assert len({r[1] for r in runs[1:]}) == 3  # three different mixes
    assert [(r[2], json.loads(r[3]), r[4]) for r in runs[1:]] == [
        ("mix.domain_share", v, "public:alpaca") for v in (0.125, 0.25, 0.5)]
    assert [round(json.loads(r[5])["stats"]["domain_rows"]) for r in runs[1:]] == [1, 2, 4]
    assert measures[0] == ("baseline", 0.0) and all(value > 0 for _, value in measures[1:])

    out = tmp_path / "report.html"
    assert main(["report", "--out", str(out), "--leaderboard", str(board)]) == 0
    html = out.read_text()
    assert "sweep over mix.domain_share" in html
    rows = chart_rows(chart_specs(html)["sweep-1"])  # per metric: the mean at each swept value, per recipe
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    assert metrics[0] == "domain" and {"param_l2", "train_nll", "output_cosine"} <= set(metrics)
    domain = [r for r in rows if r["metric"] == "domain"]
    assert [r["x"] for r in domain] == [0.125, 0.25, 0.5] and {r["label"] for r in domain} == {"public:alpaca"}
    assert all(r["runs"] == 1 and r["baseline"] is not None for r in domain)  # the seed model's score beside them

    capsys.readouterr()
    assert main(["leaderboard", "--leaderboard", str(board), "--format", "csv"]) == 0
    printed = capsys.readouterr().out
    assert "param_l2" in printed.splitlines()[0] and "public:alpaca@mix.domain_share=0.5" in printed
