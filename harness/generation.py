"""Text generation behind one small interface, with a persistent cache.

`GenerationBackend.generate(prompts, sampling)` takes already-templated prompts; `chat` applies the
model's chat template first. Every output is cached on disk under (backend, model hash, prompt,
sampling settings, occurrence index), so asking again — in this process or a later one — costs no
generation. The occurrence index lets one request sample the same prompt many times (as
reconstruction recipes do) and still give each sample its own cache entry.

`loglikelihood(pairs)` scores token continuations (the log-probability of each continuation after
its context, and whether greedy decoding would produce it), cached the same way under its own key kind;
the lm-eval model `forgetbench` (`harness.evaluation.lm_model`) runs lm-eval's tasks on both methods.

Batches are sized by `harness.batching` from the prompts' token lengths and the memory free on the
device; a backend's `batch_size` is only an upper bound (None: the device's default cap).

Backends: `transformers` (CPU or GPU, batched with left padding), `vllm` (optional extra, imported
only when chosen) loading the checkpoint itself (for LoRA runs: the merged one), and `vllm-lora`
serving the base model with the run's LoRA adapter attached to every request. Either way the
fine-tuned weights are what generates: `vllm_target` never hands vLLM the base model alone for a
fine-tuned checkpoint (the trap of lm-eval issue #2432, where an adapter was silently not applied).
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import sqlite3
import urllib.request
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.artefacts import check_sqlite
from harness.batching import AUTO_MAX_BATCH, length_sorted_batches
from harness.errors import ConfigError, DataError, ForgetbenchError, ModelError
from harness.hashing import hash_json
from harness.models import ResolvedModel
from harness.paths import cache_dir
from harness.testhooks import pause_point

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. temperature 0 means greedy; `seed` makes sampling reproducible."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)
    top_k: int = 0  # 0: no top-k cut-off

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def key(self) -> dict:
        """The settings as they enter cache keys. `top_k` appears only when set, so the keys of
        generations made before it existed (all without a top-k cut-off) stay valid."""
        settings = asdict(self)
        if not self.top_k:
            del settings["top_k"]
        return settings


# sail-sg/sdft's generation defaults (its LLaMA-Factory fork's, not overridden by the scripts): sampled,
# temperature 0.95, top_p 0.7, top_k 50, 512 new tokens. Seed 003's SDFT rewrites and its safety
# evaluation both generate this way (recipes/sdft.py, harness/evaluation/safety.py).
SAIL_SG_DECODING = Sampling(max_new_tokens=512, temperature=0.95, top_p=0.7, top_k=50)


class GenerationCache:
    """A SQLite key-value store of generations; safe for several processes at once (Ray workers on
    one machine included): WAL journal, a 60 s busy timeout, one short transaction per batch, and
    every connection closed after use. A killed writer leaves the last committed batch, never a
    partial one. WAL needs a local file system: on a cluster, give each node its own cache."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "generations.sqlite"
        check_sqlite(self.path, "generation cache")  # a damaged file is moved aside; a fresh one starts
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file
            db.execute("CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, output TEXT NOT NULL)")

    @contextlib.contextmanager
    def _connect(self):
        try:
            db = sqlite3.connect(self.path, timeout=60)
        except sqlite3.Error as exc:
            raise ForgetbenchError(f"generation cache {self.path}: cannot open ({exc})") from None
        try:
            with db:  # commit on success, roll back on error
                yield db
        except sqlite3.DatabaseError as exc:
            hint = "" if isinstance(exc, sqlite3.OperationalError) else \
                " (`forgetbench cache verify --fix` moves a damaged file aside)"
            raise ForgetbenchError(f"generation cache {self.path}: {exc}{hint}") from None
        finally:
            db.close()

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
        keys = cache_keys([self.name, self.model.sha], prompts, sampling)
        occurrences = occurrence_indices(prompts)
        outputs = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in outputs]
        if missing:
            log.info("%s: %d prompts (%d cached) with %s", desc, len(prompts), len(prompts) - len(missing), self.model.label)
            done = 0
            for part in self._generation_batches([prompts[i] for i in missing], sampling):
                batch = [missing[j] for j in part]
                texts = self._generate_requests([prompts[i] for i in batch], sampling, [occurrences[i] for i in batch])
                fresh = {keys[i]: _cut_at_stop(text, sampling.stop) for i, text in zip(batch, texts)}
                self.cache.put_many(fresh)  # saved batch by batch: an interrupted run keeps its work
                outputs.update(fresh)
                self.generated += len(batch)
                done += len(batch)
                log.info("%s: %d/%d (batch of %d)", desc, done, len(missing), len(batch))
                pause_point("generation")
        return [outputs[key] for key in keys]

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
# A scoring batch holds rows of at least this share of its longest row's length: padding costs as much
# as real tokens, and on a CPU a forward of a few hundred tokens is as efficient as one of thousands.
SCORING_MIN_FILL = 0.85


