"""The generation backend batches with left padding, is reproducible, and never generates twice."""
from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.generation import GenerationCache, Sampling, TransformersBackend, make_backend

PROMPTS = [[{"role": "user", "content": text}] for text in
           ("Hi", "What is the capital of France? Answer briefly please.", "Count to three.")]


@pytest.fixture
def backend(tiny_model, tmp_path):
    return TransformersBackend(tiny_model, batch_size=3, cache=GenerationCache(tmp_path / "gen.sqlite"))


def test_batched_greedy_equals_one_prompt_at_a_time(tiny_model, tmp_path):
    sampling = Sampling(max_new_tokens=8)
    batched = TransformersBackend(tiny_model, batch_size=3, cache=GenerationCache(tmp_path / "a.sqlite"))
    single = TransformersBackend(tiny_model, batch_size=1, cache=GenerationCache(tmp_path / "b.sqlite"))
    assert batched.chat(PROMPTS, sampling) == single.chat(PROMPTS, sampling)


def test_a_cached_request_generates_nothing(backend, tiny_model):
    sampling = Sampling(max_new_tokens=6)
    first = backend.chat(PROMPTS, sampling)
    assert backend.generated == 3
    again = TransformersBackend(tiny_model, cache=backend.cache)  # a new process would see the same file
    assert again.chat(PROMPTS, sampling) == first
    assert again.generated == 0


def test_seeded_sampling_is_reproducible_and_repeats_get_their_own_samples(backend, tiny_model, tmp_path):
    sampling = Sampling(max_new_tokens=8, temperature=1.0, seed=3)
    samples = backend.generate(["<|im_start|>user\n"] * 3, sampling)
    assert backend.generated == 3 and len(set(samples)) > 1
    fresh = TransformersBackend(tiny_model, batch_size=3, cache=GenerationCache(tmp_path / "other.sqlite"))
    assert fresh.generate(["<|im_start|>user\n"] * 3, sampling) == samples


def test_changed_sampling_settings_miss_the_cache(backend):
    backend.chat(PROMPTS[:1], Sampling(max_new_tokens=4))
    backend.chat(PROMPTS[:1], Sampling(max_new_tokens=5))
    assert backend.generated == 2


def test_output_is_cut_at_the_first_stop_string(backend):
    free = backend.chat(PROMPTS[:1], Sampling(max_new_tokens=12))[0]
    assert len(free) > 2
    stop = free[1:3]
    cut = backend.chat(PROMPTS[:1], Sampling(max_new_tokens=12, stop=(stop,)))[0]
    assert stop not in cut and free.startswith(cut)


def test_unknown_backend_is_a_config_error(tiny_model):
    with pytest.raises(ConfigError, match="unknown generation backend 'tpu'"):
        make_backend("tpu", tiny_model)


def test_vllm_backend_explains_the_extra_when_missing(tiny_model):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match=r"forgetbench\[vllm\]"):
        make_backend("vllm", tiny_model)
