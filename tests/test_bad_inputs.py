"""Bad input ends in one line per problem naming the file, line, field or option, a non-zero exit, and
nothing written: no leaderboard row (or file), no cached artefact. `validate` and the preflight of
`run` catch what would otherwise fail after the baseline had been spent."""
from __future__ import annotations

import json

import duckdb
import pytest
from test_leaderboard import make_results, make_run  # the leaderboard tests' own records

from harness.cli import main
from harness.errors import ConfigError, ForgetbenchError
from harness.results import BenchmarkResult, Score
from harness.study_file import load_study
from leaderboard import schema
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
            schema.MIGRATIONS[step](con)
        con.execute("INSERT INTO meta VALUES ('application', ?), ('schema_version', '2')", [schema.APPLICATION])
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


# -- 7: what a hostile user broke (issue 26) ---------------------------------------------------------

def _files_domain(folder, train_rows, test_rows=None, answer="number"):
    """A domain of one's own: rows as {"messages": [...], optional "id"} written to train/test files."""
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    domain = {"name": "own", "train": "train.jsonl", "answer": answer}
    if test_rows is not None:
        (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test_rows))
        domain["test"] = "test.jsonl"
    return domain


def _qa(i, question="What is {i} + 1?", answer="The answer is {j}."):
    return {"messages": [{"role": "user", "content": question.format(i=i)},
                         {"role": "assistant", "content": answer.format(j=i + 1)}]}


def test_an_answer_extractor_from_the_standard_library_is_refused_without_running_it(tiny_study, tmp_path, cache,
                                                                                      capsys):
    marker = tmp_path / "ran"
    rows = [_qa(i, answer=f"touch {marker}") for i in range(8)]
    code, lines = cli(capsys, "validate", tiny_study(domain=_files_domain(tmp_path, rows, rows[:2], "os:system")))
    assert code == 2 and not marker.exists()
    one_error(lines, "domain.answer: extractor 'os:system' is a standard-library callable, not an answer extractor")


