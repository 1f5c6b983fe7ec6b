"""The command line: fast help, one-line errors with a non-zero exit, and nothing half-written."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from harness.cli import main


def study_file(tmp_path, **changes):
    study = {"name": "t", "base_model": "smollm2-135m-instruct", "domain": "medmcqa", "recipes": ["none"],
             "mix": {"size": 6}, "finetune": {"max_steps": 1}, "eval": {"benchmarks": {"domain": {"limit": 2}}}}
    study.update(changes)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def test_help_is_fast_because_nothing_heavy_is_imported():
    code = ("import sys, harness.cli as c; c._parser(); "
            "print(sorted(m for m in ('torch','transformers','trl','lm_eval','duckdb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_validate_accepts_a_good_study(tmp_path, data_dir, capsys):
    assert main(["validate", str(study_file(tmp_path)), "--data-dir", str(data_dir)]) == 0
    assert "ok — baseline, none" in capsys.readouterr().out


def test_validate_reports_each_problem_on_its_own_line(tmp_path, capsys):
    path = study_file(tmp_path, recipes=["nothing"], mix={"domain_share": 2})
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"forgetbench: error: {path}: ") for line in lines)


def test_unknown_model_fails_before_any_work(tmp_path, data_dir, capsys):
    board = tmp_path / "lb.duckdb"
    code = main(["run", str(study_file(tmp_path, base_model="no-such-model")), "--data-dir", str(data_dir),
                 "--leaderboard", str(board)])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [line for line in err if "unknown model 'no-such-model'" in line] and len(err) == 1
    assert not board.exists()


def test_missing_data_file_fails_before_any_work(tmp_path, capsys):
    board = tmp_path / "lb.duckdb"
    empty = tmp_path / "mirror"
    empty.mkdir()
    assert main(["run", str(study_file(tmp_path)), "--data-dir", str(empty), "--leaderboard", str(board)]) == 1
    err = capsys.readouterr().err
    assert "medmcqa_dev_filtered.jsonl: data file of medmcqa not found" in err and "FORGETBENCH_DATA_DIR" in err
    assert not board.exists()


def test_malformed_domain_line_names_file_and_line_and_writes_nothing(tmp_path, data_dir, capsys):
    mirror = tmp_path / "mirror"
    shutil.copytree(data_dir / "domain" / "medmcqa", mirror / "domain" / "medmcqa")
    target = mirror / "domain" / "medmcqa" / "medmcqa_dev_filtered.jsonl"
    target.chmod(0o644)
    lines = target.read_text().splitlines()
    lines[2] = lines[2][:40]
    target.write_text("\n".join(lines) + "\n")
    board = tmp_path / "lb.duckdb"
    assert main(["run", str(study_file(tmp_path)), "--data-dir", str(mirror), "--leaderboard", str(board)]) == 1
    assert "medmcqa_dev_filtered.jsonl:3: malformed JSON line" in capsys.readouterr().err
    assert not board.exists()


def test_leaderboard_without_a_file_is_an_error(tmp_path, capsys):
    assert main(["leaderboard", "--leaderboard", str(tmp_path / "none.duckdb")]) == 2
    assert "--leaderboard" in capsys.readouterr().err


def test_unknown_format_is_rejected_by_the_parser(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["leaderboard", "--format", "xml"])
    assert info.value.code == 2
