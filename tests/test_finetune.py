"""The fine-tuning job: assistant-only loss, LoRA and full fine-tuning, determinism, bad mix rows."""
from __future__ import annotations

import json

import pytest

from harness.config import FinetuneConfig
from harness.errors import DataError
from harness.finetune import IGNORE, assistant_labels, finetune

TWO_TURNS = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "It is Rome."},
]

LORA_JOB = FinetuneConfig(method="lora", max_steps=2, batch_size=2, max_seq_length=64, learning_rate=1e-2)


def write_mix(path, rows=6):
    """A tiny mix: single- and multi-turn rows, with and without a system message."""
    lines = []
    for i in range(rows):
        messages = TWO_TURNS if i % 2 else [
            {"role": "user", "content": f"Say the number {i}."},
            {"role": "assistant", "content": f"The number is {i}."},
        ]
        lines.append(json.dumps({"id": f"r{i}", "source": "test", "messages": messages}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load_state(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def loss_runs(ids, labels):
    """The maximal runs of loss-carrying tokens."""
    runs, current = [], []
    for token, label in zip(ids, labels):
        if label != IGNORE:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from harness.models import load_tokenizer

    return load_tokenizer(tiny_model, padding_side="right")


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora")
    mix = write_mix(tmp / "mix.jsonl")
    return mix, finetune(tiny_model, mix, LORA_JOB, seed=0, out_dir=tmp / "run")


def test_assistant_mask_covers_exactly_the_assistant_turns(tokenizer):
    ids, labels = assistant_labels(tokenizer, TWO_TURNS)
    assert len(ids) == len(labels)
    assert all(label in (IGNORE, token) for token, label in zip(ids, labels))
    # Each maximal run of loss-carrying tokens is one assistant turn: its content and the end-of-turn token.
    decoded = [tokenizer.decode(run) for run in loss_runs(ids, labels)]
    assert decoded == [m["content"] + "<|im_end|>" for m in TWO_TURNS if m["role"] == "assistant"]
    masked_text = tokenizer.decode([t for t, label in zip(ids, labels) if label == IGNORE])
    for message in TWO_TURNS:
        if message["role"] != "assistant":
            assert message["content"] in masked_text


def test_assistant_mask_follows_any_chat_template(tokenizer):
    """A Zephyr-style template (no ChatML, different end-of-turn token) is masked just as well."""
    import copy

    other = copy.deepcopy(tokenizer)
    other.chat_template = (
        "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + '<|endoftext|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    )
    ids, labels = assistant_labels(other, TWO_TURNS)
    decoded = [other.decode(run) for run in loss_runs(ids, labels)]
    assert decoded == [m["content"] + "<|endoftext|>" for m in TWO_TURNS if m["role"] == "assistant"]


def test_lora_finetune_writes_a_changed_loadable_checkpoint(tiny_model, lora_run):
    import torch

    mix, result = lora_run
    out = result.path.parent
    assert result.path == out / "model" and result.spec.startswith("checkpoint:")
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert not list((out / "model").glob("adapter_*")), "the model directory must hold merged plain weights"
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json"):  # only the weights change
        assert (out / "model" / name).read_text() == (tiny_model.path / name).read_text(), name
    base, tuned = load_state(tiny_model.path), load_state(result.path)
    assert base.keys() == tuned.keys()
    changed = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)
    log = json.loads((out / "train_log.json").read_text())
    assert log["steps"] == 2 and [e["step"] for e in log["loss_history"]] == [1, 2]
    assert all(e["loss"] > 0 for e in log["loss_history"])
    assert log["rows_used"] == 6 and log["rows_dropped"] == 0
    assert 0 < log["assistant_tokens"] < log["tokens"] and log["trainable_parameters"] > 0


def test_same_seed_gives_identical_checkpoint(tiny_model, lora_run, tmp_path):
    mix, first = lora_run
    second = finetune(tiny_model, mix, LORA_JOB, seed=0, out_dir=tmp_path / "again")
    assert second.sha == first.sha


def test_full_finetune_updates_all_weights(tiny_model, tmp_path):
    import torch

    mix = write_mix(tmp_path / "mix.jsonl")
    job = FinetuneConfig(method="full", max_steps=1, batch_size=2, max_seq_length=64, learning_rate=1e-3)
    result = finetune(tiny_model, mix, job, seed=1, out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "adapter").exists()
    base, tuned = load_state(tiny_model.path), load_state(result.path)
    assert not torch.equal(base["model.layers.0.mlp.down_proj.weight"], tuned["model.layers.0.mlp.down_proj.weight"])
    log = json.loads((tmp_path / "run" / "train_log.json").read_text())
    assert log["trainable_parameters"] == sum(t.numel() for k, t in base.items() if k != "lm_head.weight")


def test_a_row_without_answer_tokens_within_the_limit_is_refused_unless_dropping_is_allowed(tiny_model, tokenizer,
                                                                                            tmp_path):
    from harness.finetune import read_mix, tokenize_mix

    long_question = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]
    mix = write_mix(tmp_path / "mix.jsonl", rows=2)
    with mix.open("a") as handle:
        handle.write(json.dumps({"id": "long", "source": "t", "messages": long_question}) + "\n")
    with pytest.raises(DataError, match=r"^finetune.max_seq_length: 64 drops 1 of 3 rows of the mix .*mix.jsonl .*the "
                                        r"longest is \d+ tokens\): raise it to \d+ or set finetune.drop_long_rows: true$"):
        tokenize_mix(tokenizer, read_mix(mix), 64, mix)
    examples, stats = tokenize_mix(tokenizer, read_mix(mix), 64, mix, drop=True)
    assert stats["rows_dropped"] == 1 and stats["rows_used"] == len(examples) == 2
    assert all(len(e["input_ids"]) <= 64 for e in examples)


@pytest.mark.parametrize("line, reason", [
    ('{"id": "x", "source": "s"}', "no 'messages'"),
    ('{"id": "x", "source": "s", "messages": [{"role": "user", "content": "hi"}]}', "no assistant turn"),
    ('{"id": "x", "messages": [{"role": "robot", "content": "hi"}]}', "messages[0]"),
    ('{"id": "x", "messages": [', "Expecting"),
])
def test_malformed_mix_row_raises_data_error_naming_file_and_line(tiny_model, tmp_path, line, reason):
    mix = write_mix(tmp_path / "mix.jsonl", rows=2)
    with mix.open("a") as handle:
        handle.write("\n" + line + "\n")  # a blank line, then the bad row on line 4
    with pytest.raises(DataError) as error:
        finetune(tiny_model, mix, LORA_JOB, seed=0, out_dir=tmp_path / "run")
    message = str(error.value)
    assert f"{mix}: line 4:" in message and reason in message and "\n" not in message
    assert not (tmp_path / "run").exists()


def test_unreadable_mix_file_raises_data_error(tiny_model, tmp_path):
    with pytest.raises(DataError, match="missing.jsonl: cannot read"):
        finetune(tiny_model, tmp_path / "missing.jsonl", LORA_JOB, seed=0, out_dir=tmp_path / "run")
