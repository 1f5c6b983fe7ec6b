"""The decoding loop behind `TransformersBackend`: batched generation that stays fast on long outputs.

`model.generate` keeps every sequence of a batch running until the last one stops (finished ones are
fed padding) and grows its KV cache by concatenation, so each step copies the whole cache. On a CPU,
where a long sequence's step is mostly reading and copying that cache, the long generations of the
leaderboard benchmarks (IFEval's 1280 new tokens, MATH-L5's 1024 after 4-shot prompts of ~850
tokens) paid for it at every step.
This loop does the same decoding with three changes:
- a long prefix every prompt of the batch shares (few-shot examples) is run once and its cache copied
  to every row, so each row's prefill covers only its own tokens;
- each layer's cache is reserved once for the batch's longest possible sequence (prompt width plus
  new tokens) and every step writes its keys and values in place; attention reads the filled part;
- a sequence leaves the batch as soon as it ends (end-of-sequence token, a stop condition, or its
  token budget); the rest run on.
Greedy decoding picks the same tokens as `model.generate` (float32 logits of the last position,
argmax; tests/test_decoding.py); sampling applies transformers' own warpers in `generate`'s order
(temperature, top-k, top-p) and draws from a generator seeded by the caller. Decoder-only models with
full attention in every layer get the reserved cache; others (sliding windows, ...) keep transformers'
own cache layers and still drop finished sequences.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


class ReservedLayer(DynamicLayer):
    """A full-attention cache layer with room for `capacity` tokens, allocated at its first update."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.filled = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch, heads, _, key_dim = key_states.shape
        self.device = key_states.device
        self._keys = key_states.new_empty(batch, heads, self.capacity, key_dim)
        self._values = value_states.new_empty(batch, heads, self.capacity, value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.filled + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"reserved KV cache of {self.capacity} tokens cannot take {end}")
        self._keys[:, :, self.filled:end] = key_states
        self._values[:, :, self.filled:end] = value_states
        self.filled = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self.keys, self.values = self._keys[:, :, :self.filled], self._values[:, :, :self.filled]

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self.keys, self.values = self._keys[:, :, :self.filled], self._values[:, :, :self.filled]


def batch_cache(config, capacity: int) -> DynamicCache:
    """A cache for one batch: transformers' own layers for `config`, each plain full-attention layer
    replaced by a `ReservedLayer` of `capacity` tokens."""
    cache = DynamicCache(config=config)
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [ReservedLayer(capacity) for _ in cache.layers]
    return cache


@dataclass(frozen=True)
class Decoding:
    """How to pick tokens: greedy when `temperature` is 0, else sampled from `generator`."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    generator: torch.Generator | None = None

    def warpers(self):
        """transformers' logits warpers, in the order `generate` applies them."""
        from transformers.generation import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        chain = LogitsProcessorList()
        if self.temperature != 1.0:
            chain.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k:
            chain.append(TopKLogitsWarper(self.top_k))
        if self.top_p < 1.0:
            chain.append(TopPLogitsWarper(self.top_p))
        return chain


@functools.cache
def _forward_parameters(model_class: type) -> frozenset[str]:
    return frozenset(inspect.signature(model_class.forward).parameters)


def forward_parameters(model) -> frozenset[str]:
    """The keyword names the model's forward takes (read once per model class: decoding asks every step)."""
    return _forward_parameters(type(model))


def cache_argument(model, cache) -> dict:
    """`cache` as the keyword the model's forward takes: `cache` (transformers >= 5.24), else `past_key_values`."""
    return {"cache" if "cache" in forward_parameters(model) else "past_key_values": cache}


