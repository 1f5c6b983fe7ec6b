"""A study SIGKILLed in the middle of fine-tuning, or of evaluation, and run again leaves exactly the
leaderboard rows of an uninterrupted run: same run ids, checkpoints and scores, no duplicates, and no
half-written artefact reused.

Each study is a real `forgetbench run` subprocess on the tiny model. The tiny job passes through a
phase in well under a second, so the process is held at a pause point (harness/testhooks.py:
FORGETBENCH_PAUSE_AT) where the phase's artefact is most exposed, and killed there with SIGKILL:
- `finetune-save`: the checkpoint sits complete but not yet renamed in its temporary directory;
- `generation:3`: the fine-tuned model's evaluation has committed its first generation batch (the
  baseline's two batches were pause points 1 and 2).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import duckdb
import pytest
import yaml

STUDY = {
    "name": "resume", "domain": "medmcqa", "recipes": ["none"],
    "mix": {"size": 6, "domain_share": 0.5},
    "finetune": {"method": "lora", "max_steps": 2, "batch_size": 2, "max_seq_length": 256, "learning_rate": 1e-3},
    "eval": {"batch_size": 2, "benchmarks": {"domain": {"limit": 4, "max_new_tokens": 8}}},
    "diagnostics": {"enabled": False},
    "seeds": [0],
}
TIMEOUT = 300  # seconds any one subprocess may take before the test gives up on it
# `forgetbench run` that also reports, after the study, whether vLLM or Ray were imported.
REPORTING_IMPORTS = ("import sys; from harness.cli import main; code = main(sys.argv[1:]); "
                     "print('optional modules imported:', sorted(m for m in ('vllm', 'ray') if m in sys.modules)); "
                     "sys.exit(code)")


def write_study(folder, tiny_model):
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "base_model": str(tiny_model.path)}))
    return path


def start(study, board, cache, data_dir, pause=None, report_imports=False):
    env = {**os.environ, "FORGETBENCH_CACHE": str(cache)}
    env.pop("FORGETBENCH_PAUSE_AT", None)
    if pause:
        env["FORGETBENCH_PAUSE_AT"] = pause
    command = [sys.executable, *(["-c", REPORTING_IMPORTS] if report_imports else ["-m", "harness.cli"]),
               "run", str(study), "--data-dir", str(data_dir), "--leaderboard", str(board)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(TIMEOUT, process.kill)
    watchdog.start()
    return process, watchdog


def run_to_end(*args, **options) -> str:
    process, watchdog = start(*args, **options)
    output = process.communicate()[0]
    watchdog.cancel()
    assert process.returncode == 0, output[-3000:]
    return output


def kill_at_pause(*args, pause: str) -> str:
    """Start the study, SIGKILL it the moment it logs that it reached `pause`; return its log."""
    process, watchdog = start(*args, pause=pause)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "pause point" in line:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait()
    watchdog.cancel()
    log = "".join(lines)
    assert process.returncode == -signal.SIGKILL, f"not killed at {pause}:\n{log[-3000:]}"
    return log


def recipes(board):
    with duckdb.connect(str(board), read_only=True) as db:
        return [r for (r,) in db.execute("SELECT recipe FROM runs ORDER BY recipe").fetchall()]


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, data_dir, tmp_path_factory, leaderboard_rows):
    folder = tmp_path_factory.mktemp("uninterrupted")
    board = folder / "lb.duckdb"
    log = run_to_end(write_study(folder, tiny_model), board, folder / "cache", data_dir, report_imports=True)
    return {**leaderboard_rows(board), "log": log}


def test_a_cpu_study_imports_neither_vllm_nor_ray(uninterrupted):
    assert "optional modules imported: []" in uninterrupted["log"]


def test_killed_during_finetuning_resumes_to_the_uninterrupted_rows(uninterrupted, tiny_model, data_dir, tmp_path,
                                                                   leaderboard_rows):
    study, board, cache = write_study(tmp_path, tiny_model), tmp_path / "lb.duckdb", tmp_path / "cache"

    log = kill_at_pause(study, board, cache, data_dir, pause="finetune-save")
    assert "fine-tune (lora)" in log
    assert recipes(board) == ["baseline"]  # recorded before the kill; the fine-tuned run is not
    checkpoints = cache / "checkpoints"
    assert [p.name for p in checkpoints.iterdir() if not p.name.startswith(".")] == []
    orphans = [p for p in checkpoints.iterdir() if p.name.startswith(".")]
    assert len(orphans) == 1 and (orphans[0] / "model" / "config.json").is_file()  # written, never renamed

    log = run_to_end(study, board, cache, data_dir)
    assert "baseline already on the leaderboard" in log
    assert "fine-tune (lora)" in log and "reusing checkpoint" not in log  # the orphan was not taken as done
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".")]  # and it was cleaned up
    assert leaderboard_rows(board) == {k: v for k, v in uninterrupted.items() if k != "log"}


def test_killed_during_evaluation_resumes_to_the_uninterrupted_rows(uninterrupted, tiny_model, data_dir, tmp_path,
                                                                   leaderboard_rows):
    study, board, cache = write_study(tmp_path, tiny_model), tmp_path / "lb.duckdb", tmp_path / "cache"

    log = kill_at_pause(study, board, cache, data_dir, pause="generation:3")
    assert "evaluating checkpoint:" in log
    assert recipes(board) == ["baseline"]
    assert len(list((cache / "evals").glob("*/results.json"))) == 1  # only the baseline's evaluation finished

    log = run_to_end(study, board, cache, data_dir)
    assert "reusing checkpoint" in log and "fine-tune (lora)" not in log
    assert "4 prompts (2 cached)" in log  # the committed batch is reused, the rest generated
    assert leaderboard_rows(board) == {k: v for k, v in uninterrupted.items() if k != "log"}
    assert len(uninterrupted["runs"]) == 2 and len({r[0] for r in uninterrupted["runs"]}) == 2
