"""One loader for every data set: local mirror files or Hugging Face Hub ids, normalised to
conversations in the `messages` form:

    {"id": "alpaca/17", "source": "alpaca", "messages": [{"role": "user", "content": ...},
                                                          {"role": "assistant", "content": ...}]}

Adapters turn each set's own schema (Alpaca instruction/input/output, ShareGPT from/value, JSONL
messages, the domain sets' schemas) into that form.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from harness.errors import DataError
from harness.hashing import hash_file, hash_json
from harness.paths import DATA_ENV, mirror_file


class Message(TypedDict):
    role: str
    content: str


class Conversation(TypedDict):
    id: str
    source: str
    messages: list[Message]


class SchemaError(ValueError):
    """Raised by a row adapter: the row's fields are present but do not fit the set's schema."""


Adapter = Callable[[dict[str, Any]], list[Message]]
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant",
          "assistant": "assistant", "model": "assistant", "system": "system"}


def alpaca_messages(row: dict[str, Any]) -> list[Message]:
    """Alpaca / Dolly / LIMA rendering: instruction (+ input) as the user turn, output as the answer."""
    prompt = row["instruction"].strip()
    if str(row.get("input") or "").strip():
        prompt = f"{prompt}\n\n{row['input'].strip()}"
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": str(row["output"]).strip()}]


def sharegpt_messages(row: dict[str, Any]) -> list[Message]:
    """ShareGPT `conversations: [{from, value}]`, kept multi-turn. Any speaker other than human/user
    or system (gpt, chatgpt, bing, bard) is the assistant; leading assistant turns, which answer
    nothing, are dropped."""
    messages: list[Message] = [
        {"role": _ROLES.get(turn["from"].lower(), "assistant"), "content": turn["value"]}
        for turn in row["conversations"]
    ]
    while messages and messages[0]["role"] == "assistant":
        messages.pop(0)
    return messages


def chat_messages(row: dict[str, Any]) -> list[Message]:
    """Rows that already hold `messages: [{role, content}]`."""
    return [{"role": _ROLES[m["role"].lower()], "content": m["content"]} for m in row["messages"]]


def any_form_messages(row: dict[str, Any]) -> list[Message]:
    """A row of a user's own file in any of the three forms, told apart by its fields: `messages`,
    ShareGPT `conversations`, or Alpaca-style `instruction`/`input`/`output`."""
    for field, adapter in (("messages", chat_messages), ("conversations", sharegpt_messages),
                           ("instruction", alpaca_messages)):
        if field in row:
            return adapter(row)
    raise SchemaError("expected a 'messages' list, ShareGPT 'conversations' or Alpaca-style 'instruction'/'output'")


@dataclass(frozen=True)
class DataSource:
    """Where one data set lives: a file in the mirror and/or a Hub id, plus its schema adapter.

    `hub_data_files` names files inside the Hub repository for repositories that hold raw data files
    rather than one standard dataset (ShareGPT's repo has several JSON files of different schemas;
    loading it whole fails)."""

    name: str
    adapter: Adapter
    local_path: str | None = None  # relative to the data directory
    hub_id: str | None = None
    hub_config: str | None = None
    hub_split: str = "train"
    hub_data_files: str | tuple[str, ...] | None = None
    row_ids: bool = False  # a row's own "id" field names it (a user's domain files); else its position

    def describe(self) -> str:
        hub = f"Hub id {self.hub_id!r}" + (f" ({self.hub_config})" if self.hub_config else "")
        if self.hub_data_files:
            files = [self.hub_data_files] if isinstance(self.hub_data_files, str) else self.hub_data_files
            hub += f" ({', '.join(files)})"
        return hub if self.hub_id else f"mirror file {self.local_path}"


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a .json array or a .jsonl file; a malformed line is an error naming file and line."""
    rows = []
    for _, row in read_lines(path):
        if isinstance(row, DataError):
            raise row
        rows.append(row)
    return rows


