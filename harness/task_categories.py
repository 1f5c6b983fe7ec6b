"""Category profile of instruction data (seed 000 Fig. 1): which kinds of task a rehearsal set covers.

Each instruction (a conversation's first user turn) is classified by the seed model itself, zero-shot,
into one of twelve task categories (the Magpie taxonomy). No free text is generated or parsed: the
model reads one fixed classification prompt under its own chat template, and each category label is
scored by its log-likelihood as the start of the assistant's answer. Two choices keep a 135M model
usable as a classifier:

- only the *distinguishing prefix* of a label is scored (its tokens up to the first one no other
  label shares), so long labels are not penalised for their length; with SmolLM2's tokenizer every
  label is decided by its first token, so one forward pass per instruction suffices;
- scores are contextually calibrated (Zhao et al. 2021): the label log-likelihoods for content-free
  instructions ("N/A", "", "[MASK]") are subtracted, which removes the model's prior for a label.

The fixed part of the prompt (system prompt, category list) is run through the model once and its
key/value cache reused for every instruction. Classifications are cached on disk by (model hash,
prompt hash, instruction), so profiling the same instructions again does no model work.
"""
from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.data import Conversation
from harness.errors import DataError
from harness.generation import GenerationCache
from harness.hashing import hash_json
from harness.models import ResolvedModel
from harness.paths import cache_dir

log = logging.getLogger(__name__)

# The Magpie task taxonomy, with the one-line descriptions the classifier is shown.
CATEGORIES: dict[str, str] = {
    "Information seeking": "questions asking for facts, explanations or descriptions",
    "Reasoning": "logic puzzles, analysis, arguments and step-by-step inference",
    "Planning": "plans, schedules, strategies and procedures to reach a goal",
    "Editing": "rewriting, correcting, summarising, paraphrasing or translating given text",
    "Coding & Debugging": "writing, explaining or fixing computer code",
    "Math": "arithmetic, algebra, calculations and other math problems",
    "Role playing": "pretending to be a character or persona in a conversation",
    "Data analysis": "interpreting, classifying or transforming data, tables and numbers",
    "Creative writing": "stories, poems, lyrics, slogans and other imaginative text",
    "Advice seeking": "asking for personal or practical advice and recommendations",
    "Brainstorming": "generating lists of ideas, names or suggestions",
    "Other": "anything that fits none of the categories above",
}
_SLOT = "\x00FORGETBENCH_INSTRUCTION\x00"
PROMPT = (
    "Classify the instruction below into one of these task categories:\n"
    + "\n".join(f"- {name}: {text}" for name, text in CATEGORIES.items())
    + f"\n\nAnswer with the category name only.\n\nInstruction:\n{_SLOT}"
)
CONTENT_FREE = ("N/A", "", "[MASK]")
MAX_INSTRUCTION_TOKENS = 128  # longer instructions are cut: their opening says what the task is
PROMPT_SHA = hash_json({"prompt": PROMPT, "categories": list(CATEGORIES), "content_free": CONTENT_FREE,
                        "max_instruction_tokens": MAX_INSTRUCTION_TOKENS,
                        "scoring": "calibrated log-likelihood of the distinguishing label prefix"})


def instruction_of(row: Conversation) -> str:
    """The text that is classified: the conversation's first user turn."""
    return next((m["content"] for m in row["messages"] if m["role"] == "user"), "")


