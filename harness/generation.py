"""Text generation behind one small interface, with a persistent cache.

`GenerationBackend.generate(prompts, sampling)` takes already-templated prompts; `chat` applies the
model's chat template first. Every output is cached on disk under (backend, model hash, prompt,
sampling settings, occurrence index), so asking again — in this process or a later one — costs no
generation. The occurrence index lets one request sample the same prompt many times (as
reconstruction recipes do) and still give each sample its own cache entry.

Backends: `transformers` (CPU or GPU, batched with left padding) and `vllm` (optional extra, imported
only when chosen).
"""
from __future__ import annotations

import logging
import sqlite3
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import ConfigError
from harness.hashing import hash_json
from harness.models import ResolvedModel
from harness.paths import cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. temperature 0 means greedy; `seed` makes sampling reproducible."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class GenerationCache:
    """A SQLite key-value store of generations; safe for several processes at once."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "generations.sqlite"
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, output TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                found.update(db.execute(f"SELECT key, output FROM generations WHERE key IN ({marks})", chunk))
        return found

    def put_many(self, items: dict[str, str]) -> None:
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO generations VALUES (?, ?)", items.items())


class GenerationBackend(ABC):
    """Generates text from one model. Subclasses implement `_generate_batch` only."""

    name = "abstract"

    def __init__(self, model: ResolvedModel, batch_size: int = 8, cache: GenerationCache | None = None):
        self.model = model
        self.batch_size = batch_size
        self.cache = cache if cache is not None else GenerationCache()
        self.generated = 0  # prompts actually run through the model (cache misses), for tests and logs

    @property
    @abstractmethod
    def tokenizer(self): ...

    @abstractmethod
    def _generate_batch(self, prompts: list[str], sampling: Sampling) -> list[str]: ...

    def chat(self, conversations: Sequence[Sequence[dict]], sampling: Sampling, desc: str = "generating") -> list[str]:
        """Answer each conversation as the assistant's next turn."""
        prompts = [
            self.tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        return self.generate(prompts, sampling, desc)

    def generate(self, prompts: Sequence[str], sampling: Sampling, desc: str = "generating") -> list[str]:
        keys = cache_keys([self.name, self.model.sha], prompts, sampling)
        outputs = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in outputs]
        if missing:
            log.info("%s: %d prompts (%d cached) with %s", desc, len(prompts), len(prompts) - len(missing), self.model.label)
            # longest first: similar lengths share a batch, and memory peaks show up early
            missing.sort(key=lambda i: -len(prompts[i]))
            for start in range(0, len(missing), self.batch_size):
                batch = missing[start:start + self.batch_size]
                texts = self._generate_batch([prompts[i] for i in batch], sampling)
                fresh = {keys[i]: _cut_at_stop(text, sampling.stop) for i, text in zip(batch, texts)}
                self.cache.put_many(fresh)  # saved batch by batch: an interrupted run keeps its work
                outputs.update(fresh)
                self.generated += len(batch)
                log.info("%s: %d/%d", desc, min(start + self.batch_size, len(missing)), len(missing))
        return [outputs[key] for key in keys]


def cache_keys(identity: list, texts: Sequence[str], sampling: Sampling) -> list[str]:
    """One generation-cache key per text under a generator's identity; the k-th repeat of the same
    text in one request gets its own key (occurrence index k), so repeated sampling stays distinct."""
    occurrences: Counter[str] = Counter()
    keys = []
    for text in texts:
        keys.append(hash_json([*identity, text, asdict(sampling), occurrences[text]]))
        occurrences[text] += 1
    return keys


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    return text[:cut] if cut >= 0 else text


class TransformersBackend(GenerationBackend):
    """Batched `model.generate` with left padding; CUDA when available, else CPU."""

    name = "transformers"

    def __init__(self, model: ResolvedModel, batch_size: int = 8, cache: GenerationCache | None = None,
                 dtype: str = "float32"):
        super().__init__(model, batch_size, cache)
        self._dtype = dtype
        self._model = None
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from harness.models import load_tokenizer

            self._tokenizer = load_tokenizer(self.model, padding_side="left")
        return self._tokenizer

    def _loaded(self):
        if self._model is None:
            import torch

            from harness.models import load_model

            self._model = load_model(self.model, self._dtype)
            if torch.cuda.is_available():
                self._model = self._model.to("cuda")
        return self._model

    def _generate_batch(self, prompts: list[str], sampling: Sampling) -> list[str]:
        import torch

        model, tokenizer = self._loaded(), self.tokenizer
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        options = dict(max_new_tokens=sampling.max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        if sampling.greedy:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            options.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
            # seeded per batch content, so the same request reproduces the same samples
            torch.manual_seed(int(hash_json([sampling.seed, prompts])[:8], 16))
        if sampling.stop:
            options.update(stop_strings=list(sampling.stop), tokenizer=tokenizer)
        with torch.inference_mode():
            output = model.generate(**inputs, **options)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


class VLLMBackend(GenerationBackend):
    """vLLM on a GPU (`pip install forgetbench[vllm]`); imported only when this backend is chosen."""

    name = "vllm"

    def __init__(self, model: ResolvedModel, batch_size: int = 256, cache: GenerationCache | None = None):
        super().__init__(model, batch_size, cache)
        try:
            from vllm import LLM
        except ImportError:
            raise ConfigError("generation_backend 'vllm' needs the vllm extra: pip install 'forgetbench[vllm]'") from None
        self._llm = LLM(model=str(model.path), seed=0)

    @property
    def tokenizer(self):
        return self._llm.get_tokenizer()

    def _generate_batch(self, prompts: list[str], sampling: Sampling) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(
            max_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
            top_p=sampling.top_p, seed=sampling.seed, stop=list(sampling.stop) or None,
        )
        return [result.outputs[0].text for result in self._llm.generate(prompts, params, use_tqdm=False)]


BACKENDS = {"transformers": TransformersBackend, "vllm": VLLMBackend}


def make_backend(name: str, model: ResolvedModel, batch_size: int = 8) -> GenerationBackend:
    if name not in BACKENDS:
        raise ConfigError(f"unknown generation backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name](model, batch_size=batch_size)
