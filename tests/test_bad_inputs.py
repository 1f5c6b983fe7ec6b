"""Bad input ends in one line per problem naming the file, line, field or option, a non-zero exit, and
nothing written: no leaderboard row (or file), no cached artefact. `validate` and the preflight of
`run` catch what would otherwise fail after the baseline had been spent."""
from __future__ import annotations

import json

import duckdb
import pytest
from test_leaderboard import make_results, make_run  # the leaderboard tests' own records

from harness.cli import main
from harness.config import load_study
from harness.errors import ConfigError, ForgetbenchError
from harness.results import BenchmarkResult, Score
from leaderboard import store
from leaderboard.store import Leaderboard

MEDMCQA = "domain/medmcqa/medmcqa_dev_filtered.jsonl"


def cli(capsys, *args) -> tuple[int, list[str]]:
    """Exit code and stderr lines of `forgetbench ARGS` (run in this process)."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


def one_error(lines: list[str], *needles: str) -> str:
    """The single stderr line, checked to be a forgetbench error holding every needle."""
    assert len(lines) == 1, lines
    assert lines[0].startswith("forgetbench: error: ") and all(n in lines[0] for n in needles), lines[0]
    return lines[0]


@pytest.fixture
def mirror(tmp_path, data_dir):
    """A data mirror holding only the MedMCQA file, with its first rows: edit it to inject faults."""
    def make(text: str | bytes | None = None, rows: int = 60):
        folder = tmp_path / "mirror"
        path = folder / MEDMCQA
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            text = "".join((data_dir / MEDMCQA).read_text(encoding="utf-8").splitlines(keepends=True)[:rows])
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return folder
    return make


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("FORGETBENCH_CACHE", str(path))
    return path


def assert_nothing_written(cache, board):
    assert not board.exists()
    assert not any((cache / kind).exists() for kind in ("mixes", "checkpoints", "evals", "diagnostics"))


# -- 2: validate and run's preflight ----------------------------------------------------------------

def test_an_empty_domain_file_is_refused_by_validate_and_run_before_any_work(tiny_study, mirror, cache, tmp_path, capsys):
    data, board = mirror(""), tmp_path / "lb.duckdb"
    for command in ("validate", "run"):
        extra = ["--leaderboard", board] if command == "run" else []
        code, lines = cli(capsys, command, tiny_study(), "--data-dir", data, *extra)
        assert code != 0 and lines and all(line.startswith("forgetbench: error: ") for line in lines)
        assert any(f"{data / MEDMCQA}: domain 'medmcqa' has no training rows" in line for line in lines), lines
    assert_nothing_written(cache, board)


def test_a_mix_larger_than_the_domain_allows_is_refused(tiny_study, mirror, cache, tmp_path, capsys):
    data = mirror(rows=20)  # about 16 training rows after the held-out split
    code, lines = cli(capsys, "validate", tiny_study(mix={"size": 40, "domain_share": 0.5}), "--data-dir", data)
    assert code == 2
    one_error(lines, "mix.size: 40 rows at domain_share 0.5 take 20 domain rows for recipe none", "training rows")
    code, lines = cli(capsys, "validate", tiny_study(mix={"size": 8, "domain_share": 0.5}), "--data-dir", data)
    assert code == 0, lines


def test_lora_target_modules_naming_no_module_of_the_model_are_refused(tiny_study, data_dir, cache, tmp_path, capsys):
    study = tiny_study(finetune={"method": "lora", "max_steps": 1, "lora": {"target_modules": ["q_proj", "qkv"]}})
    code, lines = cli(capsys, "run", study, "--data-dir", data_dir, "--leaderboard", tmp_path / "lb.duckdb")
    assert code != 0
    one_error(lines, "finetune.lora.target_modules: 'qkv' names no module of", "q_proj", "v_proj")
    assert_nothing_written(cache, tmp_path / "lb.duckdb")


def test_a_base_model_path_that_is_missing_or_has_no_config_is_refused(tiny_study, data_dir, cache, tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "model"
    code, lines = cli(capsys, "validate", tiny_study(base_model=str(missing)), "--data-dir", data_dir)
    assert code != 0
    one_error(lines, f"'{missing}'", "no such local checkpoint directory")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    code, lines = cli(capsys, "validate", tiny_study(base_model=str(empty)), "--data-dir", data_dir)
    assert code != 0
    one_error(lines, f"'{empty}'", "no config.json")


@pytest.mark.parametrize("config", ["{not json", '{"model_type": "no-such-architecture"}', '{"model_type": "vit"}'],
                         ids=["broken-json", "unknown-model-type", "not-a-causal-lm"])
def test_a_base_model_whose_config_cannot_build_a_causal_lm_is_one_line(config, tiny_study, data_dir, cache, tmp_path,
                                                                         capsys):
    model = tmp_path / "odd-model"
    model.mkdir()
    (model / "config.json").write_text(config)
    code, lines = cli(capsys, "validate", tiny_study(base_model=str(model)), "--data-dir", data_dir)
    assert code != 0
    one_error(lines, f"model '{model}'")


def test_a_hub_id_while_offline_is_refused_by_validate(tiny_study, data_dir, cache, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, lines = cli(capsys, "validate", tiny_study(base_model="forgetbench-tests/no-such-model"), "--data-dir", data_dir)
    assert code != 0
    one_error(lines, "'forgetbench-tests/no-such-model'", "HF_HUB_OFFLINE=1")


def test_no_score_with_n_zero_reaches_the_leaderboard(tmp_path):
    board = Leaderboard(tmp_path / "lb.duckdb")
    empty = BenchmarkResult("domain", "accuracy", [Score("accuracy", float("nan"), None, 0)], [])
    with pytest.raises(ForgetbenchError, match="run a, benchmark domain: metric accuracy was measured on n=0 examples"):
        board.record(make_run("a"), [empty])
    assert board.runs().empty


# -- 3: duplicates ---------------------------------------------------------------------------------

def test_duplicate_seeds_and_recipes_are_refused_by_validate(tiny_study, data_dir, cache, capsys):
    code, lines = cli(capsys, "validate", tiny_study(seeds=[0, 1, 0]), "--data-dir", data_dir)
    assert code == 2
    one_error(lines, "seeds: seed 0 appears twice")
    code, lines = cli(capsys, "validate", tiny_study(recipes=["none", "public:alpaca", {"name": "none"}]),
                      "--data-dir", data_dir)
    assert code == 2
    one_error(lines, "recipes[2]: none repeats recipes[0]")


# -- 4: one line instead of a traceback ------------------------------------------------------------

def test_non_utf8_bytes_in_a_study_file_name_the_line(tmp_path, capsys):
    study = tmp_path / "study.yaml"
    study.write_bytes(b"name: s\ndomain: medmcqa\nrecipes: [none]  # caf\xe9\n")
    code, lines = cli(capsys, "validate", study)
    assert code == 2
    one_error(lines, f"{study}: line 3: not UTF-8 text (byte 0xe9")


def test_non_utf8_bytes_in_a_data_file_name_the_file_and_line(tiny_study, data_dir, mirror, cache, capsys):
    good = (data_dir / MEDMCQA).read_bytes().split(b"\n")[:3]
    data = mirror(b"\n".join([good[0], good[1].replace(b"question", b"questi\xff\xfeon", 1), good[2]]))
    code, lines = cli(capsys, "validate", tiny_study(), "--data-dir", data)
    assert code != 0
    one_error(lines, f"{data / MEDMCQA}:2: not UTF-8 text (byte 0xff")


@pytest.mark.parametrize("change, message", [
    (lambda row: {**row, "options": list(row["options"].values())}, "'options' must map letters to option texts, got a list"),
    (lambda row: {**row, "answer_idx": "E"}, "'answer_idx' 'E' is not one of the options ['A', 'B', 'C', 'D']"),
    (lambda row: {k: v for k, v in row.items() if k != "question"}, "no field 'question'"),
    (lambda row: ["not", "an", "object"], "expected a JSON object, got list"),
])
def test_a_malformed_domain_row_is_named_with_what_is_wrong(change, message, tiny_study, data_dir, mirror, cache, capsys):
    rows = [json.loads(line) for line in (data_dir / MEDMCQA).read_text(encoding="utf-8").splitlines()[:30]]
    rows[4] = change(rows[4])
    data = mirror("".join(json.dumps(row) + "\n" for row in rows))
    code, lines = cli(capsys, "validate", tiny_study(), "--data-dir", data)
    assert code != 0
    one_error(lines, f"{data / MEDMCQA}:5: does not match the medmcqa schema: {message}")


def test_a_checksum_corrupt_leaderboard_is_one_line_naming_the_file(tmp_path, capsys):
    path = tmp_path / "lb.duckdb"
    board = Leaderboard(path)
    board.record(make_run("a"), make_results(0.4, 0.6))
    data = bytearray(path.read_bytes())
    for offset in range(12388, 12420):  # inside the first block after DuckDB's 12 KiB of file headers
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    for command in (["query", "SELECT * FROM runs"], ["leaderboard"], ["report", "--out", tmp_path / "r.html"]):
        code, lines = cli(capsys, *command, "--leaderboard", path)
        assert code == 1
        one_error(lines, f"leaderboard {path}: cannot open: Corrupt database file")
    assert not (tmp_path / "r.html").exists()


def test_output_paths_under_an_existing_file_fail_before_any_work(tiny_model, tmp_path, cache, data_dir, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    board = tmp_path / "lb.duckdb"
    Leaderboard(board).record(make_run("a"), make_results(0.4, 0.6))
    code, lines = cli(capsys, "eval", "--model", tiny_model.path, "--suite", "domain", "--limit", "1",
                      "--data-dir", data_dir, "--leaderboard", blocker / "lb.duckdb")
    assert code == 2
    one_error(lines, f"--leaderboard {blocker / 'lb.duckdb'}: cannot be created, {blocker} is a file, not a folder")
    assert not (cache / "evals").exists()  # refused before evaluating
    for command, option in ((["report", "--out", blocker / "r.html"], "--out"),
                            (["export", "--out", blocker / "parquet"], "--out"),
                            (["leaderboard", "--export", blocker / "parquet"], "--export")):
        code, lines = cli(capsys, *command, "--leaderboard", board)
        assert code == 2
        one_error(lines, f"{option} {blocker}/", f"{blocker} is a file, not a folder")
    code, lines = cli(capsys, "export", "--out", blocker, "--leaderboard", board)
    assert code == 2
    one_error(lines, f"--out {blocker}: exists and is not a folder")


def test_a_cache_under_an_existing_file_is_one_line(tiny_study, data_dir, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FORGETBENCH_CACHE", str(blocker / "cache"))
    code, lines = cli(capsys, "run", tiny_study(), "--data-dir", data_dir, "--leaderboard", tmp_path / "lb.duckdb")
    assert code == 2
    one_error(lines, f"cache (FORGETBENCH_CACHE) {blocker / 'cache'}: cannot be created, {blocker} is a file")
    assert not (tmp_path / "lb.duckdb").exists()


@pytest.mark.parametrize("option", ["--max-new-tokens", "--limit", "--batch-size"])
def test_eval_names_a_bad_numeric_option(option, tmp_path, capsys):
    code, lines = cli(capsys, "eval", "--model", "smollm2-135m-instruct", "--suite", "domain", option, "-1",
                      "--leaderboard", tmp_path / "lb.duckdb")
    assert code == 2
    one_error(lines, f"{option}: must be at least 1, got -1")


# -- 5: read commands never write ------------------------------------------------------------------

def _v2_file(path):
    """A leaderboard exactly as forgetbench wrote it at schema version 2, with one run."""
    with duckdb.connect(str(path)) as con:
        for step in (1, 2):
            store.MIGRATIONS[step](con)
        con.execute("INSERT INTO meta VALUES ('application', ?), ('schema_version', '2')", [store.APPLICATION])
        con.execute("INSERT INTO runs VALUES ('r1', 's', 'baseline', '{}', 0, 'm', 'b', 'c', NULL, 'h', NULL, "
                    "'e', '{}', '{}', 't0', 't1', 'finished', '{}')")
    return path


def test_query_on_an_old_schema_file_refuses_without_changing_a_byte(tmp_path, capsys):
    path = _v2_file(tmp_path / "old.duckdb")
    before = path.read_bytes()
    for command in (["query", "SELECT count(*) FROM runs"], ["leaderboard", "--view", "runs"]):
        code, lines = cli(capsys, *command, "--leaderboard", path)
        assert code == 1
        one_error(lines, f"leaderboard {path}: schema_version 2 predates",
                  f"forgetbench leaderboard migrate --leaderboard {path}")
        assert path.read_bytes() == before
    code, _ = cli(capsys, "leaderboard", "migrate", "--leaderboard", path)
    assert code == 0
    assert main(["query", "SELECT run_id FROM runs", "--leaderboard", str(path), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["run_id", "r1"]


# -- 6: duplicated YAML keys -----------------------------------------------------------------------

def test_a_key_given_twice_in_a_study_file_is_refused_naming_key_and_lines(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("name: s\ndomain: medmcqa\nrecipes: [none]\nmix:\n  size: 8\n  size: 80\n")
    with pytest.raises(ConfigError) as error:
        load_study(study)
    assert error.value.lines == [f"{study}: line 6: invalid YAML (key 'size' appears twice (first on line 5))"]
