"""How many sequences one forward pass takes: sized from the model's memory needs and the machine's free memory.

A generation batch needs, per sequence, the KV cache of its prompt and new tokens (2 x layers x KV
heads x head size values per token), the prefill's transient activations of its prompt, and one
vocabulary-wide row of logits per step. A scoring (log-likelihood) batch needs, per token, the
forward's activations and the log-probabilities of the positions it keeps. Batches are filled up to
`MEMORY_SHARE` of the memory free now (CUDA: `torch.cuda.mem_get_info`; CPU: the available memory the
kernel reports), never past a count cap: the caller's `batch_size` when given, else `AUTO_MAX_BATCH`
(on CPU, larger batches stop paying: each decoding step costs about linearly in the batch, while a
batch's generations reach the cache only when the whole batch is done).

Requests are sorted by token length (longest first) so that a batch pads little and memory peaks
show up in the first batch. Greedy outputs do not depend on the batching; sampled ones do (one random
stream per batch), and their batches depend only on the prompts and the cap whenever the cap fits in
memory, so a rerun draws the same samples.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

MEMORY_SHARE = 0.5  # of the free memory; the rest stays for other processes and allocator slack
# count cap when the caller gives none. CPU: on 2 cores, plain `generate` of 64 AlpacaEval prompts x 128
# tokens (SmolLM2-135M, float32) ran 109 / 144 / 171 tokens/s at batch 16 / 32 / 64
# (tests/test_generation_bench.py); transformers' continuous batching (`generate_batch`) gave the same
# outputs 2.2x slower there, so it is not used.
AUTO_MAX_BATCH = {"cpu": 64, "cuda": 256}
SCORING_MAX_TOKENS = {"cpu": 8192, "cuda": 65536}  # tokens per scoring forward when the caller gives no cap


@dataclass(frozen=True)
class Footprint:
    """Bytes one model needs per token / per sequence, from its config and dtype."""

    kv_per_token: int  # KV cache of one token over all layers
    activations_per_token: int  # transient activations of one token in a forward pass
    logits_row: int  # one position's logits (and their softmax) over the vocabulary

    def generation(self, prompt_tokens: int, new_tokens: int) -> int:
        """Peak bytes of one sequence in a generation batch."""
        return (self.kv_per_token * (prompt_tokens + new_tokens) + self.activations_per_token * prompt_tokens
                + self.logits_row)

    def scoring(self, tokens: int, kept_positions: int) -> int:
        """Peak bytes of one sequence in a log-likelihood forward keeping `kept_positions` logits rows."""
        return self.activations_per_token * tokens + self.logits_row * kept_positions


def footprint(config, dtype_bytes: int = 4) -> Footprint:
    """The footprint of a transformers causal-LM config (a multimodal config's `text_config` if it has one)."""
    cfg = getattr(config, "text_config", None) or config
    hidden = int(cfg.hidden_size)
    heads = int(cfg.num_attention_heads)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or hidden // heads)
    layers = int(cfg.num_hidden_layers)
    intermediate = int(getattr(cfg, "intermediate_size", None) or 4 * hidden)
    vocab = int(cfg.vocab_size)
    return Footprint(
        kv_per_token=2 * layers * kv_heads * head_dim * dtype_bytes,
        # residual stream, attention in/out and the MLP's gate/up/activation live at once within a layer
        activations_per_token=(6 * hidden + 3 * intermediate) * dtype_bytes,
        logits_row=3 * vocab * 4,  # logits, processed scores, probabilities; float32
    )


def free_memory(device: str) -> int:
    """Bytes free for tensors on `device` ("cuda..." or "cpu") right now."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def device_kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def batch_size_for(bytes_per_sequence: int, budget: int, cap: int) -> int:
    """How many sequences of `bytes_per_sequence` fit in `budget` bytes, at least 1 and at most `cap`."""
    return max(1, min(cap, budget // max(1, bytes_per_sequence)))


def length_sorted_batches(lengths: Sequence[int], size_for: Callable[[int], int]) -> list[list[int]]:
    """Indices of `lengths` in batches, longest first; each batch takes at most `size_for(its longest
    length)` items (every later item is no longer, so the batch fits what its first item fits), and
    the rest is split evenly over the fewest batches of that size."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, start = [], 0
    while start < len(order):
        size, remaining = max(1, size_for(lengths[order[start]])), len(order) - start
        size = -(-remaining // -(-remaining // size))  # as many batches as needed, of even sizes (70 at 64: 35 + 35)
        batches.append(order[start:start + size])
        start += size
    return batches


def token_batches(lengths: Sequence[int], max_tokens: int, max_count: int, min_fill: float = 0.0) -> list[list[int]]:
    """Indices of `lengths`, longest first, in batches of at most `max_count` items whose padded size
    (count x longest) stays within `max_tokens` (an item longer than that goes alone) and whose every
    item is at least `min_fill` x the batch's longest (padding below 1 - `min_fill` of the batch)."""
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batches:
            batch = batches[-1]
            longest = lengths[batch[0]]
            if len(batch) < max_count and (len(batch) + 1) * longest <= max_tokens and lengths[index] >= min_fill * longest:
                batch.append(index)
                continue
        batches.append([index])
    return batches
