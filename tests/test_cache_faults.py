"""Every kind of cached artefact, truncated or corrupted in turn, is caught before reuse: the rerun logs
one line naming it, moves it aside, rebuilds it, and ends with exactly the leaderboard rows of a
clean run; afterwards `cache verify` finds the cache intact.

The study is a real `forgetbench run` (in this process) on the tiny model, with diagnostics on so
that their artefacts are covered too. Each case starts from a copy of the clean run's cache and
records into a fresh leaderboard, so every artefact is read back from the cache.
"""
from __future__ import annotations

import logging
import shutil
import sqlite3

import pytest
import yaml

from harness import artefacts
from harness.cache_admin import verify_cache
from harness.cli import main

STUDY = {
    "name": "faults", "domain": "medmcqa", "recipes": ["none"],
    "mix": {"size": 6, "domain_share": 0.5},
    "finetune": {"method": "lora", "max_steps": 2, "batch_size": 2, "max_seq_length": 256, "learning_rate": 1e-3},
    "eval": {"batch_size": 2, "benchmarks": {"domain": {"limit": 4, "max_new_tokens": 8}}},
    "diagnostics": {"probe_size": 2, "max_new_tokens": 4, "nll_rows": 2},
    "seeds": [0],
}


def run(study, board, data_dir) -> int:
    return main(["run", str(study), "--data-dir", str(data_dir), "--leaderboard", str(board)])


@pytest.fixture(scope="module")
def clean(tiny_model, data_dir, tmp_path_factory, leaderboard_rows):
    folder = tmp_path_factory.mktemp("clean")
    study = folder / "study.yaml"
    study.write_text(yaml.safe_dump({**STUDY, "base_model": str(tiny_model.path)}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FORGETBENCH_CACHE", str(folder / "cache"))
        assert run(study, folder / "lb.duckdb", data_dir) == 0
    return {"study": study, "cache": folder / "cache", "rows": leaderboard_rows(folder / "lb.duckdb")}


def only(cache, pattern):
    found = [p for p in cache.glob(pattern) if "corrupt" not in p.parts]
    assert len(found) == 1, (pattern, found)
    return found[0]


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip_bytes(path):
    """Same size, different content (bit rot, a partial overwrite)."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, min(len(data), len(data) // 2 + 16)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def in_folder(pattern, damage):
    """A fault on the one file matching `pattern`; the artefact named in the log is its folder under the
    kind's folder (e.g. mixes/<key>)."""
    def fault(cache):
        path = only(cache, pattern)
        damage(path)
        return cache / path.relative_to(cache).parts[0] / path.relative_to(cache).parts[1]
    return fault


def mix_rows_truncated(cache):
    """The issue's case: a mix cut to 2 of its 6 rows, and no checkpoint yet, so training reads it."""
    shutil.rmtree(cache / "checkpoints")
    path = only(cache, "mixes/*/mix.jsonl")
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))  # 2 of 6 rows, each still valid
    return path.parent


def finetuned_evaluation_truncated(cache):
    checkpoint_sha = artefacts.refs(only(cache, "checkpoints/*"))["checkpoint_sha"]
    folder = next(p for p in cache.glob("evals/*") if artefacts.refs(p)["model_sha"] == checkpoint_sha)
    truncate(folder / "results.json", keep=0.3)
    return folder


def finetuned_evaluation_edited_in_place(cache):
    """A result rewritten under the same size and modification time (a score changed by hand): only a
    hash can tell, and small files are hashed on every reuse."""
    import os

    checkpoint_sha = artefacts.refs(only(cache, "checkpoints/*"))["checkpoint_sha"]
    folder = next(p for p in cache.glob("evals/*") if artefacts.refs(p)["model_sha"] == checkpoint_sha)
    path = folder / "results.json"
    stat = path.stat()
    text = path.read_text()
    edited = text.replace('"value": 0.', '"value": 9.', 1)
    assert edited != text and len(edited) == len(text)
    path.write_text(edited)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return folder


def finetuned_diagnostics_truncated(cache):
    checkpoint_sha = artefacts.refs(only(cache, "checkpoints/*"))["checkpoint_sha"]
    folder = next(p for p in cache.glob("diagnostics/*") if artefacts.refs(p).get("model_sha") == checkpoint_sha)
    truncate(folder / "measures.json")
    return folder


def generation_cache_truncated(cache):
    """The SQLite generation cache cut in half, the evaluations and diagnostics gone so it must be read."""
    shutil.rmtree(cache / "evals")
    shutil.rmtree(cache / "diagnostics")
    path = cache / "generations.sqlite"
    with sqlite3.connect(path) as db:  # fold any WAL into the file first, so the cut hits the data
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    truncate(path)
    return path


def training_nll_truncated(cache):
    """The cached training NLL cut, the run's diagnostics (which embed it) gone so that it must be read."""
    checkpoint_sha = artefacts.refs(only(cache, "checkpoints/*"))["checkpoint_sha"]
    shutil.rmtree(next(p for p in cache.glob("diagnostics/*") if artefacts.refs(p).get("model_sha") == checkpoint_sha))
    path = only(cache, "diagnostics/train-nll/*.json")
    truncate(path)
    return path


FAULTS = {
    "mix rows truncated": mix_rows_truncated,
    "mix metadata truncated": in_folder("mixes/*/mix.json", truncate),
    "checkpoint weights truncated": in_folder("checkpoints/*/model/model.safetensors", truncate),
    "adapter weights corrupted in place": in_folder("checkpoints/*/adapter/adapter_model.safetensors", flip_bytes),
    "training log truncated": in_folder("checkpoints/*/train_log.json", truncate),
    "evaluation results truncated": finetuned_evaluation_truncated,
    "evaluation results edited in place": finetuned_evaluation_edited_in_place,
    "generation cache truncated": generation_cache_truncated,
    "diagnostics truncated": finetuned_diagnostics_truncated,
    "training NLL truncated": training_nll_truncated,
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_damaged_artefact_is_rebuilt_and_the_rerun_records_the_clean_rows(
        fault, clean, data_dir, tmp_path, monkeypatch, caplog, leaderboard_rows):
    cache = tmp_path / "cache"
    shutil.copytree(clean["cache"], cache)
    monkeypatch.setenv("FORGETBENCH_CACHE", str(cache))
    damaged = FAULTS[fault](cache)
    caplog.set_level(logging.INFO)

    assert run(clean["study"], tmp_path / "lb.duckdb", data_dir) == 0

    warnings = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert f" {damaged} is damaged" in warnings[0]  # names the artefact
    assert any((cache / "corrupt").iterdir())  # moved aside, not deleted
    assert leaderboard_rows(tmp_path / "lb.duckdb") == clean["rows"]
    checked, problems = verify_cache(cache)
    assert problems == [] and checked >= 6
