"""Category profile: the seed model classifies rehearsal instructions zero-shot into the Magpie task
categories; the distribution is stored in the mix's meta (never changing the rows or the mix hash),
classifications are cached, and the leaderboard shows recipes' profiles side by side."""
from __future__ import annotations

import json

import duckdb
import pytest
from conftest import make_mix

from harness.cli import main
from harness.generation import GenerationCache
from harness.results import RunRecord
from harness.task_categories import CATEGORIES, PROMPT_SHA, CategoryClassifier, distribution, total_variation
from leaderboard.store import Leaderboard

INSTRUCTIONS = [
    "Write a Python function that reverses a string.",
    "Solve for x: 3x + 5 = 20.",
    "Compose a haiku about autumn leaves.",
    "What is the capital of Australia?",
    "Correct the grammar: she go to school yesterday.",
    "Pretend you are a pirate captain and greet your crew.",
    "Give me ten name ideas for a coffee shop.",
    "How can I sleep better? I keep waking up at night.",
]


def test_real_smollm2_classifier_is_deterministic_and_cached(real_model, tmp_path):
    cache = GenerationCache(tmp_path / "categories.sqlite")
    classifier = CategoryClassifier(real_model, cache=cache)
    labels = classifier.classify(INSTRUCTIONS)
    assert classifier.scored == 8 and set(labels) <= set(CATEGORIES)
    assert len(set(labels)) >= 3  # calibrated scoring does not collapse onto one label
    dist = distribution(labels)
    assert dist["n"] == 8 and sum(dist["counts"].values()) == 8 and list(dist["counts"]) == list(CATEGORIES)
    assert sum(dist["shares"].values()) == pytest.approx(1.0, abs=1e-3)

    # other batches and padding (reversed order), same model state, empty cache: the same labels
    classifier.cache = GenerationCache(tmp_path / "again.sqlite")
    assert classifier.classify(INSTRUCTIONS[::-1]) == labels[::-1]

    # a new classifier on the first cache: nothing scored, the model is never even loaded
    fresh = CategoryClassifier(real_model, cache=cache)
    assert fresh.classify(INSTRUCTIONS) == labels and fresh.scored == 0 and fresh._state is None


def build(entry, tiny_model, data_dir, size=12, share=0.25):
    return make_mix(entry, tiny_model, data_dir, size=size, share=share)


def test_mix_meta_carries_the_rehearsal_profile_and_old_mixes_gain_it_on_read(tiny_model, data_dir, monkeypatch):
    mix = build("public:alpaca", tiny_model, data_dir)
    profile = mix.meta["profile"]
    assert profile["n"] == 9 and sum(profile["counts"].values()) == 9  # 12 rows, 3 domain
    assert profile["classifier_model"] == tiny_model.sha and profile["prompt_sha256"] == PROMPT_SHA

    # a mix stored before profiles existed: reading it adds the profile, from the classification cache
    rows_before, sha_before = mix.path.read_bytes(), mix.sha
    meta_file = mix.path.parent / "mix.json"
    old = json.loads(meta_file.read_text())
    del old["profile"]
    meta_file.write_text(json.dumps(old))
    monkeypatch.setattr(CategoryClassifier, "_predict", lambda self, texts: pytest.fail("classified again"))
    again = build("public:alpaca", tiny_model, data_dir)
    assert again.meta["profile"] == profile and json.loads(meta_file.read_text())["profile"] == profile
    assert again.sha == sha_before and again.path.read_bytes() == rows_before


def test_domain_only_mix_has_an_empty_profile(tiny_model, data_dir):
    profile = build("none", tiny_model, data_dir).meta["profile"]
    assert profile["n"] == 0 and profile["shares"] == {} and set(profile["counts"].values()) == {0}


def _record(board, run_id, recipe, seed, profile):
    board.record(RunRecord(
        run_id=run_id, study="s", recipe=recipe, recipe_params={}, seed=seed, base_model="m", base_model_sha="b",
        checkpoint_sha=f"c-{run_id}", mix_sha=f"m-{run_id}", config_hash="cfg", finetune_config_hash="ft",
        eval_config_hash="e", data_hashes={}, package_versions={"duckdb": duckdb.__version__},
        started_at="2025-01-01T00:00:00+00:00", finished_at="2025-01-01T01:00:00+00:00",
        domain="medmcqa", generation_backend="transformers", mix={"profile": profile}), [])


def test_leaderboard_profile_shows_shares_side_by_side_with_distances(tiny_model, data_dir, tmp_path, capsys):
    alpaca = build("public:alpaca", tiny_model, data_dir).meta["profile"]
    dolly = build("public:dolly", tiny_model, data_dir).meta["profile"]
    board = Leaderboard(tmp_path / "board.duckdb")
    _record(board, "a0", "public:alpaca", 0, alpaca)
    _record(board, "d0", "public:dolly", 0, dolly)
    _record(board, "d1", "public:dolly", 1, dolly)  # a second seed: counts add up
    _record(board, "n0", "none", 0, distribution([]))  # no rehearsal rows: not shown

    assert main(["leaderboard", "profile", "--leaderboard", str(tmp_path / "board.duckdb"), "--study", "s",
                 "--format", "json"]) == 0
    table = {row["category"]: row for row in json.loads(capsys.readouterr().out)}
    assert list(table) == [*CATEGORIES, "TVD vs public:alpaca", "TVD vs public:dolly"]
    a, d = "public:alpaca (n=9)", "public:dolly (n=18)"
    for category in CATEGORIES:
        assert table[category][a] == pytest.approx(alpaca["counts"][category] / 9, abs=1e-4)
        assert table[category][d] == pytest.approx(dolly["counts"][category] / 9, abs=1e-4)
    tvd = total_variation(alpaca["shares"], dolly["shares"])
    assert table["TVD vs public:alpaca"][a] == 0 and table["TVD vs public:alpaca"][d] == pytest.approx(tvd, abs=1e-3)

    assert main(["leaderboard", "profile", "--leaderboard", str(tmp_path / "board.duckdb"),
                 "--recipe", "public:dolly", "--reference", "public:alpaca"]) == 0
    text = capsys.readouterr().out
    assert "public:dolly (n=18)" in text and "TVD vs public:alpaca" in text and "public:alpaca (n" not in text
    assert main(["leaderboard", "profile", "--leaderboard", str(tmp_path / "board.duckdb"), "--recipe", "none"]) == 2
    assert "--recipe: no category profile for none" in capsys.readouterr().err


def test_profile_command_profiles_a_public_set_or_a_file(tiny_model, data_dir, tmp_path, capsys):
    assert main(["profile", "--data", "alpaca", "--model", str(tiny_model.path), "--limit", "5",
                 "--data-dir", str(data_dir), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["category"] for r in rows] == list(CATEGORIES) and sum(r["count"] for r in rows) == 5
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": text},
                                                       {"role": "assistant", "content": "ok"}]})
                              for text in INSTRUCTIONS[:3]))
    assert main(["profile", "--data", str(path), "--model", str(tiny_model.path), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "category,count,share"
    assert main(["profile", "--data", str(tmp_path / "nope.json"), "--model", str(tiny_model.path)]) == 1
    assert "neither a public set" in capsys.readouterr().err
