"""`forgetbench run --executor ray` on a local Ray instance with two workers records exactly the rows
the local executor records: same run ids, checkpoints and scores, each run once."""
from __future__ import annotations

import duckdb
import yaml

from harness.cli import main


def study_file(tmp_path, tiny_model):
    study = {
        "name": "ray", "base_model": str(tiny_model.path), "domain": "medmcqa",
        "recipes": ["none", "public:alpaca"],
        "mix": {"size": 6, "domain_share": 0.5},
        "finetune": {"method": "lora", "max_steps": 2, "batch_size": 2, "max_seq_length": 256, "learning_rate": 1e-3},
        "eval": {"batch_size": 2, "benchmarks": {"domain": {"limit": 3, "max_new_tokens": 8}}},
        "executor": {"local_cpus": 2, "cpus_per_run": 1},
        "diagnostics": {"enabled": False},  # shift probes are not what this test checks (and cost minutes)
        "seeds": [0],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def rows(board):
    with duckdb.connect(str(board), read_only=True) as db:
        runs = db.execute("SELECT run_id, recipe, seed, checkpoint_sha, mix_sha, eval_config_hash FROM runs "
                          "ORDER BY run_id").fetchall()
        scores = db.execute("SELECT run_id, benchmark, metric, value, n FROM scores ORDER BY ALL").fetchall()
        examples = db.execute("SELECT run_id, example_id, value, prediction FROM examples ORDER BY ALL").fetchall()
    return runs, scores, examples


def test_ray_executor_records_the_rows_of_the_local_executor(tiny_model, data_dir, tmp_path, monkeypatch, capsys):
    study = study_file(tmp_path, tiny_model)
    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path / "cache-local"))
    local = tmp_path / "local.duckdb"
    assert main(["run", str(study), "--data-dir", str(data_dir), "--leaderboard", str(local)]) == 0

    # A fresh cache: the two Ray workers compute every artefact themselves (nothing reused from above).
    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path / "cache-ray"))
    on_ray = tmp_path / "ray.duckdb"
    assert main(["run", str(study), "--data-dir", str(data_dir), "--leaderboard", str(on_ray),
                 "--executor", "ray"]) == 0
    assert "recorded 3 runs" in capsys.readouterr().out

    local_rows, ray_rows = rows(local), rows(on_ray)
    assert [r[1] for r in ray_rows[0]] == ["baseline", "none", "public:alpaca"]
    assert len({r[0] for r in ray_rows[0]}) == 3  # one row per run: no duplicates
    assert ray_rows == local_rows  # same run ids, checkpoints, scores and per-example predictions
    assert (tmp_path / "cache-ray" / "checkpoints").is_dir()  # the workers did the work in the fresh cache


def test_missing_ray_address_without_ray_executor_is_a_one_line_error(tiny_model, tmp_path, capsys):
    study = study_file(tmp_path, tiny_model)
    assert main(["run", str(study), "--ray-address", "auto"]) == 2
    assert capsys.readouterr().err.strip() == "forgetbench: error: --ray-address: needs --executor ray"