def test_an_answer_extractor_returning_a_non_string_is_named(tiny_study, tmp_path, cache, capsys, monkeypatch):
    (tmp_path / "my_extractors.py").write_text("def length(text):\n    return len(text)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = [_qa(i) for i in range(8)]
    code, lines = cli(capsys, "validate", tiny_study(domain=_files_domain(tmp_path, rows, [_qa(20)], "my_extractors:length")))
    assert code == 2
    one_error(lines, "test.jsonl:1: extractor 'my_extractors:length' returned int", "returns a string, or None")


@pytest.mark.parametrize("settings, message", [
    ({"seeds": [-1]}, "seeds[0]: Input should be greater than or equal to 0"),
    ({"seeds": [2**70]}, "seeds[0]: Input should be less than or equal to 4294967295"),
    ({"finetune": {"learning_rate": float("inf")}}, "finetune.learning_rate: expected a finite number, got inf"),
    ({"finetune": {"learning_rate": 1e300}}, "finetune.learning_rate: Input should be less than or equal to 1"),
    ({"finetune": {"lora": {"target_modules": []}}}, "finetune.lora.target_modules: List should have at least 1 item"),
    ({"finetune": {"max_seq_length": 9}}, "finetune.max_seq_length: Input should be greater than or equal to 16"),
    ({"mix": {"size": True}}, "mix.size: expected a number, got true"),
    ({"mix": {"size": 32, "domain_share": 0.99}, "recipes": ["none", "public:alpaca"]},
     "mix.size: 32 rows at domain_share 0.99 leave no rehearsal row for recipe public:alpaca"),
    ({"mix": {"size": 1, "domain_share": 0.17}, "recipes": ["public:alpaca"]},
     "mix.size: 1 rows at domain_share 0.17 leave no rehearsal row"),
], ids=["negative-seed", "huge-seed", "infinite-lr", "huge-lr", "no-lora-targets", "tiny-seq-length",
        "boolean-size", "no-rehearsal-share", "one-row-mix"])
def test_values_that_validated_and_then_crashed_or_recorded_garbage_are_refused(settings, message, tiny_study,
                                                                                 data_dir, cache, capsys):
    code, lines = cli(capsys, "validate", tiny_study(**settings), "--data-dir", data_dir)
    assert code == 2
    one_error(lines, message)


def test_a_leaderboard_path_that_is_not_a_leaderboard_is_refused_by_validate(tiny_study, data_dir, cache, tmp_path,
                                                                              capsys):
    text = tmp_path / "notes.txt"
    text.write_text("my notes\n")
    code, lines = cli(capsys, "validate", tiny_study(leaderboard=str(text)), "--data-dir", data_dir)
    assert code != 0
    one_error(lines, f"{text}: not a forgetbench leaderboard (not a DuckDB database file)")
    assert text.read_text() == "my notes\n"


def test_two_hundred_thousand_seeds_are_checked_in_linear_time(tmp_path):
    from harness.study_file import parse_study

    seeds = list(range(200_000))
    assert len(parse_study({"name": "s", "domain": "medmcqa", "recipes": ["none"], "seeds": seeds}, "s.yaml").seeds) \
        == 200_000  # the quadratic check took 273 s here
    with pytest.raises(ConfigError, match="seeds: seed 7 appears twice"):
        parse_study({"name": "s", "domain": "medmcqa", "recipes": ["none"], "seeds": seeds + [7]}, "s.yaml")


@pytest.mark.parametrize("rows, test, message", [
    ([{"messages": [{"role": "assistant", "content": "The answer is 2."}, {"role": "user", "content": "1 + 1?"}]}]
     + [_qa(i) for i in range(8)], [_qa(20)], "train.jsonl:1: starts with an assistant turn (an answer before its question)"),
    ([{**_qa(i), "id": "same" if i < 2 else f"row{i}"} for i in range(8)], [_qa(20)],
     "train.jsonl:2: id 'same' repeats the row at"),
    ([_qa(i) for i in range(8)], [_qa(i) for i in range(8)], "8 of 8 test rows are also training rows of"),
], ids=["answer-before-question", "repeated-ids", "test-is-train"])
def test_domain_files_that_would_train_or_score_wrongly_are_refused(rows, test, message, tiny_study, tmp_path, cache,
                                                                    capsys):
    code, lines = cli(capsys, "validate", tiny_study(domain=_files_domain(tmp_path, rows, test)))
    assert code == 2
    one_error(lines, message)


def test_validate_names_a_files_domain_without_a_python_repr(tiny_study, tmp_path, cache, capsys):
    assert main(["validate", str(tiny_study(domain=_files_domain(tmp_path, [_qa(i) for i in range(8)], [_qa(20)])))]) == 0
    out = capsys.readouterr().out
    assert "domain own (train " in out and "PosixPath" not in out


def test_an_export_that_fails_or_names_no_study_leaves_the_earlier_export_whole(tmp_path, capsys, monkeypatch):
    board = tmp_path / "lb.duckdb"
    Leaderboard(board).record(make_run("a"), make_results(0.4, 0.6))
    out = tmp_path / "parquet"
    assert main(["export", "--out", str(out), "--leaderboard", str(board)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    code, lines = cli(capsys, "export", "--out", out, "--study", "nosuch", "--leaderboard", board)
    assert code == 2
    one_error(lines, "--study: no runs of study 'nosuch' on this leaderboard")
    from leaderboard import sql

    real = sql.EXPORTED
    monkeypatch.setattr(sql, "EXPORTED", (*real, "no_such_table"))  # fails after writing the four tables
    code, lines = cli(capsys, "export", "--out", out, "--leaderboard", board)
    assert code == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".parquet")]  # no staging folder left
    (out / "mine.txt").write_text("keep")
    monkeypatch.setattr(sql, "EXPORTED", real)
    code, lines = cli(capsys, "export", "--out", out, "--leaderboard", board)
    assert code == 2
    one_error(lines, f"--out {out}: holds 'mine.txt', which is not an earlier export")


def test_report_overwrites_only_an_earlier_report_unless_forced(tmp_path, capsys):
    board = tmp_path / "lb.duckdb"
    Leaderboard(board).record(make_run("a"), make_results(0.4, 0.6))
    notes = tmp_path / "existing.txt"
    notes.write_text("my notes\n")
    code, lines = cli(capsys, "report", "--out", notes, "--leaderboard", board)
    assert code == 2 and notes.read_text() == "my notes\n"
    one_error(lines, f"--out {notes}: exists and is not a forgetbench report; name another file or pass --force")
    report = tmp_path / "report.html"
    assert main(["report", "--out", str(report), "--leaderboard", str(board)]) == 0
    assert main(["report", "--out", str(report), "--leaderboard", str(board)]) == 0  # an earlier report: replaced
    assert main(["report", "--out", str(notes), "--leaderboard", str(board), "--force"]) == 0


@pytest.mark.parametrize("command", [["leaderboard"], ["leaderboard", "--view", "deltas"], ["report", "--out", "r.html"],
                                     ["compare", "a", "b"]])
def test_unknown_study_and_benchmark_names_are_errors_not_empty_output(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    board = tmp_path / "lb.duckdb"
    Leaderboard(board).record(make_run("a"), make_results(0.4, 0.6))
    code, lines = cli(capsys, *command, "--study", "nosuch", "--leaderboard", board)
    assert code == 2
    one_error(lines, "--study: no runs of study 'nosuch' on this leaderboard")
    code, lines = cli(capsys, *command, "--benchmarks", "arcc", "--leaderboard", board)
    assert code == 2
    one_error(lines, "--benchmarks: no scores of 'arcc'; did you mean 'arc'?")


def test_a_truncated_or_foreign_leaderboard_is_refused_before_any_work(tiny_model, data_dir, tmp_path, cache, capsys):
    import sqlite3

    board = tmp_path / "lb.duckdb"
    Leaderboard(board).record(make_run("a"), make_results(0.4, 0.6))
    with open(board, "r+b") as handle:
        handle.truncate(board.stat().st_size // 2)
    for command in (["leaderboard", "migrate"], ["eval", "--model", tiny_model.path, "--suite", "domain", "--limit", "1",
                                                 "--data-dir", data_dir]):
        code, lines = cli(capsys, *command, "--leaderboard", board)
        assert code == 1
        one_error(lines, f"leaderboard {board}: damaged, table", "restore it from a copy")
    assert not (cache / "evals").exists()  # refused before evaluating
    lite = tmp_path / "lite.duckdb"
    sqlite3.connect(lite).execute("CREATE TABLE t (a)").connection.commit()
    code, lines = cli(capsys, "leaderboard", "migrate", "--leaderboard", lite)
    assert code == 1
    one_error(lines, f"{lite}: not a forgetbench leaderboard (an SQLite database, not DuckDB)")


@pytest.mark.parametrize("interrupt_after_commit", [True, False], ids=["after-commit", "before-commit"])
def test_an_interrupt_inside_the_leaderboard_write_says_whether_the_run_was_committed(interrupt_after_commit, tmp_path,
                                                                                     caplog, monkeypatch):
    import contextlib

    board = Leaderboard(tmp_path / "lb.duckdb")
    real = Leaderboard._connect

    class Interrupting:
        def __init__(self, con):
            self.con = con

        def __getattr__(self, name):
            return getattr(self.con, name)

        def commit(self):
            if interrupt_after_commit:
                self.con.commit()
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def connect(self, *, read_only):
        with real(self, read_only=read_only) as con:
            yield con if read_only else Interrupting(con)

    monkeypatch.setattr(Leaderboard, "_connect", connect)
    with pytest.raises(KeyboardInterrupt):  # the interrupt itself, not a rollback error hiding it
        board.record(make_run("a"), make_results(0.4, 0.6))
    said = "the run was committed" if interrupt_after_commit else "nothing of it was written (rolled back)"
    assert f"interrupted while recording run a in {board.path}: {said}" in caplog.text
    monkeypatch.setattr(Leaderboard, "_connect", real)
    assert len(board.runs()) == (1 if interrupt_after_commit else 0)


def test_query_is_bounded_in_time_rows_and_statements(tmp_path, capsys):
    board = tmp_path / "lb.duckdb"
    Leaderboard(board).record(make_run("a"), make_results(0.4, 0.6))
    code, lines = cli(capsys, "query", "SELECT count(*) FROM range(100000000) a, range(100000000) b",
                      "--timeout", "1", "--leaderboard", board)
    assert code == 1
    one_error(lines, "query: stopped after the --timeout of 1 s; nothing was changed")
    assert main(["query", "SELECT range FROM range(2000000000)", "--leaderboard", str(board), "--format", "csv"]) == 0
    printed = capsys.readouterr()
    assert len(printed.out.splitlines()) == 1001 and "the first 1000 rows" in printed.err  # header + the cap
    code, lines = cli(capsys, "query", "SELECT 1; SELECT 2", "--leaderboard", board)
    assert code == 2
    one_error(lines, "SQL: 2 statements given; run one at a time")


@pytest.mark.parametrize("options, message", [
    (["--resamples", "1000000000"], "--resamples: 1000000000 is out of range; use 100 to 1,000,000"),
    (["--seed", "-1"], "--seed: -1 is negative"),
], ids=["huge-resamples", "negative-seed"])
def test_compare_bounds_its_bootstrap(options, message, tmp_path, capsys):
    board = tmp_path / "lb.duckdb"
    for run_id in ("a", "b"):
        Leaderboard(board).record(make_run(run_id), make_results(0.4, 0.6))
    code, lines = cli(capsys, "compare", "a", "b", *options, "--leaderboard", board)
    assert code == 2
    one_error(lines, message)


def test_compare_refuses_a_run_compared_with_itself(tmp_path, capsys):
    board = tmp_path / "lb.duckdb"
    Leaderboard(board).record(make_run("a"), make_results(0.4, 0.6))
    code, lines = cli(capsys, "compare", "a", "a", "--leaderboard", board)
    assert code == 2
    one_error(lines, "RUN_A/RUN_B: 'a' and 'a' share run a; a run compared with itself differs by nothing")


def test_a_mistyped_recipe_name_gets_the_near_one_suggested(tiny_study, data_dir, cache, capsys):
    code, lines = cli(capsys, "validate", tiny_study(recipes=["reconstructed-singel"]), "--data-dir", data_dir)
    assert code == 2
    one_error(lines, "unknown recipe 'reconstructed-singel'; did you mean 'reconstructed-single'?")


def test_evaluating_outside_a_git_checkout_prints_no_git_error(tiny_model, data_dir, tmp_path, forgetbench_process):
    result = forgetbench_process("eval", "--model", tiny_model.path, "--suite", "arc_easy", "--limit", "2",
                                 "--data-dir", data_dir, "--leaderboard", tmp_path / "lb.duckdb", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "not a git repository" not in result.stderr  # lm-eval's `git describe` of the working directory
