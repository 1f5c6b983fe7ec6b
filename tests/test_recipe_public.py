"""`public:<set>`: every set has its Hub id, split and an adapter for its real schema, tested on
fixture rows that reproduce the Hub schema field for field (tests/fixtures/hub/<set>.jsonl)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_mix

from harness import data as data_module
from harness.config import RecipeEntry
from harness.data import load_conversations, read_records
from harness.public_sets import PUBLIC_SETS
from harness.recipe import describe

FIXTURES = Path(__file__).parent / "fixtures" / "hub"

HUB = {
    "alpaca": ("tatsu-lab/alpaca", None, "train"),
    "dolly": ("databricks/databricks-dolly-15k", None, "train"),
    "lima": ("GAIR/lima", None, "train"),
    "sharegpt": ("anon8231489123/ShareGPT_Vicuna_unfiltered", None, "train"),
    "ultrachat": ("HuggingFaceH4/ultrachat_200k", None, "train_sft"),
    "openhermes": ("teknium/openhermes", None, "train"),
    "openhermes-2.5": ("teknium/OpenHermes-2.5", None, "train"),
    "wildchat": ("allenai/WildChat-1M", None, "train"),
    "evol-instruct": ("WizardLMTeam/WizardLM_evol_instruct_V2_196k", None, "train"),
    "genqa": ("tomg-group-umd/GenQA", None,
              "academic+code+dialog+general+math+mmlu+multiple_choice+task+writing"),
    "tulu-v2": ("allenai/tulu-v2-sft-mixture", None, "train"),
}

# (set, row index) -> expected roles of the adapted conversation
EXPECTED_ROLES = {
    "ultrachat": [["user", "assistant", "user", "assistant"], ["user", "assistant"]],
    "openhermes": [["user", "assistant"], ["user", "assistant"]],
    "openhermes-2.5": [["system", "user", "assistant"], ["user", "assistant", "user", "assistant"]],
    "wildchat": [["user", "assistant", "user", "assistant"], ["user", "assistant"]],
    "evol-instruct": [["user", "assistant"], ["user", "assistant", "user", "assistant"]],
    "genqa": [["user", "assistant"], ["user", "assistant", "user", "assistant"]],
    "tulu-v2": [["user", "assistant"], ["system", "user", "assistant", "user", "assistant"]],
    "lima": [["user", "assistant"], ["user", "assistant", "user", "assistant"]],
    "dolly": [["user", "assistant"], ["user", "assistant"]],
    "alpaca": [["user", "assistant"], ["user", "assistant"]],
    "sharegpt": [["user", "assistant"], ["user", "assistant", "user", "assistant"]],
}


@pytest.fixture
def fake_hub(monkeypatch):
    """Serve each Hub id from its fixture file; record what was asked for."""
    asked = []

    def load(source):
        asked.append((source.hub_id, source.hub_config, source.hub_split))
        name = next(n for n, s in PUBLIC_SETS.items() if s.hub_id == source.hub_id)
        return read_records(FIXTURES / f"{name}.jsonl")

    monkeypatch.setattr(data_module, "_load_hub", load)
    return asked


def test_all_eleven_sets_are_known_with_their_hub_coordinates():
    assert set(PUBLIC_SETS) == set(HUB)
    for name, (hub_id, config, split) in HUB.items():
        source = PUBLIC_SETS[name]
        assert (source.hub_id, source.hub_config, source.hub_split) == (hub_id, config, split), name
    text = describe("public")
    for name in HUB:
        assert name in text


@pytest.mark.parametrize("name", sorted(EXPECTED_ROLES))
def test_hub_schema_adapter_keeps_conversations_multi_turn(name, fake_hub):
    rows = load_conversations(PUBLIC_SETS[name], None)
    assert fake_hub == [HUB[name]]
    assert [[m["role"] for m in r["messages"]] for r in rows] == EXPECTED_ROLES[name]
    raw = read_records(FIXTURES / f"{name}.jsonl")
    for row, conv in zip(raw, rows):
        assert conv["source"] == name
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in conv["messages"])
        # the final answer of the raw row survives verbatim (modulo whitespace)
        text = json.dumps(row, ensure_ascii=False)
        assert json.dumps(conv["messages"][-1]["content"].strip(), ensure_ascii=False)[1:-1] in text


def test_hub_only_set_builds_a_mix_from_the_hub(tiny_model, data_dir, fake_hub):
    entry = RecipeEntry.model_validate("public:tulu-v2")
    mix = make_mix(entry, tiny_model, data_dir)
    rows = [json.loads(line) for line in mix.path.read_text().splitlines()]
    assert sorted(r["source"] for r in rows) == ["medmcqa", "medmcqa", "tulu-v2", "tulu-v2"]
    assert mix.meta["provenance"]["source"] == "Hub id 'allenai/tulu-v2-sft-mixture'"


@pytest.mark.parametrize("name", ["alpaca", "dolly", "lima", "sharegpt"])
def test_mirrored_sets_read_the_mirror(name, data_dir, fake_hub):
    rows = load_conversations(PUBLIC_SETS[name], data_dir)
    assert len(rows) > 1000 and fake_hub == []


def test_sharegpt_hub_repo_loads_its_v3_json_file_through_datasets(monkeypatch, tmp_path):
    """The ShareGPT repo is raw JSON files of different schemas, not one dataset: `datasets` must be
    given the V3 file as data_files. The fixture folder stands in for the repo (a local folder goes
    through the same load_dataset path as a Hub id), with a raw file of another schema beside it."""
    import dataclasses

    import datasets

    from harness.errors import DataError

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path))
    real = PUBLIC_SETS["sharegpt"]
    assert real.hub_data_files == "ShareGPT_V3_unfiltered_cleaned_split.json"
    repo = FIXTURES / "sharegpt-repo"
    rows = load_conversations(dataclasses.replace(real, hub_id=str(repo)), None)
    assert [r["id"] for r in rows] == ["sharegpt/0", "sharegpt/1", "sharegpt/2"]
    assert [[m["role"] for m in r["messages"]] for r in rows] == [
        ["user", "assistant"], ["user", "assistant", "user", "assistant"], ["user", "assistant"]]
    assert rows[2]["messages"][1]["content"] == "def add(a, b):\n    return a + b"
    # the whole repo (no data_files) mixes schemas: one clear line, naming the set and the mirror file
    with pytest.raises(DataError, match=r"sharegpt-repo'.*could not load.*sharegpt_v3_first5000\.json"):
        load_conversations(dataclasses.replace(real, hub_id=str(repo), hub_data_files=None), None)
