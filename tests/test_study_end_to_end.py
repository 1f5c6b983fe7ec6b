"""The whole path on the real SmolLM2-135M-Instruct at tiny sizes: config -> mix -> LoRA fine-tune
-> IFEval (lm-eval) + MedMCQA -> DuckDB leaderboard with deltas; a rerun redoes nothing."""
from __future__ import annotations

import duckdb
import pytest
import yaml

from harness.cli import main

pytestmark = pytest.mark.slow

STUDY = {
    "name": "e2e",
    "base_model": "smollm2-135m-instruct",
    "domain": "medmcqa",
    "recipes": ["none", "public:alpaca"],
    "mix": {"size": 8, "domain_share": 0.25},
    "finetune": {"method": "lora", "max_steps": 2, "batch_size": 4, "max_seq_length": 192, "learning_rate": 1e-3},
    "eval": {"batch_size": 4, "benchmarks": {"ifeval": {"limit": 2, "max_new_tokens": 24},
                                             "domain": {"limit": 4}}},
    "diagnostics": {"probe_size": 4, "max_new_tokens": 16},  # shares its caches with the diagnostics test
    "seeds": [0],
}


def query(board, sql):
    with duckdb.connect(str(board), read_only=True) as db:
        return db.execute(sql).fetchall()


def test_real_model_study_records_three_runs_with_deltas(real_model, data_dir, tmp_path, capsys, monkeypatch):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    board = tmp_path / "lb.duckdb"
    assert main(["run", str(path), "--data-dir", str(data_dir), "--leaderboard", str(board)]) == 0

    runs = query(board, "SELECT recipe, base_model_sha, checkpoint_sha, mix_sha, config_hash, package_versions, seed "
                        "FROM runs ORDER BY recipe")
    assert [r[0] for r in runs] == ["baseline", "none", "public:alpaca"]
    baseline, none, public = runs
    assert baseline[1] == real_model.sha == baseline[2]  # the baseline is the untouched model
    assert none[2] != real_model.sha and public[2] != real_model.sha and none[2] != public[2]
    assert none[3] and public[3] and none[3] != public[3]
    assert all(r[4] and "transformers" in r[5] for r in runs)

    scores = query(board, "SELECT r.recipe, s.benchmark, s.metric, s.value, s.n FROM scores s JOIN runs r USING (run_id)")
    for recipe in ("baseline", "none", "public:alpaca"):
        got = {(b, m): (v, n) for rec, b, m, v, n in scores if rec == recipe}
        assert got[("ifeval", "prompt_level_strict_acc")][1] == 2
        assert got[("domain", "accuracy")][1] == 4
        assert all(0.0 <= v <= 1.0 for v, _ in got.values())

    examples = query(board, "SELECT count(*) FROM examples e JOIN runs r USING (run_id) "
                            "WHERE r.recipe = 'none' AND e.benchmark = 'domain'")
    assert examples == [(4,)]
    deltas = query(board, "SELECT recipe, benchmark, delta, value - baseline_value FROM deltas")
    assert {(r, b) for r, b, *_ in deltas} >= {("none", "ifeval"), ("none", "domain"),
                                               ("public:alpaca", "ifeval"), ("public:alpaca", "domain")}
    assert all(d == pytest.approx(v) for *_, d, v in deltas)

    # A rerun finds every artefact and every run: no training, no generation, no duplicate rows.
    import harness.finetune

    monkeypatch.setattr(harness.finetune, "finetune", lambda *a, **k: pytest.fail("fine-tuned again"))
    before = query(board, "SELECT count(*) FROM scores")
    assert main(["run", str(path), "--data-dir", str(data_dir), "--leaderboard", str(board)]) == 0
    assert query(board, "SELECT count(*) FROM runs") == [(3,)]
    assert query(board, "SELECT count(*) FROM scores") == before

    capsys.readouterr()
    assert main(["leaderboard", "--leaderboard", str(board), "--view", "deltas", "--format", "csv"]) == 0
    assert "public:alpaca" in capsys.readouterr().out
