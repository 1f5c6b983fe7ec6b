"""A domain of one's own: files named by the study, or a Domain registered by an installed package."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from harness.answers import answer_extractor
from harness.cli import main
from harness.config import EvalConfig
from harness.domains import BUNDLED, DomainFiles, check_domain_data, file_domain, registry
from harness.errors import ConfigError
from harness.evaluation.suite import eval_config_hash
from harness.hashing import hash_file

WORDS = "zero one two three four five six seven eight nine".split()


def word_sum(i: int) -> dict:
    a, b = i % 10, (i * 7) % 10
    return {"id": f"s{i}", "messages": [{"role": "user", "content": f"What is {WORDS[a]} plus {WORDS[b]}?"},
                                        {"role": "assistant", "content": f"The answer is {a + b}."}]}


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


@pytest.fixture
def word_sums(tmp_path):
    """A word-sums domain in tmp_path/data: 20 train rows (messages) and 4 test rows (Alpaca-style)."""
    write_jsonl(tmp_path / "data" / "train.jsonl", [word_sum(i) for i in range(20)])
    test = [{"instruction": row["messages"][0]["content"] + " Answer with a number.", "output": row["messages"][1]["content"]}
            for row in map(word_sum, range(20, 24))]  # worded apart from the training rows (the same sums recur)
    write_jsonl(tmp_path / "data" / "test.jsonl", test)
    return {"name": "word-sums", "train": "data/train.jsonl", "test": "data/test.jsonl", "answer": "number",
            "max_new_tokens": 8}


def test_bundled_domains_are_registered_through_entry_points_and_their_mirror_files_check_clean(data_dir):
    assert {name: domain for name, domain in registry().items() if name in BUNDLED} == BUNDLED
    for domain in BUNDLED.values():
        assert check_domain_data(domain, data_dir) == [], domain.name


@pytest.mark.parametrize("spec, text, answer", [
    ("exact", "  Paris \n", "Paris"),
    ("regex:Final: (\\w+)", "so... Final: B.", "B"),
    ("regex:\\d+", "about 42 apples", "42"),
    ("harness.domains:extract_letter", "The answer is C.", "C"),
    ("number", "The answer is 1,200.", "1200"),
])
def test_answer_specs_name_extractors(spec, text, answer):
    assert answer_extractor(spec)(text) == answer


@pytest.mark.parametrize("spec, message", [
    ("roman", "unknown extractor 'roman'"), ("regex:(", "does not compile"),
    ("harness.domains:no_such", "cannot load extractor"),
])
def test_bad_answer_specs_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        answer_extractor(spec)


def test_validate_names_every_bad_line_of_the_domain_files(tiny_study, tmp_path, word_sums, capsys):
    train = write_jsonl(tmp_path / "data" / "train.jsonl", [
        word_sum(0), "{not json", {"messages": [{"role": "user", "content": "hi"}]}, {"question": "no schema"},
        word_sum(1)])
    test = write_jsonl(tmp_path / "data" / "test.jsonl", [word_sum(2), {
        "messages": [{"role": "user", "content": "two plus two?"}, {"role": "assistant", "content": "four"}]}])
    assert main(["validate", str(tiny_study(domain=word_sums))]) == 2
    err = capsys.readouterr().err
    assert f"{train}:2: malformed JSON line" in err
    assert f"{train}:3: has no assistant answer" in err
    assert f"{train}:4: does not match the word-sums schema: expected a 'messages' list, ShareGPT" in err
    assert f"{test}:2: the answer extractor 'number' reads no answer" in err
    assert f"{train}:1" not in err and f"{test}:1" not in err


def test_validate_rejects_an_empty_domain_file(tiny_study, tmp_path, word_sums, capsys):
    (tmp_path / "data" / "test.jsonl").write_text("\n")
    assert main(["validate", str(tiny_study(domain=word_sums))]) == 2
    assert f"{tmp_path / 'data' / 'test.jsonl'}: domain 'word-sums' has no test rows" in capsys.readouterr().err


def test_relative_domain_paths_resolve_against_the_study_folder(tiny_study, tmp_path, word_sums):
    from harness.study_file import load_study

    folder = tmp_path / "studies"
    folder.mkdir()
    study = load_study(tiny_study(name="studies/s.yaml", domain={**word_sums, "train": "../data/train.jsonl",
                                                                  "test": "../data/test.jsonl"}))
    assert study.domain.train == (tmp_path / "data" / "train.jsonl").resolve()


def test_without_a_test_file_a_fixed_hash_of_train_holds_rows_out(tmp_path, word_sums):
    write_jsonl(tmp_path / "many.jsonl", [word_sum(i) for i in range(60)])
    domain = file_domain(DomainFiles(name="w", train=tmp_path / "many.jsonl", answer="number"))
    train, test = domain.train_rows(None), domain.test_rows(None)
    assert test and len(train) + len(test) == 60
    assert not {r["id"] for r in train} & {r["id"] for r in test}
    assert test[0]["id"].startswith("w/s")  # the rows' own ids


def test_domain_file_contents_and_answer_rule_key_the_evaluation(tmp_path, word_sums):
    files = DomainFiles(name="w", train=write_jsonl(tmp_path / "a.jsonl", [word_sum(0)]),
                        test=write_jsonl(tmp_path / "t.jsonl", [word_sum(1)]), answer="number")
    before = eval_config_hash(EvalConfig(benchmarks=["domain"]), file_domain(files), None, "transformers")
    as_exact = eval_config_hash(EvalConfig(benchmarks=["domain"]), file_domain(files.model_copy(update={"answer": "exact"})),
                                None, "transformers")
    write_jsonl(tmp_path / "t.jsonl", [word_sum(2)])
    after = eval_config_hash(EvalConfig(benchmarks=["domain"]), file_domain(files), None, "transformers")
    assert len({before, as_exact, after}) == 3


def test_a_study_runs_on_a_domain_written_by_the_test(tiny_study, tmp_path, word_sums, leaderboard_rows):
    board = tmp_path / "lb.duckdb"
    assert main(["run", str(tiny_study(domain=word_sums)), "--leaderboard", str(board)]) == 0
    rows = leaderboard_rows(board)
    assert sorted(r[1] for r in rows["runs"]) == ["baseline", "none"]
    assert all(json.loads(r[8])["domain_train"] == hash_file(tmp_path / "data" / "train.jsonl") for r in rows["runs"])
    assert {(s[1], s[5]) for s in rows["scores"]} == {("domain", 2)}
    with duckdb.connect(str(board), read_only=True) as db:
        examples = {r[0] for r in db.execute("SELECT example_id FROM examples").fetchall()}
    assert examples <= {f"word-sums/{i}" for i in range(4)}  # Alpaca-style test rows carry no ids


def test_a_study_runs_on_a_domain_registered_by_an_installed_package(installed_distribution, forgetbench_process,
                                                                      tiny_study, tmp_path):
    site = installed_distribution("domain_plugin_example")
    listing = forgetbench_process("validate", tiny_study(domain="word-sums"), site=site)
    assert listing.returncode == 0, listing.stderr
    board = tmp_path / "lb.duckdb"
    result = forgetbench_process("run", tiny_study(domain="word-sums"), "--leaderboard", board, site=site)
    assert result.returncode == 0, result.stderr[-3000:]
    with duckdb.connect(str(board), read_only=True) as db:
        scores = db.execute("SELECT recipe, n FROM scores JOIN runs USING (run_id) ORDER BY recipe").fetchall()
        hashes = [json.loads(r[0]) for r in db.execute("SELECT data_hashes FROM runs").fetchall()]
    assert scores == [("baseline", 2), ("none", 2)]
    assert {h["domain_test"] for h in hashes} == {hash_file(site / "fb_word_sums" / "test.jsonl")}


def test_eval_scores_a_model_on_a_domain_file_alone(tiny_model, tmp_path, capsys):
    test = write_jsonl(tmp_path / "sums.jsonl", [word_sum(i) for i in range(3)])
    board = tmp_path / "lb.duckdb"
    assert main(["eval", "--model", str(tiny_model.path), "--base-model", str(tiny_model.path), "--domain-file",
                 str(test), "--answer", "number", "--max-new-tokens", "4", "--leaderboard", str(board)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("domain ") and "(n=3," in out[0] and out[1].startswith("recorded ")


def test_eval_rejects_a_domain_file_the_extractor_cannot_read(tiny_model, tmp_path, capsys):
    test = write_jsonl(tmp_path / "sums.jsonl", [word_sum(0), {"instruction": "Name it.", "output": "none"}])
    assert main(["eval", "--model", str(tiny_model.path), "--domain-file", str(test), "--answer", "number",
                 "--leaderboard", str(tmp_path / "lb.duckdb")]) != 0
    assert f"{test}:2: the answer extractor 'number' reads no answer" in capsys.readouterr().err
