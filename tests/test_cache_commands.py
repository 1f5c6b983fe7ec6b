"""Artefact manifests, `forgetbench cache verify` and `forgetbench cache prune`."""
from __future__ import annotations

import json
import os

import pytest

from harness import artefacts
from harness.cli import main
from harness.errors import ModelError
from harness.hashing import hash_file
from harness.models import resolve_model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("FORGETBENCH_CACHE", str(path))
    return path


def run(study, board, data_dir):
    assert main(["run", str(study), "--data-dir", str(data_dir), "--leaderboard", str(board)]) == 0


def test_verify_hashes_what_reuse_trusts_by_size_and_time_and_fix_moves_it_aside(tiny_study, data_dir, cache,
                                                                                  tmp_path, capsys, monkeypatch):
    run(tiny_study(), tmp_path / "lb.duckdb", data_dir)
    assert main(["cache", "verify"]) == 0
    assert capsys.readouterr().out.strip().endswith("artefacts checked, 0 damaged")

    weights = next(cache.glob("checkpoints/*/model/model.safetensors"))
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-8:] = bytes(8)  # same size; then the old modification time put back: only a hash can tell
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    monkeypatch.setattr(artefacts, "ALWAYS_HASH_BYTES", 0)  # as for real weights, larger than the always-hashed
    assert artefacts.problem(weights.parents[1]) is None  # the cheap check used on reuse of large files
    assert artefacts.problem(weights.parents[1], full=True) == "model/model.safetensors differs from its recorded sha256"

    assert main(["cache", "verify"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == (f"damaged checkpoint {weights.parents[1]}: model/model.safetensors differs from its "
                        f"recorded sha256")
    assert lines[1].endswith("1 damaged (run `forgetbench cache verify --fix` to move them aside)")
    assert main(["cache", "verify", "--fix"]) == 0
    assert not weights.parents[1].exists() and len(list((cache / "corrupt").iterdir())) == 1
    capsys.readouterr()
    assert main(["cache", "verify"]) == 0


def test_prune_removes_what_no_leaderboard_row_references_and_keeps_the_rest(tiny_study, data_dir, cache, tmp_path,
                                                                            capsys, caplog, leaderboard_rows):
    kept, dropped = tmp_path / "kept.duckdb", tmp_path / "dropped.duckdb"
    run(tiny_study("a.yaml"), kept, data_dir)
    run(tiny_study("b.yaml", mix={"size": 4, "domain_share": 0.25}), dropped, data_dir)
    assert len(list(cache.glob("mixes/*"))) == len(list(cache.glob("checkpoints/*"))) == 2
    capsys.readouterr()

    assert main(["cache", "prune", "--leaderboard", str(kept), "--dry-run"]) == 0
    assert len(list(cache.glob("mixes/*"))) == 2  # a dry run deletes nothing
    assert main(["cache", "prune", "--leaderboard", str(kept)]) == 0
    out = capsys.readouterr().out
    assert "removed 3 artefacts" in out and "kept 4 in use and 0 of unknown use" in out  # mix, checkpoint, eval
    refs = [json.loads((p / "mix.json").read_text())["sha256"] for p in cache.glob("mixes/*")]
    assert refs == [row[5] for row in leaderboard_rows(kept)["runs"] if row[1] == "none"]
    # each evaluation is one benchmark's result, kept because a score of `kept` records its cache key
    import duckdb

    with duckdb.connect(str(kept), read_only=True) as db:
        recorded = {json.loads(s)["eval_key"] for (s,) in db.execute("SELECT settings FROM scores").fetchall()}
    assert {artefacts.refs(p)["eval_key"] for p in cache.glob("evals/*")} == recorded
    assert {p.name for p in cache.glob("evals/*")} == recorded and len(recorded) == 2  # baseline and `none`

    caplog.set_level("INFO")
    caplog.clear()  # only the rerun's lines (an earlier import of alpaca_eval sets the root logger to INFO)
    rows = leaderboard_rows(kept)
    kept.unlink()
    run(tiny_study("a.yaml"), kept, data_dir)  # everything it needs is still cached
    assert "fine-tune: reusing checkpoint" in caplog.text and "fine-tune (lora)" not in caplog.text
    assert leaderboard_rows(kept) == rows


def test_prune_needs_an_existing_leaderboard(cache, tmp_path, capsys):
    assert main(["cache", "prune", "--leaderboard", str(tmp_path / "none.duckdb")]) == 2
    assert capsys.readouterr().err.strip() == (f"forgetbench: error: --leaderboard {tmp_path / 'none.duckdb'}: no such "
                                               f"leaderboard file (prune keeps what leaderboards use)")


def _legacy_mix(folder, rows):
    """A mix folder as forgetbench wrote it before manifests: mix.jsonl and its hash in mix.json."""
    folder.mkdir(parents=True)
    (folder / "mix.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "mix.json").write_text(json.dumps({"sha256": hash_file(folder / "mix.jsonl")}))
    return folder


def test_an_intact_folder_from_before_manifests_is_sealed_and_a_damaged_one_moved_aside(cache, caplog):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(4)]
    intact = _legacy_mix(cache / "mixes" / "intact", rows)
    assert artefacts.usable(intact, "mix", required=("mix.json", "mix.jsonl"))
    assert (intact / artefacts.MANIFEST).is_file()
    assert artefacts.problem(intact, full=True) is None

    damaged = _legacy_mix(cache / "mixes" / "damaged", rows)
    (damaged / "mix.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))  # still valid JSON lines
    assert not artefacts.usable(damaged, "mix", required=("mix.json", "mix.jsonl"))
    assert not damaged.exists()
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"cached mix {damaged} is damaged (mix.jsonl differs from the sha256 recorded in "
                           f"mix.json): moved to {cache / 'corrupt' / 'mixes-damaged.'}")


def test_a_truncated_safetensors_file_is_named_before_loading(tiny_model, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(tiny_model.path, copy)
    weights = copy / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    assert artefacts.safetensors_problem(weights) == f"safetensors file has {size // 2} bytes, its header describes {size}"
    with pytest.raises(ModelError, match=f"{weights}: safetensors file has {size // 2} bytes"):
        resolve_model(str(copy))


def test_a_damaged_generation_cache_is_moved_aside_and_started_afresh(cache, caplog):
    from harness.generation import GenerationCache

    cache.mkdir()
    (cache / "generations.sqlite").write_bytes(b"this is not a database" * 100)
    store = GenerationCache()
    store.put_many({"k": "v"})
    assert store.get_many(["k"]) == {"k": "v"}
    [line] = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert line.startswith(f"cached generation cache {cache / 'generations.sqlite'} is damaged (not a readable SQLite "
                           f"database: file is not a database)")


def test_a_generation_cache_that_cannot_be_opened_is_one_line_and_not_moved_aside(cache):
    """Locked, unopenable or read-only is the environment, not damage: nothing is quarantined."""
    from harness.errors import ForgetbenchError

    unopenable = cache / "a-folder.sqlite"
    unopenable.mkdir(parents=True)
    with pytest.raises(ForgetbenchError, match=rf"^{unopenable}: cannot check this SQLite cache \(unable to open"):
        artefacts.sqlite_problem(unopenable)
    assert unopenable.is_dir() and not (cache / artefacts.QUARANTINE).exists()
