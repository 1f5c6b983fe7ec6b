"""Batches fit the machine: sized from the model's KV cache and the free memory, grouped by token
length, capped by `batch_size` when one is given; outputs do not depend on how prompts are batched."""
from __future__ import annotations

import pytest

from harness import batching
from harness.batching import batch_size_for, footprint, length_sorted_batches, token_batches
from harness.generation import GenerationCache, Sampling, TransformersBackend


def test_footprint_counts_the_kv_cache_of_every_layer_and_kv_head():
    from transformers import LlamaConfig

    # SmolLM2-135M's shape: 30 layers, 3 KV heads of 64, float32 -> 2 x 30 x 3 x 64 x 4 bytes per token
    config = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64, vocab_size=49152)
    fp = footprint(config, dtype_bytes=4)
    assert fp.kv_per_token == 46080
    assert footprint(config, dtype_bytes=2).kv_per_token == 23040
    assert fp.generation(100, 28) == 46080 * 128 + fp.activations_per_token * 100 + fp.logits_row


def test_batch_size_is_what_the_budget_holds_within_the_cap():
    assert batch_size_for(10, 1000, cap=64) == 64
    assert batch_size_for(100, 1000, cap=64) == 10
    assert batch_size_for(5000, 1000, cap=64) == 1  # one sequence always runs


def test_batches_are_longest_first_and_even():
    lengths = [5, 50, 7, 49, 6, 48, 8]
    assert length_sorted_batches(lengths, lambda longest: 3) == [[1, 3, 5], [6, 2], [4, 0]]  # 7 at 3: 3 + 2 + 2
    assert length_sorted_batches(lengths, lambda longest: 4 if longest > 10 else 8) == [[1, 3, 5, 6], [2, 4, 0]]
    assert token_batches([10, 30, 20], max_tokens=60, max_count=8) == [[1, 2], [0]]
    assert token_batches([10, 30, 27, 20], max_tokens=1000, max_count=8, min_fill=0.9) == [[1, 2], [3], [0]]


@pytest.fixture
def backend(tiny_model, tmp_path):
    return TransformersBackend(tiny_model, cache=GenerationCache(tmp_path / "gen.sqlite"))


def test_generation_batches_shrink_with_free_memory_and_respect_the_cap(backend, monkeypatch):
    prompts = [("word " * n).strip() for n in range(1, 41)]
    sampling = Sampling(max_new_tokens=16)
    fp = backend._footprint()
    sequence = fp.generation(40, 16)
    monkeypatch.setattr(batching, "free_memory", lambda device: int(2 * 10 * sequence / batching.MEMORY_SHARE) // 2)
    batches = backend._generation_batches(prompts, sampling)
    assert max(map(len, batches)) <= 10 and sorted(i for b in batches for i in b) == list(range(40))
    assert batches[0][0] == 39  # the longest prompt (in tokens) opens the first batch
    monkeypatch.setattr(batching, "free_memory", lambda device: 10**12)
    assert [len(b) for b in backend._generation_batches(prompts, sampling)] == [40]  # all fit: one batch
    backend.batch_size = 16
    assert [len(b) for b in backend._generation_batches(prompts, sampling)] == [14, 13, 13]


def test_greedy_outputs_do_not_depend_on_the_batching(tiny_model, tmp_path):
    prompts = [f"<|im_start|>user\n{'Tell me more. ' * n}<|im_end|>\n<|im_start|>assistant\n" for n in (1, 4, 2, 6, 3)]
    sampling = Sampling(max_new_tokens=10, stop=("e",))

    def backend(name, batch_size=None, like=None):
        made = TransformersBackend(tiny_model, batch_size=batch_size, cache=GenerationCache(tmp_path / f"{name}.sqlite"))
        if like is not None:  # one loaded model and tokenizer for all
            made._model, made._tokenizer = like._model, like._tokenizer
        return made

    first = backend("auto")
    auto = first.generate(prompts, sampling)
    assert backend("pairs", 2, first).generate(prompts, sampling) == auto
    alone = [backend(f"one{i}", 1, first).generate([p], sampling)[0] for i, p in enumerate(prompts)]
    assert alone == auto and all("e" not in text for text in auto)  # each sequence cut at its own stop
