"""Shift measures on the real SmolLM2-135M-Instruct at tiny sizes, through `forgetbench run`: the
untouched seed model has output similarity 1 to itself and parameter shift 0, the LoRA fine-tune is
shifted (in the adapted layers only), and the numbers land in the leaderboard.

The study matches tests/test_study_end_to_end.py's `none` run (mix, fine-tune, evaluation), so the two
tests share the cached checkpoint and evaluations; the probe is kept small (4 prompts x 16 tokens)."""
from __future__ import annotations

import duckdb
import pytest
import yaml

from harness.cli import main

pytestmark = pytest.mark.slow

STUDY = {
    "name": "why",
    "base_model": "smollm2-135m-instruct",
    "domain": "medmcqa",
    "recipes": ["none"],
    "mix": {"size": 8, "domain_share": 0.25},
    "finetune": {"method": "lora", "max_steps": 2, "batch_size": 4, "max_seq_length": 192, "learning_rate": 1e-3},
    "eval": {"batch_size": 4, "benchmarks": {"ifeval": {"limit": 2, "max_new_tokens": 24},
                                             "domain": {"limit": 4}}},
    "diagnostics": {"probe_size": 4, "max_new_tokens": 16},
    "seeds": [0],
}


def test_seed_model_is_unshifted_and_the_finetune_shifted_in_the_leaderboard(real_model, data_dir, tmp_path, capsys):
    path, board = tmp_path / "study.yaml", tmp_path / "lb.duckdb"
    path.write_text(yaml.safe_dump(STUDY))
    assert main(["run", str(path), "--data-dir", str(data_dir), "--leaderboard", str(board)]) == 0

    with duckdb.connect(str(board), read_only=True) as con:
        rows = con.execute("SELECT r.recipe, m.measure, m.part, m.value, m.n FROM shift_measures m "
                           "JOIN runs r USING (run_id)").fetchall()
    got = {(recipe, measure, part): (value, n) for recipe, measure, part, value, n in rows}
    seed = {k[1]: v for k, v in got.items() if k[0] == "baseline" and k[2] == "all"}
    assert seed["output_bleu4"][0] == pytest.approx(1.0) and seed["output_bleu4"][1] == 4
    assert seed["output_rougeL"][0] == pytest.approx(1.0) and seed["output_cosine"][0] == pytest.approx(1.0, abs=1e-9)
    assert seed["param_l2"] == (0.0, seed["param_l2"][1]) and seed["param_l2"][1] > 100_000_000  # 135M weights
    assert seed["param_rel"][0] == 0.0 and "train_nll" not in seed

    tuned = {(k[1], k[2]): v[0] for k, v in got.items() if k[0] == "none"}
    assert tuned[("param_l2", "all")] > 0 and tuned[("param_rel", "all")] > 0
    assert tuned[("param_l2", "q_proj")] > 0 and tuned[("param_l2", "v_proj")] > 0
    # LoRA on q_proj and v_proj: the merged delta is zero everywhere else
    assert tuned[("param_l2", "k_proj")] == 0 and tuned[("param_l2", "embed_tokens")] == 0
    assert 0 <= tuned[("output_bleu4", "all")] <= 1 and 0 < tuned[("output_cosine", "all")] <= 1 + 1e-9
    assert tuned[("train_nll", "domain")] > 0  # `none` trains on domain rows only: the mix is its domain part
    assert tuned[("train_nll", "all")] == pytest.approx(tuned[("train_nll", "domain")])

    capsys.readouterr()
    assert main(["leaderboard", "--leaderboard", str(board), "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert {"output_bleu4", "output_rougeL", "output_cosine", "param_l2", "param_rel", "train_nll"} <= set(header)
