"""The loader turns every format into one `messages` form, and bad data into one clear line."""
from __future__ import annotations

import json

import pytest

from harness.answers import extract_call, extract_letter, extract_number
from harness.data import (
    DataSource,
    alpaca_messages,
    chat_messages,
    check_conversation,
    is_usable,
    load_conversations,
    read_records,
    sharegpt_messages,
)
from harness.domains import BUNDLED, get_domain
from harness.errors import ConfigError, DataError
from harness.public_sets import PUBLIC_SETS


def test_alpaca_input_is_appended_to_the_instruction():
    messages = alpaca_messages({"instruction": "Translate.", "input": "Hallo", "output": "Hello"})
    assert messages == [{"role": "user", "content": "Translate.\n\nHallo"}, {"role": "assistant", "content": "Hello"}]


def test_sharegpt_stays_multi_turn():
    row = {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"},
                             {"from": "human", "value": "c"}, {"from": "gpt", "value": "d"}]}
    assert [m["role"] for m in sharegpt_messages(row)] == ["user", "assistant", "user", "assistant"]


def test_sharegpt_drops_leading_answers_and_maps_other_speakers_to_assistant():
    row = {"conversations": [{"from": "gpt", "value": "hello"}, {"from": "human", "value": "q"},
                             {"from": "bing", "value": "a"}]}
    assert sharegpt_messages(row) == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_chat_messages_pass_through():
    row = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}
    assert chat_messages(row) == row["messages"]


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"messages": []}\n{"messages": [oops\n')
    with pytest.raises(DataError, match=r"rows.jsonl:2: malformed JSON line"):
        read_records(path)


def test_row_in_the_wrong_schema_names_the_row(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"instruction": "x", "output": "y"}, {"prompt": "no"}]))
    source = DataSource("mine", alpaca_messages, "rows.json")
    with pytest.raises(DataError, match=r"rows.json: row 1: does not match the mine schema"):
        load_conversations(source, tmp_path)


def test_missing_mirror_file_names_both_ways_to_supply_it(tmp_path):
    with pytest.raises(DataError) as info:
        load_conversations(PUBLIC_SETS["alpaca"], tmp_path)
    message = str(info.value)
    assert "alpaca_2k.json" in message and "FORGETBENCH_DATA_DIR" in message and "tatsu-lab/alpaca" in message


def test_hub_failure_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"Hub id 'tatsu-lab/alpaca'.*could not load.*--data-dir"):
        load_conversations(PUBLIC_SETS["alpaca"], None)


def test_every_public_set_in_the_mirror_loads(data_dir):
    mirrored = {name: source for name, source in PUBLIC_SETS.items() if source.local_path}
    assert set(mirrored) == {"alpaca", "dolly", "lima", "sharegpt"}
    for name, source in mirrored.items():
        rows = load_conversations(source, data_dir)
        assert len(rows) >= 1000, name
        usable = [row for row in rows if is_usable(row)]
        assert len(usable) >= 0.98 * len(rows), name
        for row in usable:
            check_conversation(row, name)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_every_bundled_domain_has_disjoint_train_and_test_rows(data_dir, name):
    domain = get_domain(name)
    train, test = domain.train_rows(data_dir), domain.test_rows(data_dir)
    assert train and test
    train_prompts = {json.dumps(r["messages"]) for r in train}
    if domain.train.local_path != domain.test.local_path:
        return  # separate official splits
    assert not train_prompts & {json.dumps(r["messages"]) for r in test}
    reference = test[0]["messages"][-1]["content"]
    assert domain.score(reference, reference) == 1.0  # the reference answer scores as correct


def test_unknown_domain():
    with pytest.raises(ConfigError, match="unknown domain 'x'"):
        get_domain("x")


def test_check_conversation_requires_an_answer():
    with pytest.raises(DataError, match="no assistant answer"):
        check_conversation({"id": "a", "source": "s", "messages": [{"role": "user", "content": "hi"}]}, "test")


@pytest.mark.parametrize("text, letter", [
    ("The answer is C. Amniotic fluid", "C"), ("B) because", "B"), ("I think (D) is right", "D"),
    ("answer is (A)", "A"), ("no idea", None),
])
def test_extract_letter(text, letter):
    assert extract_letter(text) == letter


@pytest.mark.parametrize("text, number", [
    ("so 4+4=8\n#### 8", "8"), ("The answer is 1,200.", "1200"), ("we get 3 then 7.50", "7.5"),
    ("The answer is $18.", "18"), ("nothing", None),
])
def test_extract_number(text, number):
    assert extract_number(text) == number


def test_extract_call_ignores_whitespace_and_fences():
    assert extract_call("```python\nf(a=1,  b=2)\n```") == extract_call("f(a=1, b=2)")
