"""Why did it forget? Shift measures: parameter-shift and correlation math, output similarity, the
seed model measured against itself, a fine-tuned run, the cache, and the leaderboard's shift table,
views and report."""
from __future__ import annotations

import math
import re

import duckdb
import pytest
import torch
from conftest import chart_rows, chart_specs, make_mix
from safetensors.torch import save_file

import harness.shift as diagnostics
from harness.config import DiagnosticsConfig, FinetuneConfig
from harness.errors import ConfigError, DataError, ModelError
from harness.results import BenchmarkResult, RunRecord, Score, ShiftMeasure
from harness.study_file import parse_study
from leaderboard.report import build_report
from leaderboard.store import Leaderboard
from leaderboard.views import paper_table, pearson, shift_correlations, spearman

SMALL = DiagnosticsConfig(probe_size=3, max_new_tokens=8, nll_rows=4)


# -- parameter shift -------------------------------------------------------------------------------

def checkpoint(folder, tensors, shards=1):
    folder.mkdir()
    names = sorted(tensors)
    for k in range(shards):
        save_file({n: tensors[n] for n in names[k::shards]}, str(folder / f"model-{k}.safetensors"))
    return folder


def test_parameter_shift_is_the_l2_norm_of_the_weight_change_per_layer_type(tmp_path):
    base = {"model.layers.0.self_attn.q_proj.weight": torch.zeros(2, 2),
            "model.layers.1.self_attn.q_proj.weight": torch.ones(2, 2),
            "model.layers.0.mlp.up_proj.weight": torch.ones(3),
            "model.embed_tokens.weight": torch.full((2, 3), 2.0)}
    tuned = dict(base)
    tuned["model.layers.0.self_attn.q_proj.weight"] = torch.tensor([[3.0, 0.0], [0.0, 0.0]])  # |d|^2 = 9
    tuned["model.layers.1.self_attn.q_proj.weight"] = torch.tensor([[1.0, 1.0], [1.0, 5.0]])  # |d|^2 = 16
    tuned["model.layers.0.mlp.up_proj.weight"] = torch.tensor([1.0, 1.0, -1.0])  # |d|^2 = 4
    seed_dir = checkpoint(tmp_path / "seed", base)
    run_dir = checkpoint(tmp_path / "run", tuned, shards=2)  # a sharded checkpoint reads the same

    got = {(m.measure, m.part): (m.value, m.n) for m in diagnostics.parameter_shift(seed_dir, run_dir)}
    assert got[("param_l2", "q_proj")] == (5.0, 8)
    assert got[("param_l2", "up_proj")] == (2.0, 3)
    assert got[("param_l2", "embed_tokens")] == (0.0, 6)
    assert got[("param_l2", "all")] == (pytest.approx(math.sqrt(29)), 17)
    base_norm = math.sqrt(0 + 4 + 3 + 24)
    assert got[("param_rel", "all")][0] == pytest.approx(math.sqrt(29) / base_norm)
    assert {(m.measure, m.value) for m in diagnostics.parameter_shift(seed_dir, seed_dir) if m.part == "all"} \
        == {("param_l2", 0.0), ("param_rel", 0.0)}

    other = checkpoint(tmp_path / "other", {**base, "extra.weight": torch.ones(1)})
    with pytest.raises(ModelError, match="'extra.weight'"):
        diagnostics.parameter_shift(seed_dir, other)


def test_layer_type_names_the_module():
    assert diagnostics.layer_type("model.layers.3.self_attn.v_proj.weight") == "v_proj"
    assert diagnostics.layer_type("model.layers.3.mlp.down_proj.bias") == "down_proj"
    assert diagnostics.layer_type("model.norm.weight") == "norm"


# -- correlation math ------------------------------------------------------------------------------

def test_pearson_and_spearman_match_hand_computed_values():
    assert pearson([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)  # 8 / sqrt(10 * 10)
    assert pearson([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)  # monotonic, not linear
    assert pearson([1, 2, 3, 4], [1, 8, 27, 64]) < 0.99
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))  # tie: ranks 2.5, 2.5
    assert math.isnan(pearson([1, 2], [3, 4]))  # too few runs to say anything
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a constant measure


# -- configuration ---------------------------------------------------------------------------------

