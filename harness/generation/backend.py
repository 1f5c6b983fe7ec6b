"""The interface every generation backend implements, and what they share: batching by memory,
the cache loop, log-likelihood scoring through the cache."""
from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence

from harness.batching import AUTO_MAX_BATCH, length_sorted_batches
from harness.errors import ForgetbenchError
from harness.generation.cache import GenerationCache, cache_keys, occurrence_indices
from harness.generation.sampling import Sampling
from harness.hashing import hash_json
from harness.models import ResolvedModel
from harness.testhooks import pause_point

log = logging.getLogger("harness.generation")


class GenerationBackend(ABC):
    """Generates text from one model. Subclasses implement `_generate_batch` (and `_score_pairs` to
    score log-likelihoods); generation batch sizes come from `_generation_batch_size`.

    `batch_size` caps how many prompts one batch takes; None leaves it to the memory policy and the
    device's default cap (`harness.batching`)."""

    name = "abstract"

    def __init__(self, model: ResolvedModel, batch_size: int | None = None, cache: GenerationCache | None = None):
        self.model = model
        self.batch_size = batch_size
        self.cache = cache if cache is not None else GenerationCache()
        self.generated = 0  # prompts actually run through the model (cache misses), for tests and logs
        self.scored = 0  # log-likelihood pairs actually run through the model (cache misses)

    @property
    @abstractmethod
    def tokenizer(self): ...

    @abstractmethod
    def _generate_batch(self, prompts: list[str], sampling: Sampling) -> list[str]: ...

    def chat(self, conversations: Sequence[Sequence[dict]], sampling: Sampling, desc: str = "generating",
             assistant_prefix: str = "") -> list[str]:
        """Answer each conversation as the assistant's next turn. `assistant_prefix` pre-fills the start
        of that turn (the answer returned is what follows it)."""
        prompts = [
            self.tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True) + assistant_prefix
            for c in conversations
        ]
        return self.generate(prompts, sampling, desc)

    def generate(self, prompts: Sequence[str], sampling: Sampling, desc: str = "generating") -> list[str]:
        occurrences = occurrence_indices(prompts)

        def produce(missing: list[int]):
            log.info("%s: %d prompts (%d cached) with %s", desc, len(prompts), len(prompts) - len(missing), self.model.label)
            done = 0
            for part in self._generation_batches([prompts[i] for i in missing], sampling):
                batch = [missing[j] for j in part]
                texts = self._generate_requests([prompts[i] for i in batch], sampling, [occurrences[i] for i in batch])
                yield batch, [_cut_at_stop(text, sampling.stop) for text in texts]  # saved batch by batch
                self.generated += len(batch)
                done += len(batch)
                log.info("%s: %d/%d (batch of %d)", desc, done, len(missing), len(batch))
                pause_point("generation")

        return self.cache.complete(cache_keys([self.name, self.model.sha], prompts, sampling), produce)

    def _generate_requests(self, prompts: list[str], sampling: Sampling, occurrences: list[int]) -> list[str]:
        """One batch, knowing each prompt's occurrence index in its request (a backend that seeds every
        request itself uses it); by default just `_generate_batch`."""
        return self._generate_batch(prompts, sampling)

    @property
    def config(self):
        """The model's transformers config (read once, without loading weights)."""
        if getattr(self, "_config", None) is None:
            from transformers import AutoConfig

            self._config = AutoConfig.from_pretrained(self.model.path)
        return self._config

    @property
    def max_length(self) -> int:
        """The longest sequence the model takes, found as lm-eval's HF model finds it."""
        return model_max_length(self.config, self.tokenizer)

    def _generation_batches(self, prompts: list[str], sampling: Sampling) -> list[list[int]]:
        """Indices of `prompts` in batches: longest prompt (in tokens) first, each batch as large as
        `_generation_batch_size` allows for its longest prompt, sizes evened out."""
        lengths = token_lengths(self.tokenizer, prompts)
        return length_sorted_batches(lengths, lambda longest: self._generation_batch_size(longest, sampling.max_new_tokens))

    def _generation_batch_size(self, prompt_tokens: int, new_tokens: int) -> int:
        """How many prompts of up to `prompt_tokens` tokens one batch takes; without a memory model
        (this base class), the cap."""
        return self.batch_size or AUTO_MAX_BATCH["cpu"]

    def loglikelihood(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
                      desc: str = "scoring") -> list[tuple[float, bool]]:
        """For each (context token ids, continuation token ids): the summed log-probability of the
        continuation after the context, and whether greedy decoding would produce it token by token.
        Cached like generations (key kind `loglikelihood`); a context longer than the model's window
        is cut from the left, as lm-eval's HF model does."""
        pairs = [(list(map(int, context)), list(map(int, continuation))) for context, continuation in pairs]
        for context, continuation in pairs:
            if not context or not continuation:
                raise ValueError("loglikelihood: a pair needs a non-empty context and continuation")
        keys = [hash_json([self.name, self.model.sha, "loglikelihood", context, continuation])
                for context, continuation in pairs]
        found = {key: tuple(json.loads(value)) for key, value in self.cache.get_many(keys).items()}
        missing = list(dict.fromkeys(key for key in keys if key not in found))  # each distinct pair once
        if missing:
            log.info("%s: %d pairs (%d cached) with %s", desc, len(pairs), len(pairs) - len(missing), self.model.label)
            first = {key: pair for key, pair in zip(keys, pairs)}
            for start in range(0, len(missing), SCORING_CHUNK):
                chunk = missing[start:start + SCORING_CHUNK]
                scores = self._score_pairs([first[key] for key in chunk])
                fresh = {key: (float(lp), bool(greedy)) for key, (lp, greedy) in zip(chunk, scores)}
                self.cache.put_many({key: json.dumps(value) for key, value in fresh.items()})
                found.update(fresh)
                self.scored += len(chunk)
        return [found[key] for key in keys]

    def _score_pairs(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        raise ForgetbenchError(f"generation backend {self.name!r} cannot score log-likelihoods")


SCORING_CHUNK = 1024  # pairs scored between cache commits


def token_lengths(tokenizer, texts: Sequence[str]) -> list[int]:
    """Token counts of already-templated texts, tokenised as the backends tokenise prompts."""
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    return text[:cut] if cut >= 0 else text


def model_max_length(config, tokenizer, default: int = 2048) -> int:
    """A model's window as lm-eval's HF model resolves it (`resolve_max_length`): the (text) config's
    `n_positions`, `max_position_embeddings` or `n_ctx`, else the tokenizer's `model_max_length` when
    set, else 2048 (lm-eval's default)."""
    cfg = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attr, None)
        if value is not None:
            return int(value)
    value = getattr(tokenizer, "model_max_length", None)
    if value is not None and value < 10**20:  # transformers' "unset" is a huge number
        return int(value)
    return default
