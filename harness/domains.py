"""The bundled domain tasks: where their data lives, how a row becomes a conversation, and how an
answer is checked. A domain's reference answer and a model's answer go through the same extractor,
so the score is `extract(prediction) == extract(reference)`.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data import Conversation, DataSource, Message, SchemaError, alpaca_messages, load_conversations
from harness.errors import ConfigError
from harness.hashing import hash_json

_LETTERS = "ABCDE"


def mcq_messages(row: dict[str, Any]) -> list[Message]:
    """MedMCQA / MedQA: the mirror's `options{A..D}` + `answer_idx`, or the Hub's `opa..opd` + `cop`."""
    if "options" in row:
        if not isinstance(row["options"], dict):
            raise SchemaError(f"'options' must map letters to option texts, got a {type(row['options']).__name__}")
        options, answer = dict(row["options"]), row["answer_idx"]
        if answer not in options:
            raise SchemaError(f"'answer_idx' {answer!r} is not one of the options {sorted(options)}")
    else:
        options = {letter: row[f"op{letter.lower()}"] for letter in "ABCD"}
        answer = "ABCD"[int(row["cop"])]
    listing = "\n".join(f"{letter}. {text}" for letter, text in sorted(options.items()))
    prompt = f"{row['question'].strip()}\n\n{listing}\n\nAnswer with the letter of the correct option."
    return [{"role": "user", "content": prompt},
            {"role": "assistant", "content": f"The answer is {answer}. {options[answer]}"}]


def gsm8k_messages(row: dict[str, Any]) -> list[Message]:
    """GSM8K: calculator annotations `<<..>>` dropped, the final `#### N` said as `The answer is N.`"""
    reasoning, _, final = row["answer"].partition("####")
    reasoning = re.sub(r"<<[^>]*>>", "", reasoning).strip()
    return [{"role": "user", "content": row["question"].strip()},
            {"role": "assistant", "content": f"{reasoning}\nThe answer is {final.strip()}."}]


def multiarith_messages(row: dict[str, Any]) -> list[Message]:
    """MultiArith: the mirror's instruction/output, or the Hub's question/final_ans."""
    if "instruction" in row:
        return alpaca_messages(row)
    return [{"role": "user", "content": row["question"].strip()},
            {"role": "assistant", "content": f"The answer is {row['final_ans']}."}]


def extract_letter(text: str) -> str | None:
    for pattern in (r"answer is\s*\(?([A-E])\b", r"^\s*\(?([A-E])[\).:\s]", r"\b([A-E])\b"):
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    return None


def extract_number(text: str) -> str | None:
    number = r"(-?\$?\d[\d,]*(?:\.\d+)?)"
    for pattern in (rf"####\s*{number}", rf"answer is\s*:?\s*{number}"):
        match = re.search(pattern, text)
        if match:
            return _canonical_number(match.group(1))
    numbers = re.findall(number, text)
    return _canonical_number(numbers[-1]) if numbers else None


def _canonical_number(text: str) -> str:
    value = float(text.replace(",", "").replace("$", ""))
    return str(int(value)) if value.is_integer() else str(value)


def extract_call(text: str) -> str | None:
    """A function call compared modulo whitespace and code fences."""
    text = re.sub(r"```\w*", "", text).strip().strip("`")
    return re.sub(r"\s+", "", text) or None


@dataclass(frozen=True)
class Domain:
    name: str
    train: DataSource
    test: DataSource
    extract: Callable[[str], str | None]
    metric: str
    max_new_tokens: int  # enough for this task's answers

    def _split_locally(self, data_dir: Path | None) -> bool:
        """One mirror file serves both splits: a fixed hash of each row decides (1 in 5 to test)."""
        return data_dir is not None and self.train.local_path == self.test.local_path

    def train_rows(self, data_dir: Path | None) -> list[Conversation]:
        rows = load_conversations(self.train, data_dir)
        return [r for r in rows if not _is_held_out(r)] if self._split_locally(data_dir) else rows

    def test_rows(self, data_dir: Path | None) -> list[Conversation]:
        rows = load_conversations(self.test, data_dir)
        return [r for r in rows if _is_held_out(r)] if self._split_locally(data_dir) else rows

    def score(self, prediction: str, reference: str) -> float:
        gold = self.extract(reference)
        return float(gold is not None and self.extract(prediction) == gold)


def _is_held_out(row: Conversation) -> bool:
    return int(hash_json(row["messages"])[:8], 16) % 5 == 0


DOMAINS: dict[str, Domain] = {
    "medmcqa": Domain(
        "medmcqa",
        train=DataSource("medmcqa", mcq_messages, "domain/medmcqa/medmcqa_dev_filtered.jsonl",
                         "openlifescienceai/medmcqa", hub_split="train"),
        test=DataSource("medmcqa", mcq_messages, "domain/medmcqa/medmcqa_dev_filtered.jsonl",
                        "openlifescienceai/medmcqa", hub_split="validation"),
        extract=extract_letter, metric="accuracy", max_new_tokens=32),
    "medqa": Domain(
        "medqa",
        train=DataSource("medqa", mcq_messages, "domain/medqa/test.jsonl", "GBaker/MedQA-USMLE-4-options", hub_split="train"),
        test=DataSource("medqa", mcq_messages, "domain/medqa/test.jsonl", "GBaker/MedQA-USMLE-4-options", hub_split="test"),
        extract=extract_letter, metric="accuracy", max_new_tokens=32),
    "gsm8k": Domain(
        "gsm8k",
        train=DataSource("gsm8k", gsm8k_messages, "domain/gsm8k/train.jsonl", "openai/gsm8k", "main", "train"),
        test=DataSource("gsm8k", gsm8k_messages, "domain/gsm8k/test.jsonl", "openai/gsm8k", "main", "test"),
        extract=extract_number, metric="exact_match", max_new_tokens=256),
    "openfunctions": Domain(
        "openfunctions",
        train=DataSource("openfunctions", alpaca_messages, "domain/openfunctions/openfunction_train.json"),
        test=DataSource("openfunctions", alpaca_messages, "domain/openfunctions/openfunction_test.json"),
        extract=extract_call, metric="exact_match", max_new_tokens=128),
    "multiarith": Domain(
        "multiarith",
        train=DataSource("multiarith", multiarith_messages, "domain/multiarith/test.json", "ChilleD/MultiArith", hub_split="train"),
        test=DataSource("multiarith", multiarith_messages, "domain/multiarith/test.json", "ChilleD/MultiArith", hub_split="test"),
        extract=extract_number, metric="exact_match", max_new_tokens=128),
}


def get_domain(name: str) -> Domain:
    if name not in DOMAINS:
        raise ConfigError(f"unknown domain {name!r}; bundled: {', '.join(sorted(DOMAINS))}")
    return DOMAINS[name]