def test_diagnostics_settings_are_validated_with_the_field_named():
    with pytest.raises(ConfigError, match=r"x.yaml: diagnostics.probe_size: Input should be greater than 0"):
        parse_study({"name": "s", "domain": "medmcqa", "recipes": ["none"], "diagnostics": {"probe_size": 0}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"diagnostics.embedding_model: '/no/such' is neither the bundled"):
        parse_study({"name": "s", "domain": "medmcqa", "recipes": ["none"],
                     "diagnostics": {"embedding_model": "/no/such"}}, "x.yaml")


def test_probe_prompts_are_a_seeded_subset_and_a_missing_file_is_named(data_dir, tmp_path):
    prompts, sha = diagnostics.probe_prompts(DiagnosticsConfig(probe_size=5), data_dir)
    assert len(prompts) == 5 and len(sha) == 64 and all(p[0].startswith("alpaca_eval/") for p in prompts)
    assert diagnostics.probe_prompts(DiagnosticsConfig(probe_size=5), data_dir)[0] == prompts
    advbench, _ = diagnostics.probe_prompts(DiagnosticsConfig(probe_set="advbench", probe_size=4), data_dir)
    assert len(advbench) == 4 and advbench[0][0].startswith("advbench/")
    with pytest.raises(DataError, match=r"instructions.jsonl: data file of diagnostics.probe_set alpaca_eval not found"):
        diagnostics.probe_prompts(DiagnosticsConfig(), tmp_path)


# -- output similarity -----------------------------------------------------------------------------

def test_output_similarity_is_one_for_identical_answers_and_lower_for_different_ones():
    seed = ["The capital of France is Paris.", "Water boils at 100 degrees Celsius at sea level."]
    same = {m.measure: m.value for m in diagnostics.output_similarity(seed, list(seed), "all-MiniLM-L6-v2")}
    assert same["output_bleu4"] == pytest.approx(1.0) and same["output_rougeL"] == pytest.approx(1.0)
    assert same["output_cosine"] == pytest.approx(1.0, abs=1e-9)
    other = ["Paris is the capital city of France.", "I like to ride my bicycle on weekends."]
    moved = {m.measure: m.value for m in diagnostics.output_similarity(seed, other, "all-MiniLM-L6-v2")}
    assert 0.0 <= moved["output_bleu4"] < 0.5 and 0.0 < moved["output_rougeL"] < 0.8
    assert 0.0 < moved["output_cosine"] < 0.95


# -- one run, end to end on the tiny model, and the cache ------------------------------------------

def test_seed_model_is_unshifted_a_finetune_is_shifted_and_the_second_computation_is_cached(
        tiny_model, data_dir, tmp_path, monkeypatch):
    from harness import generation
    from harness.finetune import finetune

    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path / "cache"))
    made = []
    real_make_backend = generation.make_backend

    def counting_backend(name, model, batch_size=8):
        made.append(real_make_backend(name, model, batch_size=batch_size))
        return made[-1]

    monkeypatch.setattr(generation, "make_backend", counting_backend)
    run = dict(data_dir=data_dir, backend_name="transformers", batch_size=4, max_seq_length=96)

    itself = diagnostics.measure_run(tiny_model, tiny_model, None, SMALL, **run)
    headline = {m.measure: m for m in itself if m.part == "all"}
    assert headline["output_cosine"].value == pytest.approx(1.0) and headline["output_cosine"].n == 3
    # the random model answers blank lines: BLEU and ROUGE have nothing to compare and say so, not 0
    assert math.isnan(headline["output_bleu4"].value) and headline["output_bleu4"].n == 0
    assert headline["param_l2"].value == 0.0 and headline["param_rel"].value == 0.0 and "train_nll" not in headline
    assert sum(b.generated for b in made) == 3  # the seed's probe answers, generated once for both sides

    mix = make_mix("public:alpaca", tiny_model, data_dir, size=6)
    job = FinetuneConfig(method="full", max_steps=2, batch_size=2, max_seq_length=96, learning_rate=1e-2)
    tuned = finetune(tiny_model, mix.path, job, 0, tmp_path / "tuned")
    made.clear()
    measures = diagnostics.measure_run(tiny_model, tuned, mix, SMALL, **run)
    assert sum(b.generated for b in made) == 3  # only the fine-tuned model's answers are new
    got = {(m.measure, m.part): m for m in measures}
    assert got[("param_l2", "all")].value > 0 and got[("param_l2", "q_proj")].value > 0
    assert {"domain", "rehearsal", "all"} <= {part for measure, part in got if measure == "train_nll"}
    nll = {part: got[("train_nll", part)] for part in ("domain", "rehearsal", "all")}
    assert all(m.value > 0 and m.n > 0 for m in nll.values())
    assert nll["all"].n == nll["domain"].n + nll["rehearsal"].n  # no subset taken: the plain token mean
    assert nll["all"].value == pytest.approx(
        (nll["domain"].value * nll["domain"].n + nll["rehearsal"].value * nll["rehearsal"].n) / nll["all"].n)

    def no_work(*args, **kwargs):
        raise AssertionError("the measures were computed again")

    monkeypatch.setattr(generation, "make_backend", no_work)
    monkeypatch.setattr(diagnostics, "parameter_shift", no_work)
    monkeypatch.setattr(diagnostics, "load_embedder", no_work)
    assert diagnostics.measure_run(tiny_model, tuned, mix, SMALL, **run) == measures
    stored = list((tmp_path / "cache" / "diagnostics").glob("*/probe.jsonl"))
    assert len(stored) == 2 and all(len(p.read_text().splitlines()) == 3 for p in stored)