def token_lengths(tokenizer, texts: Sequence[str]) -> list[int]:
    """Token counts of already-templated texts, tokenised as the backends tokenise prompts."""
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def occurrence_indices(texts: Sequence[str]) -> list[int]:
    """For each text, how many times the same text came before it in this request (0, 1, 2, ...)."""
    seen: Counter[str] = Counter()
    indices = []
    for text in texts:
        indices.append(seen[text])
        seen[text] += 1
    return indices


def cache_keys(identity: list, texts: Sequence[str], sampling: Sampling) -> list[str]:
    """One generation-cache key per text under a generator's identity; the k-th repeat of the same
    text in one request gets its own key (occurrence index k), so repeated sampling stays distinct."""
    settings = sampling.key()
    return [hash_json([*identity, text, settings, k]) for text, k in zip(texts, occurrence_indices(texts))]


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    return text[:cut] if cut >= 0 else text


class TransformersBackend(GenerationBackend):
    """Batched `model.generate` with left padding; CUDA when available, else CPU. Batches are as large
    as the free memory allows (`harness.batching`), up to `batch_size` when given; each sequence stops
    at its own stop strings or end-of-sequence token (the batch runs until its last one stops)."""

    name = "transformers"

    def __init__(self, model: ResolvedModel, batch_size: int | None = None, cache: GenerationCache | None = None,
                 dtype: str = "float32"):
        super().__init__(model, batch_size, cache)
        self._dtype = dtype
        self._model = None
        self._tokenizer = None
        self._config = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from harness.models import load_tokenizer

            self._tokenizer = load_tokenizer(self.model, padding_side="left")
        return self._tokenizer

    @property
    def device(self) -> str:
        if self._model is not None:
            return str(self._model.device)
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _footprint(self):
        import torch

        from harness.batching import footprint

        return footprint(self.config, torch.finfo(getattr(torch, self._dtype)).bits // 8)

    def _budget(self) -> int:
        from harness.batching import MEMORY_SHARE, free_memory

        return int(MEMORY_SHARE * free_memory(self.device))

    def _generation_batch_size(self, prompt_tokens: int, new_tokens: int) -> int:
        from harness.batching import batch_size_for, device_kind

        cap = self.batch_size or AUTO_MAX_BATCH[device_kind(self.device)]
        return batch_size_for(self._footprint().generation(prompt_tokens, new_tokens), self._budget(), cap)

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

        from harness.decoding import Decoding, decode

        model, tokenizer = self._loaded(), self.tokenizer
        rows = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        generator = None
        if not sampling.greedy:
            # seeded per batch content, so the same request reproduces the same samples
            generator = torch.Generator(model.device).manual_seed(int(hash_json([sampling.seed, prompts])[:8], 16))
        decoding = Decoding(max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                            top_p=sampling.top_p, top_k=sampling.top_k, generator=generator)
        stops = generated_stop_check(tokenizer, sampling.stop) if sampling.stop else None
        new_tokens = decode(model, rows, decoding, end_ids=end_token_ids(model, tokenizer),
                            pad_id=tokenizer.pad_token_id or 0, stops=stops)
        return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    def _score_pairs(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """lm-eval HFLM's scoring (float32 log-softmax over each continuation's positions, the input cut
        to the model's window from the left), with every context run once: a context's continuations
        are branches of one row under a tree attention mask (`harness.tree_scoring`); rows are sorted
        by length and batched by tokens and memory; only positions some row scores reach the output
        layer."""
        from harness.batching import SCORING_MAX_TOKENS, device_kind, token_batches
        from harness.tree_scoring import tree_rows

        model = self._loaded()
        rows = tree_rows(pairs, self.max_length, shared=_takes_tree_mask(model))
        fp = self._footprint()
        max_tokens = min(SCORING_MAX_TOKENS[device_kind(self.device)],
                         self._budget() // (fp.activations_per_token + fp.logits_row))
        cap = self.batch_size or len(rows)  # rows per forward; the token budget binds first
        results: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
        for batch in token_batches([len(row.tokens) for row in rows], max(1, max_tokens), cap, min_fill=SCORING_MIN_FILL):
            self._score_rows([rows[i] for i in batch], pairs, results)
        return results

    def _score_rows(self, rows: list, pairs: list[tuple[list[int], list[int]]], results: list) -> None:
        """One forward over right-padded `rows`; each scored pair's (summed log-probability, greedy)
        written to `results`."""
        import torch

        from harness.decoding import forward_parameters
        from harness.tree_scoring import PADDING, tree_attention_mask

        model = self._loaded()
        device = model.device
        width = max(len(row.tokens) for row in rows)
        pad = self.tokenizer.pad_token_id or 0

        def padded(values, filler):
            return torch.tensor([row_values + [filler] * (width - len(row_values)) for row_values in values], device=device)

        ids = padded([row.tokens for row in rows], pad)
        options = {}
        if any(max(row.segments) > 0 for row in rows):  # branches: the tree mask and per-branch position ids
            additive = None if _attention_implementation(model) == "sdpa" else model.dtype
            options = {"attention_mask": tree_attention_mask(padded([row.segments for row in rows], PADDING), additive),
                       "position_ids": padded([row.positions for row in rows], 0)}
        kept = sorted({p for row in rows for positions in row.scored.values() for p in positions})
        column = {position: j for j, position in enumerate(kept)}
        owners = [(r, index) for r, row in enumerate(rows) for index in row.scored]
        row_index = torch.tensor([r for r, index in owners for _ in rows[r].scored[index]], device=device)
        col_index = torch.tensor([column[p] for r, index in owners for p in rows[r].scored[index]], device=device)
        targets = torch.tensor([t for _, index in owners for t in pairs[index][1]], device=device)
        takes_keep = "logits_to_keep" in forward_parameters(model)
        with torch.inference_mode(), _output_layer_on(model, (row_index, col_index) if takes_keep else None):
            if takes_keep:
                logits = model(ids, logits_to_keep=torch.tensor(kept, device=device), use_cache=False, **options).logits[0]
            else:
                logits = model(ids, use_cache=False, **options).logits[:, kept][row_index, col_index]
            logits = logits.to(torch.float32)
            # log-softmax at the target alone: the target's logit less the log-sum-exp over the vocabulary
            picked = (logits.gather(1, targets[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)).cpu()
            greedy = (logits.argmax(dim=-1) == targets).cpu()
        start = 0
        for _, index in owners:
            end = start + len(pairs[index][1])
            results[index] = (float(picked[start:end].sum()), bool(greedy[start:end].all()))
            start = end


@contextlib.contextmanager
def _output_layer_on(model, selected):
    """While active, the model's output layer sees only the hidden states at `selected` (row indices,
    column indices into the kept positions), as one row: the vocabulary-wide logits are computed for
    the scored positions alone, not for every kept position of every row. Any processing the model
    applies after that layer (soft-capping, scaling) still runs. `selected` None: no change."""
    if selected is None:
        yield
        return
    rows, columns = selected
    hook = model.get_output_embeddings().register_forward_pre_hook(
        lambda module, args: (args[0][rows, columns][None], *args[1:]))
    try:
        yield
    finally:
        hook.remove()


def _takes_tree_mask(model) -> bool:
    """Whether `model` scores branches under a custom 4D attention mask: plain full attention in every
    layer (no sliding window, which a custom mask would override) through sdpa or eager attention."""
    config = getattr(model.config, "text_config", None) or model.config
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    return _attention_implementation(model) in ("sdpa", "eager") and layer_types == {"full_attention"} and \
        not getattr(config, "sliding_window", None)


def _attention_implementation(model) -> str:
    config = getattr(model.config, "text_config", None) or model.config
    return getattr(config, "_attn_implementation", None) or "eager"


def generated_stop_check(tokenizer, stops: Sequence[str]) -> Callable[[list[int]], bool]:
    """Whether a sequence's generated tokens show one of `stops`, looking at its last (longest stop
    string's tokens + 2) tokens, as lm-eval's HF model does. Only generated text is searched
    (transformers' own `stop_strings` also match across the prompt's end: a prompt ending in a newline
    and a first generated newline would stop at "\\n\\n"); a stop string tokenised longer than the window
    is still cut from the text afterwards, only found later."""
    window = max(len(tokenizer.encode(stop, add_special_tokens=False)) for stop in stops) + 2

    def check(tokens: list[int]) -> bool:
        tail = tokenizer.decode(tokens[-window:])
        return any(stop in tail for stop in stops)

    return check


def end_token_ids(model, tokenizer) -> list[int]:
    """The tokens that end a sequence: the model's generation config's end-of-sequence id(s) (what
    `generate` stops at), else the tokenizer's."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    return [int(i) for i in (configured if isinstance(configured, (list, tuple)) else [configured])]


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


VLLM_BACKENDS = ("vllm", "vllm-lora")
_VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


def require_vllm(backend: str) -> None:
    """ConfigError naming the extra to install, before anything imports vLLM."""
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(f"generation_backend {backend!r} needs vLLM (GPU): pip install 'forgetbench[vllm]'")


@dataclass(frozen=True)
class VLLMTarget:
    """What vLLM loads to serve one model: a checkpoint, plus a LoRA adapter to attach to every request."""

    model_path: Path
    adapter: Path | None = None
    max_lora_rank: int | None = None


def adapter_dir(model: ResolvedModel) -> Path | None:
    """The LoRA adapter saved next to a fine-tuned checkpoint (`<run>/model` + `<run>/adapter`), if any."""
    folder = model.path.parent / "adapter"
    if model.path.name == "model" and (folder / "adapter_config.json").is_file():
        return folder
    return None


def vllm_target(model: ResolvedModel, backend: str) -> VLLMTarget:
    """`vllm`: the checkpoint itself (a LoRA run's merged weights). `vllm-lora`: the adapter's base model
    with the adapter attached; a checkpoint without an adapter (the seed model, full fine-tuning) is
    served as is. Raises ModelError rather than fall back to the base model alone."""
    if backend not in VLLM_BACKENDS:
        raise ConfigError(f"unknown vLLM backend {backend!r}; choose one of {', '.join(VLLM_BACKENDS)}")
    adapter = adapter_dir(model) if backend == "vllm-lora" else None
    if adapter is None:
        return VLLMTarget(model_path=model.path)
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    base = Path(str(config.get("base_model_name_or_path") or ""))
    if not (base / "config.json").is_file():
        raise ModelError(f"{adapter}/adapter_config.json: base_model_name_or_path {str(base)!r} is not a local "
                         f"checkpoint; use generation_backend: vllm (merged weights) instead")
    rank = int(config.get("r") or 8)
    max_rank = next((r for r in _VLLM_LORA_RANKS if r >= rank), None)
    if max_rank is None:
        raise ModelError(f"{adapter}: LoRA rank {rank} exceeds vLLM's largest max_lora_rank {_VLLM_LORA_RANKS[-1]}; "
                         f"use generation_backend: vllm (merged weights)")
    return VLLMTarget(model_path=base.resolve(), adapter=adapter.resolve(), max_lora_rank=max_rank)


class VLLMBackend(GenerationBackend):
    """vLLM on a GPU (`pip install forgetbench[vllm]`); imported only when this backend is chosen.

    `name` is `vllm` or `vllm-lora` (see `vllm_target`); it is part of every cache key, so merged and
    adapter generations never stand in for each other."""

    def __init__(self, model: ResolvedModel, batch_size: int | None = None, cache: GenerationCache | None = None,
                 backend: str = "vllm"):
        # vLLM schedules its own batches; this size is only how often results are committed to the cache
        super().__init__(model, max(batch_size or 256, 256), cache)
        require_vllm(backend)
        from vllm import LLM

        self.name = backend
        self.target = vllm_target(model, backend)
        options = {}
        self._lora_request = None
        if self.target.adapter is not None:
            from vllm.lora.request import LoRARequest

            options = {"enable_lora": True, "max_lora_rank": self.target.max_lora_rank, "max_loras": 1}
            self._lora_request = LoRARequest("finetuned", 1, str(self.target.adapter))
        self._llm = LLM(model=str(self.target.model_path), seed=0, **options)

    @property
    def tokenizer(self):
        return self._llm.get_tokenizer()

    def _generation_batches(self, prompts: list[str], sampling: Sampling) -> list[list[int]]:
        """vLLM schedules (and sizes) its own batches; these chunks only set how often the cache commits."""
        return [list(range(start, min(start + self.batch_size, len(prompts))))
                for start in range(0, len(prompts), self.batch_size)]

    def _generate_batch(self, prompts: list[str], sampling: Sampling) -> list[str]:
        return self._generate_requests(prompts, sampling, occurrence_indices(prompts))

    def _generate_requests(self, prompts: list[str], sampling: Sampling, occurrences: list[int]) -> list[str]:
        from vllm import SamplingParams

        params = [SamplingParams(**kwargs) for kwargs in vllm_sampling_kwargs(sampling, occurrences)]
        results = self._llm.generate(prompts, params, use_tqdm=False, lora_request=self._lora_request)
        return [result.outputs[0].text for result in results]

    @property
    def max_length(self) -> int:
        return int(self._llm.llm_engine.model_config.max_model_len)

    def _score_pairs(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """lm-eval's vLLM scoring: (context + continuation) cut from the left to the window less one
        (vLLM needs room for one generated token), scored by `prompt_logprobs=1`; a continuation token
        is greedy when no other token has a higher log-probability at its position."""
        from vllm import SamplingParams

        window = self.max_length - 1
        sequences = [(context + continuation)[-window:] for context, continuation in pairs]
        params = SamplingParams(temperature=0, prompt_logprobs=1, max_tokens=1, detokenize=False)
        results = self._llm.generate([{"prompt_token_ids": s} for s in sequences], params, use_tqdm=False,
                                     lora_request=self._lora_request)
        scores = []
        for (_, continuation), sequence, result in zip(pairs, sequences, results):
            positions = result.prompt_logprobs[len(sequence) - len(continuation):]
            total, greedy = 0.0, True
            for token, options in zip(sequence[len(sequence) - len(continuation):], positions):
                values = {t: float(getattr(lp, "logprob", lp)) for t, lp in options.items()}
                total += values[token]
                greedy = greedy and max(values, key=values.get) == token
            scores.append((total, greedy))
        return scores


def request_seed(seed: int, occurrence: int) -> int:
    """The sampler seed of one request: derived from (sampling seed, occurrence index), so the k-th
    repeat of a prompt samples differently from the first, reproducibly (a 31-bit integer)."""
    return int(hash_json([seed, occurrence])[:8], 16) & 0x7FFFFFFF


def vllm_sampling_kwargs(sampling: Sampling, occurrences: Sequence[int]) -> list[dict]:
    """Keyword arguments of vLLM's `SamplingParams`, one dict per request. Sampled requests each get
    their own seed (`request_seed`): with one shared seed, repeats of a prompt in one batch would come
    back identical. Greedy requests need no seed. top_k -1 is vLLM's "no cut-off"."""
    out = []
    for occurrence in occurrences:
        kwargs = {"max_tokens": sampling.max_new_tokens, "temperature": sampling.temperature,
                  "top_p": sampling.top_p, "top_k": sampling.top_k or -1, "stop": list(sampling.stop) or None,
                  "seed": None if sampling.greedy else request_seed(sampling.seed, occurrence)}
        out.append(kwargs)
    return out


BACKENDS = ("transformers", *VLLM_BACKENDS)


def make_backend(name: str, model: ResolvedModel, batch_size: int | None = None) -> GenerationBackend:
    """The generation backend `name` over `model`; `batch_size` caps its batches (None: memory decides)."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown generation backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name in VLLM_BACKENDS:
        return VLLMBackend(model, batch_size=batch_size, backend=name)
    return TransformersBackend(model, batch_size=batch_size)


def is_endpoint(spec: str) -> bool:
    """An OpenAI-compatible endpoint spec (`http(s)://host/v1#model`) rather than a model spec."""
    return spec.startswith(("http://", "https://"))


class EndpointBackend:
    """An OpenAI-compatible chat-completions endpoint (`URL#model`), cached like a local backend: committee
    members and the AlpacaEval judge use it alike."""

    name = "endpoint"

    def __init__(self, spec: str, who: str = "endpoint", timeout: float = 120.0):
        self.spec = spec
        url, _, self.model_name = spec.partition("#")
        self.who = who  # named in errors: "committee member", "alpaca_eval judge", ...
        self.url = url if url.rstrip("/").endswith("/chat/completions") else url.rstrip("/") + "/chat/completions"
        self.timeout = timeout
        self.cache = GenerationCache()
        self.generated = 0

    def chat(self, conversations: Sequence[Sequence[dict]], sampling: Sampling, desc: str = "") -> list[str]:
        texts = [json.dumps(list(conversation), sort_keys=True) for conversation in conversations]
        keys = cache_keys([self.name, self.url, self.model_name], texts, sampling)
        found = self.cache.get_many(keys)
        for key, conversation in zip(keys, conversations):
            if key not in found:
                found[key] = self._request(list(conversation), sampling)
                self.cache.put_many({key: found[key]})
                self.generated += 1
        return [found[key] for key in keys]

    def _request(self, messages: list[dict], sampling: Sampling) -> str:
        body = {"model": self.model_name or None, "messages": messages, "max_tokens": sampling.max_new_tokens,
                "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed}
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.top_k:
            body["top_k"] = sampling.top_k  # not in OpenAI's API; vLLM-style servers accept it
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())["choices"][0]["message"]["content"] or ""
        except Exception as exc:  # unreachable, malformed: name the endpoint and its role
            raise DataError(f"{self.who} {self.url}: request failed ({type(exc).__name__}: {exc})") from None