# A prefix every prompt of a batch shares (few-shot examples, a long system prompt) is run once, at
# batch 1, when it is at least this long; shorter ones save less than copying their cache to every row.
SHARED_PREFIX_MIN_TOKENS = 64


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens all `rows` start with, leaving every row at least one token of its own (whose logits
    give the first new token); 0 for a single row."""
    if len(rows) < 2:
        return 0
    limit = min(len(row) for row in rows) - 1
    length = 0
    while length < limit and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length


def left_padded(rows: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """`rows` as one left-padded id tensor and its attention mask."""
    width = max(len(row) for row in rows)
    ids = torch.tensor([[pad_id] * (width - len(row)) + list(row) for row in rows], device=device)
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=device)
    return ids, mask


def prefill(model, rows: Sequence[Sequence[int]], pad_id: int, cache):
    """Run the prompts `rows` (token ids) into `cache`: a shared prefix of at least
    `SHARED_PREFIX_MIN_TOKENS` once at batch 1 and its cache copied to every row, then each row's own
    tokens, left-padded. Returns the float32 logits of each row's next token, the attention mask and
    the position ids of the last step (what decoding continues from)."""
    device = model.device
    shared = shared_prefix_length(rows)
    if shared < SHARED_PREFIX_MIN_TOKENS:
        shared = 0
    ids, mask = left_padded([row[shared:] for row in rows], pad_id, device)
    positions = shared + (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    if shared:  # [shared prefix | left padding | own tokens]
        forward(model, cache, torch.tensor([list(rows[0][:shared])], device=device), None,
                torch.arange(shared, device=device)[None])
        cache.batch_repeat_interleave(len(rows))
        mask = torch.cat([mask.new_ones(len(rows), shared), mask], dim=1)
    return forward(model, cache, ids, mask, positions), mask, positions


def forward(model, cache, ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor) -> torch.Tensor:
    """One forward pass over `cache`: the float32 logits of each row's last position (the only position
    that reaches the output layer where the model takes `logits_to_keep`)."""
    last_only = {"logits_to_keep": 1} if "logits_to_keep" in forward_parameters(model) else {}
    return model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **last_only,
                 **cache_argument(model, cache)).logits[:, -1].to(torch.float32)


def prompt_cache(model, rows: Sequence[Sequence[int]], new_tokens: int):
    """A cache with room for the longest prompt of `rows` and `new_tokens` more."""
    return batch_cache(model.config, max(len(row) for row in rows) + new_tokens)


def next_token_logits(model, rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """The float32 logits of the token after each prompt of `rows` (a shared prefix runs once)."""
    with torch.inference_mode():
        return prefill(model, rows, pad_id, prompt_cache(model, rows, 0))[0]


def decode(model, rows: Sequence[Sequence[int]], decoding: Decoding, end_ids: Sequence[int], pad_id: int,
           stops: Callable[[list[int]], bool] | None = None) -> list[list[int]]:
    """The new tokens after each prompt of `rows` (token ids), without the end-of-sequence token.
    A row ends at a token in `end_ids`, when `stops(its new tokens)` is true, or after
    `decoding.max_new_tokens` tokens."""
    device = model.device
    cache = prompt_cache(model, rows, decoding.max_new_tokens)
    warpers = None if decoding.temperature == 0.0 else decoding.warpers()
    ends = torch.tensor(sorted(set(end_ids)), device=device)
    new: list[list[int]] = [[] for _ in rows]
    running = list(range(len(rows)))  # original row of each row still in the batch
    with torch.inference_mode():
        logits, mask, positions = prefill(model, rows, pad_id, cache)
        for _ in range(decoding.max_new_tokens):
            if warpers is None:
                tokens = logits.argmax(dim=-1)
            else:
                probs = torch.softmax(warpers(None, logits), dim=-1)
                tokens = torch.multinomial(probs, 1, generator=decoding.generator).squeeze(1)
            ended = torch.isin(tokens, ends).tolist()
            keep = []
            for slot, (row, token) in enumerate(zip(running, tokens.tolist())):
                if not ended[slot]:
                    new[row].append(token)
                    if len(new[row]) < decoding.max_new_tokens and not (stops and stops(new[row])):
                        keep.append(slot)
            if not keep:
                break
            if len(keep) < len(running):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                running = [running[slot] for slot in keep]
                tokens, mask, positions = tokens[index], mask[index], positions[index]
            positions = positions[:, -1:] + 1
            mask = torch.cat([mask, mask.new_ones(len(running), 1)], dim=1)
            logits = forward(model, cache, tokens.unsqueeze(1), mask, positions)
    return new