class CategoryClassifier:
    """Zero-shot task-category classifier on one model; `scored` counts instructions it had to run."""

    def __init__(self, model: ResolvedModel, batch_size: int = 8, cache: GenerationCache | None = None):
        self.model = model
        self.batch_size = batch_size
        self.cache = cache if cache is not None else GenerationCache(cache_dir() / "categories.sqlite")
        self.scored = 0
        self._state: dict[str, Any] | None = None

    def classify(self, instructions: Sequence[str]) -> list[str]:
        """One category per instruction, from the cache where it was classified before."""
        keys = {text: hash_json(["category", self.model.sha, PROMPT_SHA, text]) for text in instructions}
        known = self.cache.get_many(list(keys.values()))
        missing = [text for text, key in keys.items() if key not in known]
        if missing:
            log.info("category profile: classifying %d instructions with %s", len(missing), self.model.label)
            fresh = {keys[text]: category for text, category in zip(missing, self._predict(missing))}
            self.cache.put_many(fresh)
            known.update(fresh)
            self.scored += len(missing)
        return [known[keys[text]] for text in instructions]

    # ------------------------------------------------------------ model work

    def _predict(self, instructions: list[str]) -> list[str]:
        calibration = self._ready()["calibration"]
        scores = self._label_scores(instructions) - calibration
        names = list(CATEGORIES)
        # argmax on rounded scores with ties to the earlier category: no dependence on float noise
        best = [max(range(len(names)), key=lambda i, row=row: (round(float(row[i]), 4), -i)) for row in scores]
        return [names[i] for i in best]

    def _ready(self) -> dict[str, Any]:
        """Load the model, run the fixed prompt head once, and compute the calibration scores."""
        if self._state is not None:
            return self._state
        import torch

        from harness.models import load_model, load_tokenizer

        tokenizer = load_tokenizer(self.model, padding_side="right")
        model = load_model(self.model)
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False,
                                                 add_generation_prompt=True)
        head, tail = rendered.split(_SLOT)
        head_ids = tokenizer(head, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.inference_mode():
            prefix = model(head_ids, use_cache=True, logits_to_keep=1).past_key_values
        labels = [tokenizer(name, add_special_tokens=False).input_ids for name in CATEGORIES]
        self._state = {"tokenizer": tokenizer, "model": model, "prefix": prefix, "head_len": head_ids.shape[1],
                       "tail": tokenizer(tail, add_special_tokens=False).input_ids,
                       "labels": [label[:_distinguishing_length(label, labels)] for label in labels]}
        self._state["calibration"] = self._label_scores(list(CONTENT_FREE)).mean(dim=0)
        return self._state

    def _label_scores(self, instructions: list[str]):
        """[instruction, category] log-likelihood of each label's distinguishing prefix."""
        import torch

        state = self._state
        tokenizer, labels = state["tokenizer"], state["labels"]
        contexts = sorted({tuple(label[:j]) for label in labels for j in range(len(label))})
        needed = sorted({token for label in labels for token in label})  # keep only these of each distribution
        column = {token: i for i, token in enumerate(needed)}
        rows = []  # (instruction index, context): one next-token distribution each
        sequences = []
        for index, text in enumerate(instructions):
            body = tokenizer(text, add_special_tokens=False).input_ids[:MAX_INSTRUCTION_TOKENS] + state["tail"]
            for context in contexts:
                rows.append((index, context))
                sequences.append(body + list(context))
        logprobs = {}
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            for i, row in zip(batch, self._next_token_logprobs([sequences[i] for i in batch])):
                logprobs[rows[i]] = row[needed]
        scores = torch.zeros(len(instructions), len(labels))
        for index in range(len(instructions)):
            for k, label in enumerate(labels):
                scores[index, k] = sum(float(logprobs[(index, tuple(label[:j]))][column[label[j]]])
                                       for j in range(len(label)))
        return scores

    def _next_token_logprobs(self, sequences: list[list[int]]):
        """Log-probabilities of the token after each sequence, every sequence continuing the prompt head."""
        import torch

        state = self._state
        width = max(len(s) for s in sequences)
        pad = state["tokenizer"].pad_token_id
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
        cache = copy.deepcopy(state["prefix"])  # the forward pass appends to the cache it is given
        cache.batch_repeat_interleave(len(sequences))
        attention = torch.cat([torch.ones(len(sequences), state["head_len"], dtype=mask.dtype), mask], dim=1)
        last = mask.sum(dim=1) - 1
        keep = torch.unique(last)  # logits only where some sequence ends (the vocabulary projection is costly)
        with torch.inference_mode():
            logits = state["model"](ids, attention_mask=attention, past_key_values=cache, use_cache=False,
                                    logits_to_keep=keep).logits
        column = torch.searchsorted(keep, last)
        return torch.log_softmax(logits[torch.arange(len(sequences)), column].float(), dim=-1)


def _distinguishing_length(label: list[int], labels: list[list[int]]) -> int:
    """Tokens of `label` up to and including the first one where it differs from every other label."""
    for k in range(1, len(label) + 1):
        if not any(other != label and other[:k] == label[:k] for other in labels):
            return k
    return len(label)


def distribution(categories: Iterable[str]) -> dict[str, Any]:
    """Counts (every category, zeros included) and shares of a list of classifications."""
    counts = Counter(categories)
    n = sum(counts.values())
    return {"n": n, "counts": {name: counts.get(name, 0) for name in CATEGORIES},
            "shares": {name: round(counts.get(name, 0) / n, 4) for name in CATEGORIES} if n else {}}


def profile_rows(rows: Sequence[Conversation], model: ResolvedModel,
                 classifier: CategoryClassifier | None = None) -> dict[str, Any]:
    """The category profile of conversations, classified by `model`, with what identifies the method."""
    instructions = [instruction_of(row) for row in rows]
    classifier = classifier or CategoryClassifier(model)
    labels = classifier.classify(instructions) if instructions else []
    return {**distribution(labels), "classifier_model": model.sha, "prompt_sha256": PROMPT_SHA}


def conversations_from(spec: str, data_dir: Path | None) -> list[Conversation]:
    """Usable conversations of a public set name (harness/public_sets.py) or of a .json/.jsonl file
    whose rows are in the messages, ShareGPT (`conversations`) or Alpaca (`instruction`) form."""
    from harness.data import DataSource, any_form_messages, is_usable, load_conversations
    from harness.public_sets import PUBLIC_SETS

    if spec in PUBLIC_SETS:
        return [row for row in load_conversations(PUBLIC_SETS[spec], data_dir) if is_usable(row)]
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"--data {spec}: neither a public set ({', '.join(PUBLIC_SETS)}) nor a data file")
    source = DataSource(path.stem, any_form_messages, local_path=str(path.resolve()))
    return [row for row in load_conversations(source, None) if is_usable(row)]


def is_current(profile: dict[str, Any] | None, model: ResolvedModel) -> bool:
    """A stored profile still describes this classifier (same model, same prompt and scoring)."""
    return bool(profile) and profile.get("classifier_model") == model.sha and profile.get("prompt_sha256") == PROMPT_SHA


def total_variation(a: dict[str, float], b: dict[str, float]) -> float:
    """Total variation distance between two category distributions (0 = same, 1 = disjoint)."""
    return round(0.5 * sum(abs(a.get(name, 0.0) - b.get(name, 0.0)) for name in CATEGORIES), 4)
