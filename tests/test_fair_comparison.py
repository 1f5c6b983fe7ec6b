"""A fair comparison on a small real study (tiny model, real data, the whole run path): every recipe of
a seed trains on the same domain rows, `none` trains on what its `fill` says, `compare` refuses to pair
runs that trained on different domain rows, and no training row is dropped without being asked."""
from __future__ import annotations

import json

import duckdb
import pytest
from conftest import tiny_study_config
from test_bad_inputs import cli, one_error

from harness.cli import main
from harness.config import StudyConfig
from harness.errors import ConfigError
from harness.study import run_study
from leaderboard import Leaderboard
from leaderboard.compare import compare
from leaderboard.views import paper_table

RECIPES = ["none", "none:repeat", "none:extra-domain", "public:alpaca",
           {"name": "sdft-rewrite", "params": {"max_new_tokens": 8, "temperature": 0}}]


@pytest.fixture(scope="module")
def fair_study(tiny_model, data_dir, tmp_path_factory):
    """The five runs of one seed (mix of 8 rows, 2 of them domain rows) on a leaderboard; their mixes."""
    folder = tmp_path_factory.mktemp("fair")
    study = StudyConfig.model_validate(tiny_study_config(
        tiny_model, name="fair", recipes=RECIPES, mix={"size": 8, "domain_share": 0.25},
        finetune={"method": "lora", "max_steps": 1, "batch_size": 4, "max_seq_length": 256}))
    board = folder / "lb.duckdb"
    run_study(study, Leaderboard(board), data_dir)
    with duckdb.connect(str(board), read_only=True) as con:
        mixes = {recipe: json.loads(mix) for recipe, mix in con.execute(
            "SELECT recipe, mix FROM runs WHERE mix IS NOT NULL").fetchall()}
    return Leaderboard(board), mixes


def test_every_recipe_of_a_seed_trains_on_the_same_domain_rows_and_none_alone_on_them_only(fair_study):
    _, mixes = fair_study
    same = {mixes[label]["domain_ids_sha256"] for label in ("none", "public:alpaca", "sdft-rewrite:8,0")}
    assert len(same) == 1
    assert {label: (mix["unique_domain_rows"], mix["domain_rows"], mix["rows"], mix["training"]["rows_used"])
            for label, mix in mixes.items()} == {
        "none": (2, 2, 2, 2),  # the domain share alone
        "none:repeat": (2, 8, 8, 8),  # the same rows, repeated to the mix size
        "none:extra-domain": (8, 8, 8, 8),  # further domain rows in the rehearsal share
        "public:alpaca": (2, 2, 8, 8),
        "sdft-rewrite:8,0": (2, 2, 2, 2),
    }
    assert mixes["none:repeat"]["domain_ids_sha256"] != mixes["none"]["domain_ids_sha256"]
    assert all(mix["training"]["rows_dropped"] == 0 for mix in mixes.values())


def test_the_paper_view_shows_what_each_recipe_trained_on(fair_study):
    board, _ = fair_study
    table = paper_table(board, "fair").set_index("recipe")
    assert list(table.columns[:4]) == ["study", "runs", "domain_rows", "domain_rows_std"]
    assert table.loc["none", ["domain_rows", "trained_rows"]].tolist() == [2, 2]
    assert table.loc["none:extra-domain", ["domain_rows", "trained_rows"]].tolist() == [8, 8]
    assert table.loc["public:alpaca", ["domain_rows", "trained_rows"]].tolist() == [2, 8]
    assert table.loc["baseline", ["domain_rows", "trained_rows"]].isna().all()


def test_compare_refuses_runs_trained_on_different_domain_rows_unless_asked(fair_study):
    board, _ = fair_study
    assert not compare(board, "none", "public:alpaca", study="fair").empty  # the same rows: paired
    assert not compare(board, "baseline", "none:extra-domain", study="fair").empty  # the seed model trained on none
    with pytest.raises(ConfigError, match=r"^RUN_A/RUN_B: trained on different domain rows, seed 0: none:extra-domain "
                                          r"trained on 8 domain rows \(8 distinct\), public:alpaca on 2 \(2 distinct\)"):
        compare(board, "none:extra-domain", "public:alpaca", study="fair")
    with pytest.raises(ConfigError, match="none trained on 2 domain rows .2 distinct., none:repeat on 8 .2 distinct."):
        compare(board, "none", "none:repeat", study="fair")
    allowed = compare(board, "none:extra-domain", "public:alpaca", study="fair", allow_mismatch=True)
    assert set(allowed.mismatched_settings) == {"mix.domain_rows"}
    assert allowed.attrs["mismatches"][0].startswith("mix.domain_rows: seed 0: none:extra-domain trained on 8")


def _long_row_domain(folder, tokens: int) -> dict:
    """A domain of 6 training rows, the first two with prompts of about `tokens` tokens, and 2 test rows."""
    def row(question, answer):
        return json.dumps({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    train = [row("word " * tokens + f"? {i}", f"The answer is {i}.") for i in range(2)]
    train += [row(f"What is {i} + 1?", f"The answer is {i + 1}.") for i in range(2, 6)]
    (folder / "train.jsonl").write_text("\n".join(train) + "\n")
    (folder / "test.jsonl").write_text("\n".join(row(f"What is {i} + 2?", f"The answer is {i + 2}.") for i in range(2)))
    return {"name": "sums", "train": "train.jsonl", "test": "test.jsonl", "answer": "number", "max_new_tokens": 4}


def test_a_study_whose_rows_exceed_max_seq_length_is_refused_by_validate_in_one_line(tiny_study, tmp_path, capsys,
                                                                                       monkeypatch):
    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path / "cache"))
    domain = _long_row_domain(tmp_path, tokens=150)
    # extra-domain over the whole domain: every training row is drawn, the two long ones included
    settings = dict(domain=domain, recipes=["none:extra-domain"], mix={"size": 6, "domain_share": 0.5},
                    finetune={"method": "lora", "max_steps": 1, "batch_size": 2, "max_seq_length": 64})
    code, lines = cli(capsys, "validate", tiny_study(**settings))
    assert code == 2
    one_error(lines, "finetune.max_seq_length: 64 drops 2 of 6 domain rows (seed 0) of recipe none:extra-domain",
              "raise it to", "finetune.drop_long_rows: true")

    settings["finetune"] = {**settings["finetune"], "drop_long_rows": True}
    board = tmp_path / "lb.duckdb"
    assert main(["validate", str(tiny_study(**settings))]) == 0
    printed = capsys.readouterr().out
    assert "none:extra-domain: 6 domain rows per mix" in printed and "dropped: 2" in printed
    assert cli(capsys, "run", tiny_study(**settings), "--leaderboard", board)[0] == 0
    table = paper_table(Leaderboard(board)).set_index("recipe")
    assert table.loc["none:extra-domain", ["domain_rows", "trained_rows"]].tolist() == [6, 4]  # two rows dropped
