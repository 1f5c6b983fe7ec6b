"""Domain tasks: where their data lives, how a row becomes a conversation, and how an answer is
checked. A domain's reference answer and a model's answer go through the same extractor, so the
score is `extract(prediction) == extract(reference)`.

Domains register through the entry-point group `forgetbench.domains` (an entry point names a
`Domain` object), the bundled five exactly like a third-party package's:

    [project.entry-points."forgetbench.domains"]
    my-domain = "my_package.my_module:MY_DOMAIN"

A study may also name a domain made of its own files (`domain: {name, train, test, answer, ...}`,
see `DomainFiles` below); `file_domain` turns that into a `Domain`.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from harness.answers import Extractor, answer_extractor, extract_call, extract_letter, extract_number, is_user_code
from harness.data import (
    Conversation,
    DataSource,
    Message,
    SchemaError,
    alpaca_messages,
    any_form_messages,
    conversation_problem,
    load_conversations,
    locate,
    read_lines,
    row_messages,
)
from harness.errors import ConfigError, DataError
from harness.fields import Count, Settings
from harness.hashing import hash_json
from harness.registry import Registry

log = logging.getLogger("forgetbench")


ENTRY_POINT_GROUP = "forgetbench.domains"

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


@dataclass(frozen=True)
class Domain:
    name: str
    train: DataSource
    test: DataSource
    extract: Extractor
    metric: str
    max_new_tokens: int  # enough for this task's answers
    answer: str = ""  # the extractor's spec, for a domain made from files (part of its keys)
    hash_split: bool | None = None  # test rows by a fixed hash of train; None: when both splits share a mirror file

    def _split_locally(self, data_dir: Path | None) -> bool:
        """One file serves both splits: a fixed hash of each row decides (1 in 5 to test)."""
        if self.hash_split is not None:
            return self.hash_split
        return data_dir is not None and self.train.local_path == self.test.local_path

    def key(self) -> dict[str, Any]:
        """What identifies the task beyond its data files' hashes, for mix and evaluation keys: the
        name, and for a domain made from files its answer extractor, answer length and split rule
        (a registered domain's code is its identity, as before)."""
        if not self.answer:
            return {"domain": self.name}
        return {"domain": self.name, "answer": self.answer, "max_new_tokens": self.max_new_tokens,
                "hash_split": bool(self.hash_split)}

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


def _bundled(name: str, adapter: Callable, extract: Extractor, max_new_tokens: int, train_file: str,
             test_file: str | None = None, hub_id: str | None = None, hub_config: str | None = None,
             hub_splits: tuple[str, str] = ("train", "test")) -> Domain:
    """A bundled domain: its mirror files (one file: the hash split) and Hub coordinates."""
    return Domain(name, train=DataSource(name, adapter, train_file, hub_id, hub_config, hub_splits[0]),
                  test=DataSource(name, adapter, test_file or train_file, hub_id, hub_config, hub_splits[1]),
                  extract=extract, metric="accuracy" if extract is extract_letter else "exact_match",
                  max_new_tokens=max_new_tokens)


BUNDLED: dict[str, Domain] = {domain.name: domain for domain in (
    _bundled("medmcqa", mcq_messages, extract_letter, 32, "domain/medmcqa/medmcqa_dev_filtered.jsonl",
             hub_id="openlifescienceai/medmcqa", hub_splits=("train", "validation")),
    _bundled("medqa", mcq_messages, extract_letter, 32, "domain/medqa/test.jsonl", hub_id="GBaker/MedQA-USMLE-4-options"),
    _bundled("gsm8k", gsm8k_messages, extract_number, 256, "domain/gsm8k/train.jsonl", "domain/gsm8k/test.jsonl",
             hub_id="openai/gsm8k", hub_config="main"),
    _bundled("openfunctions", alpaca_messages, extract_call, 128, "domain/openfunctions/openfunction_train.json",
             "domain/openfunctions/openfunction_test.json", hub_splits=("train", "train")),
    _bundled("multiarith", multiarith_messages, extract_number, 128, "domain/multiarith/test.json",
             hub_id="ChilleD/MultiArith"),
)}


MEDMCQA, MEDQA, GSM8K, OPENFUNCTIONS, MULTIARITH = (BUNDLED[name] for name in BUNDLED)  # entry-point targets


def _named_as_registered(name: str, domain: Domain) -> None:
    if domain.name != name:
        raise ConfigError(f"entry point {name!r}: names a domain called {domain.name!r}; register it as that name")


DOMAINS: Registry[Domain] = Registry(ENTRY_POINT_GROUP, "domain", lambda obj: isinstance(obj, Domain),
                                     "a harness.domains.Domain", check=_named_as_registered)


def registry() -> dict[str, Domain]:
    """All domains registered under the `forgetbench.domains` entry-point group, by name."""
    return DOMAINS.entries()


def get_domain(name: str) -> Domain:
    return DOMAINS.get(name)


class DomainFiles(Settings):
    """A domain of the user's own: a training file, an optional test file and how answers are read.
    Files hold `{"messages": [...]}` rows (optional "id") or Alpaca-style instruction/input/output
    rows, as JSONL or a JSON array; relative paths are resolved against the study file's folder."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="shown on the leaderboard")
    train: Path
    test: Path | None = Field(None, description="unset: a fixed hash of each train row holds 1 in 5 out for testing")
    answer: str = Field(..., description="letter | number | exact | call | regex:<pattern> | module:function")
    max_new_tokens: Count = Field(128, gt=0, description="generation budget of an answer")

    @field_validator("answer")
    @classmethod
    def _extractor(cls, value: str) -> str:
        from harness.answers import answer_extractor

        try:
            answer_extractor(value)
        except ConfigError as exc:
            raise ValueError(exc.lines[0]) from None
        return value

    def relative_to(self, folder: Path) -> DomainFiles:
        """Relative file paths resolved against `folder` (the study file's)."""
        resolve = lambda p: p if p is None or p.is_absolute() else (folder / p).resolve()  # noqa: E731
        return self.model_copy(update={"train": resolve(self.train), "test": resolve(self.test)})




def resolve_domain(spec: str | DomainFiles) -> Domain:
    """A study's `domain:`: a registered name, or files of the user's own."""
    return get_domain(spec) if isinstance(spec, str) else file_domain(spec)


def file_domain(files: DomainFiles) -> Domain:
    """A domain made of the user's files; without a test file, a fixed hash of each train row splits it."""
    train = DataSource(files.name, any_form_messages, str(files.train), row_ids=True)
    test = DataSource(files.name, any_form_messages, str(files.test), row_ids=True) if files.test else train
    return Domain(files.name, train=train, test=test, extract=answer_extractor(files.answer),
                  metric="accuracy" if files.answer == "letter" else "exact_match",
                  max_new_tokens=files.max_new_tokens, answer=files.answer, hash_split=files.test is None)


def check_domain_data(domain: Domain, data_dir: Path | None, trained: bool = True) -> list[str]:
    """Every problem of a domain's data, one line each (`FILE:LINE: reason` for local files): lines
    that do not parse or fit the schema, rows without an assistant answer, an empty file or split,
    and test rows whose answer the domain's extractor cannot read; where the domain is `trained` on
    (a study, not `eval --domain-file`), test rows that are also training rows."""
    problems: list[str] = []
    splits = [("train", domain.train)]
    if not domain._split_locally(data_dir):
        splits = splits + [("test", domain.test)] if domain.test != domain.train else [("test", domain.test)]
    if is_user_code(domain.extract):
        log.info("domain %s: validating runs your answer extractor %s on every test row (your code)", domain.name,
                 domain.extract.args[0])
    contents: dict[str, set[str]] = {}
    for split, source in splits:
        try:
            path = locate(source, data_dir)
        except DataError as exc:
            problems += exc.lines
            continue
        if path is None:  # a Hub set: the loader's own checks
            try:
                load_conversations(source, None)
            except DataError as exc:
                problems += exc.lines
            continue
        file_problems, contents[split] = _check_file(domain, source, path, split, data_dir)
        problems += file_problems
    if trained and not domain._split_locally(data_dir) and domain.test == domain.train:
        problems.append(f"{locate(domain.test, data_dir) or domain.test.describe()}: the test file is the training "
                        f"file (held-out scores would be scores on training data)")
    if trained and len(contents) == 2 and not problems:
        shared = contents["test"] & contents["train"]
        if shared:
            test = locate(domain.test, data_dir)
            problems.append(f"{test}: {len(shared)} of {len(contents['test'])} test rows are also training rows of "
                            f"{locate(domain.train, data_dir)} (held-out scores would be scores on training data)")
    return problems


def _read_answer(domain: Domain, text: str, where: str, problems: list[str]) -> str | None | bool:
    """The extractor's answer for a reference; False (with a problem noted) where the extractor fails."""
    try:
        return domain.extract(text)
    except DataError as exc:
        problems.append(f"{where}: {exc.lines[0]}")
        return False


def _check_file(domain: Domain, source: DataSource, path: Path, split: str, data_dir: Path | None
                ) -> tuple[list[str], set[str]]:
    """The file's problems, and the hashes of its rows' conversations (to find test rows that are
    training rows)."""
    problems: list[str] = []
    rows = 0
    contents: set[str] = set()
    ids: dict[Any, str] = {}  # a row's own id -> where it first appeared
    try:
        lines = read_lines(path)
    except DataError as exc:
        return exc.lines, contents
    for where, row in lines:
        if isinstance(row, DataError):
            problems += row.lines
            continue
        try:
            messages = row_messages(source, row)
        except SchemaError as exc:
            problems.append(f"{where}: does not match the {source.name} schema: {exc}")
            continue
        problem = conversation_problem(messages)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        own_id = row.get("id") if source.row_ids and isinstance(row, dict) else None
        if isinstance(own_id, (str, int)):
            if own_id in ids:
                problems.append(f"{where}: id {own_id!r} repeats the row at {ids[own_id]}; each row needs its own id "
                                f"(results are paired by it)")
                continue
            ids[own_id] = where
        contents.add(hash_json(messages))
        rows += 1
        conversation: Conversation = {"id": "", "source": source.name, "messages": messages}
        in_test = split == "test" or (domain._split_locally(data_dir) and _is_held_out(conversation))
        if not in_test:
            continue
        if messages[-1]["role"] != "assistant":
            problems.append(f"{where}: a test row must end with the assistant's answer (the reference)")
        elif _read_answer(domain, messages[-1]["content"], where, problems) is None:
            problems.append(f"{where}: the answer extractor {domain.answer or domain.name!r} reads no answer "
                            f"from the last assistant turn {json.dumps(messages[-1]['content'][:60])}")
    if rows == 0 and not problems:
        problems.append(f"{path}: domain {domain.name!r} has no {'training' if split == 'train' else 'test'} rows")
    return problems, contents