def read_lines(path: Path) -> list[tuple[str, Any]]:
    """(`FILE:LINE` of a .jsonl line or `FILE: [INDEX]` of a .json array element, the parsed row or
    the DataError of a line that does not parse), so a checker can report every bad line at once.
    A file that is missing, not UTF-8 or not a JSON array raises."""
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    if path.suffix == ".jsonl":
        rows: list[tuple[str, Any]] = []
        for number, line in enumerate(_utf8_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                rows.append((f"{path}:{number}", DataError(f"{path}:{number}: malformed JSON line ({exc.msg})")))
        return rows
    try:
        data = json.loads(_utf8_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of records")
    return [(f"{path}: [{index}]", row) for index, row in enumerate(data)]


def _utf8_text(path: Path) -> str:
    """A data file's text; bytes that are not UTF-8 are a DataError naming the line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})") from None


def locate(source: DataSource, data_dir: Path | None) -> Path | None:
    """The local file of a source, or None when it should come from the Hub.

    With a data directory the file must exist there; the error names both ways to supply it."""
    if source.local_path is not None and Path(source.local_path).is_absolute():  # a user's own file
        path = Path(source.local_path)
        if not path.is_file():
            raise DataError(f"{path}: data file for {source.name!r} not found")
        return path
    if source.local_path is None or (data_dir is None and source.hub_id is not None):
        return None
    return mirror_file(data_dir, source.local_path, source.name, hub_id=source.hub_id,
                       hub_fallback=source.hub_id is not None)


def source_hash(source: DataSource, data_dir: Path | None) -> str:
    """Content hash of a local file, or the Hub coordinates when the set comes from the Hub."""
    path = locate(source, data_dir)
    if path is not None:
        return _cached_file_hash(str(path), path.stat().st_mtime_ns)
    coordinates = {"hub": source.hub_id, "config": source.hub_config, "split": source.hub_split}
    if source.hub_data_files:  # only when set, so the other Hub sets keep their hashes (and mix keys)
        coordinates["data_files"] = source.hub_data_files
    return hash_json(coordinates)


@functools.lru_cache(maxsize=64)
def _cached_file_hash(path: str, mtime_ns: int) -> str:
    return hash_file(path)


def load_conversations(source: DataSource, data_dir: Path | None) -> list[Conversation]:
    """Every row of a data set as a conversation; bad rows are errors naming file and row."""
    path = locate(source, data_dir)
    rows = read_records(path) if path is not None else _load_hub(source)
    where = str(path) if path is not None else source.describe()
    conversations: list[Conversation] = []
    for index, row in enumerate(rows):
        try:
            messages = row_messages(source, row)
        except SchemaError as exc:
            raise DataError(f"{where}: row {index}: does not match the {source.name} schema: {exc}") from None
        name = row["id"] if source.row_ids and isinstance(row.get("id"), (str, int)) else index
        conversations.append({"id": f"{source.name}/{name}", "source": source.name, "messages": messages})
    return conversations


def row_messages(source: DataSource, row: Any) -> list[Message]:
    """A raw row through its set's adapter; any way it does not fit is a SchemaError saying how."""
    try:
        if not isinstance(row, dict):
            raise SchemaError(f"expected a JSON object, got {type(row).__name__}")
        return source.adapter(row)
    except KeyError as exc:
        raise SchemaError(f"no field {exc}") from None
    except (TypeError, AttributeError, ValueError, IndexError) as exc:
        if isinstance(exc, SchemaError):
            raise
        raise SchemaError(f"a field has the wrong type ({exc})") from None


def _load_hub(source: DataSource) -> list[dict[str, Any]]:
    import datasets

    try:
        files = list(source.hub_data_files) if isinstance(source.hub_data_files, tuple) else source.hub_data_files
        dataset = datasets.load_dataset(source.hub_id, source.hub_config, data_files=files, split=source.hub_split)
    except Exception as exc:  # offline, gated, renamed: one message for the user
        raise DataError(
            f"{source.describe()}: could not load from the Hugging Face Hub ({type(exc).__name__}); "
            f"pass --data-dir or set {DATA_ENV} to a local mirror that has {source.local_path or 'it'}"
        ) from None
    return list(dataset)


def conversation_problem(messages: Any) -> str | None:
    """Why `messages` is not a usable conversation (None when it is): a list of {role, content}
    turns with known roles, a user turn, and a non-empty assistant answer."""
    if not isinstance(messages, list) or not messages:
        return "has no messages"
    for message in messages:
        if (not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant")
                or not isinstance(message.get("content"), str)):
            return f"has a malformed message {str(message)[:80]!r}"
    if not any(m["role"] == "user" for m in messages):
        return "has no user turn"
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        return "has no assistant answer"
    turns = [m["role"] for m in messages if m["role"] != "system"]
    if turns[0] != "user":
        return "starts with an assistant turn (an answer before its question)"
    if turns[-1] != "assistant":
        return "ends with a user turn (a question without its answer)"
    return None


def is_usable(row: Conversation) -> bool:
    """A conversation worth training on: a user turn and a non-empty assistant answer."""
    return conversation_problem(row["messages"]) is None


def check_conversation(row: Conversation, where: str) -> None:
    """A training row must have well-formed turns, a user turn and at least one non-empty answer."""
    problem = conversation_problem(row.get("messages"))
    if problem:
        raise DataError(f"{where}: row {row.get('id')!r} {problem}")