# -- leaderboard: shift table, paper columns, correlation view, report -----------------------------

def record(board, run_id, recipe, ifeval, shift, study="why"):
    run = RunRecord(run_id=run_id, study=study, recipe=recipe, recipe_params={}, seed=0, base_model="m",
                    base_model_sha="base", checkpoint_sha=f"ck-{run_id}", mix_sha=None, config_hash="c",
                    finetune_config_hash=None, eval_config_hash="e", data_hashes={}, package_versions={},
                    started_at="2025-01-01T00:00:00+00:00", finished_at="2025-01-01T00:00:01+00:00",
                    domain="medmcqa", generation_backend="transformers",
                    shift=[ShiftMeasure(k, "all", v, 16) for k, v in shift.items()])
    board.record(run, [BenchmarkResult("ifeval", "prompt_level_strict_acc",
                                       [Score("prompt_level_strict_acc", ifeval, None, 10),
                                        Score("inst_level_strict_acc", ifeval, None, 10)], [])])


def test_shift_measures_land_beside_the_scores_and_correlate_with_forgetting(tmp_path):
    board = Leaderboard(tmp_path / "lb.duckdb")
    record(board, "b", "baseline", 0.8, {"param_l2": 0.0, "output_cosine": 1.0})
    # the further a run moved from the seed model, the more it forgot (one exception keeps Pearson < 1)
    for i, (l2, cosine, ifeval) in enumerate([(1.0, 0.9, 0.75), (2.0, 0.8, 0.7), (3.0, 0.85, 0.5), (4.0, 0.6, 0.55)]):
        record(board, f"r{i}", f"recipe{i}", ifeval, {"param_l2": l2, "output_cosine": cosine})

    with duckdb.connect(str(board.path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM shift_measures").fetchone() == (10,)
    table = paper_table(board, "why").set_index("recipe")
    assert table.loc["baseline", "param_l2"] == 0.0 and table.loc["recipe2", "output_cosine"] == 0.85

    corr = shift_correlations(board, "why").set_index("measure")
    assert corr.loc["param_l2", "n"] == 4
    forgetting = [-5.0, -10.0, -30.0, -25.0]  # leaderboard points (IFEval x 100)
    assert corr.loc["param_l2", "pearson"] == pytest.approx(pearson([1, 2, 3, 4], forgetting))
    assert corr.loc["param_l2", "pearson"] < -0.8 and corr.loc["param_l2", "spearman"] == pytest.approx(-0.8)
    assert corr.loc["output_cosine", "spearman"] == pytest.approx(spearman([0.9, 0.8, 0.85, 0.6], forgetting))

    record(board, "r1", "recipe1", 0.7, {"param_l2": 2.5})  # re-recording a run replaces its measures
    assert len(board.shift("why").query("run_id == 'r1'")) == 1

    html = build_report(board, "why")
    section = re.search(r'<table id="correlation-table">.*?</table>', html).group(0)
    assert "param_l2" in section and "output_cosine" in section
    plotted = chart_rows(chart_specs(html)["shift-vs-forgetting"])  # each run's measure against its avg_delta
    assert {(r["run_id"], r["measure"]) for r in plotted} == {(f"r{i}", m) for i in range(4)
                                                              for m in ("param_l2", "output_cosine")} - {("r1", "output_cosine")}
