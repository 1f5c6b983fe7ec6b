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


def test_top_k_is_applied_and_enters_the_cache_key_only_when_set(backend):
    from harness.generation import cache_keys
    from harness.hashing import hash_json

    plain = Sampling(max_new_tokens=6, temperature=1.0, seed=3)
    # keys of samplings without a top-k cut-off are the keys written before top_k existed
    old_settings = {"max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0, "seed": 3, "stop": []}
    assert cache_keys(["b", "m"], ["x", "x"], plain) == [hash_json(["b", "m", "x", old_settings, k]) for k in (0, 1)]
    assert cache_keys(["b", "m"], ["x"], Sampling(max_new_tokens=6, temperature=1.0, seed=3, top_k=50)) != \
        cache_keys(["b", "m"], ["x"], plain)
    # top-1 sampling is greedy decoding: the cut-off reaches the model
    greedy = backend.chat(PROMPTS, Sampling(max_new_tokens=6))
    assert backend.chat(PROMPTS, Sampling(max_new_tokens=6, temperature=1.0, seed=3, top_k=1)) == greedy


def test_vllm_requests_each_get_their_own_seed_from_sampling_seed_and_occurrence():
    from harness.generation import request_seed, vllm_sampling_kwargs

    sampling = Sampling(max_new_tokens=7, temperature=0.9, top_p=0.8, top_k=50, seed=11, stop=("</s>",))
    kwargs = vllm_sampling_kwargs(sampling, [0, 1, 2, 0])
    assert [k["seed"] for k in kwargs] == [request_seed(11, 0), request_seed(11, 1), request_seed(11, 2), request_seed(11, 0)]
    assert len({k["seed"] for k in kwargs}) == 3  # repeats of one prompt never share a seed
    assert kwargs[0] == {"max_tokens": 7, "temperature": 0.9, "top_p": 0.8, "top_k": 50, "stop": ["</s>"],
                         "seed": request_seed(11, 0)}
    assert request_seed(12, 0) != request_seed(11, 0) and 0 <= request_seed(11, 0) < 2**31
    greedy = vllm_sampling_kwargs(Sampling(max_new_tokens=4), [0, 1])
    assert [k["seed"] for k in greedy] == [None, None] and greedy[0]["top_k"] == -1 and greedy[0]["stop"] is None


def test_vllm_backend_sends_per_request_seeds_across_batches(tiny_model, tmp_path, monkeypatch):
    """The real VLLMBackend request path with stand-ins for vLLM's SamplingParams and LLM: a prompt
    repeated in one request, split over batches, still gets one seed per occurrence."""
    import sys
    import types

    from harness.generation import GenerationBackend, VLLMBackend, request_seed

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=lambda **kwargs: kwargs))
    sent = []

    class StandInLLM:
        def generate(self, prompts, params, use_tqdm=False, lora_request=None):
            sent.extend(zip(prompts, params))
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"{p}/{s['seed']}")])
                    for p, s in zip(prompts, params)]

    backend = VLLMBackend.__new__(VLLMBackend)
    GenerationBackend.__init__(backend, tiny_model, batch_size=2, cache=GenerationCache(tmp_path / "v.sqlite"))
    backend.name, backend._llm, backend._lora_request = "vllm", StandInLLM(), None
    outputs = backend.generate(["a", "a", "bb", "a"], Sampling(max_new_tokens=4, temperature=1.0, seed=5))
    assert len(sent) == 4 and sorted(s["seed"] for p, s in sent if p == "a") == sorted(request_seed(5, k) for k in range(3))
    assert len(set(outputs)) == 4


def test_vllm_backend_scores_continuations_from_prompt_logprobs(tiny_model, tmp_path, monkeypatch):
    """The real VLLMBackend scoring path with stand-ins for vLLM: each prompt position reports its own
    token and the top token (`prompt_logprobs=1`); sequences are cut from the left to the window less one."""
    import sys
    import types

    from harness.generation import GenerationBackend, VLLMBackend

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=lambda **kwargs: kwargs))
    top = lambda position: position % 5  # noqa: E731 - the stand-in model's favourite token at a position
    logprob = lambda token, position: -0.5 * abs(token - top(position)) - 0.1  # noqa: E731
    sent = []

    class StandInLLM:
        llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=8))

        def generate(self, prompts, params, use_tqdm=False, lora_request=None):
            assert params == {"temperature": 0, "prompt_logprobs": 1, "max_tokens": 1, "detokenize": False}
            sent.extend(p["prompt_token_ids"] for p in prompts)
            return [types.SimpleNamespace(prompt_logprobs=[None] + [
                {t: types.SimpleNamespace(logprob=logprob(t, j)) for t in (ids[j], top(j))} for j in range(1, len(ids))])
                for ids in (p["prompt_token_ids"] for p in prompts)]

    backend = VLLMBackend.__new__(VLLMBackend)
    GenerationBackend.__init__(backend, tiny_model, batch_size=256, cache=GenerationCache(tmp_path / "v.sqlite"))
    backend.name, backend._llm, backend._lora_request = "vllm", StandInLLM(), None
    scores = backend.loglikelihood([([7, 7], [2, 3]), ([9] * 10, [2, 4])])
    assert sent == [[7, 7, 2, 3], [9, 9, 9, 9, 9, 2, 4]]  # the second cut to the 8-token window less one
    # positions 2, 3 hold the top tokens 2, 3: greedy; positions 5, 6 hold 2, 4 against tops 0, 1
    assert scores[0] == (pytest.approx(-0.2), True)
    assert scores[1] == (pytest.approx(logprob(2, 5) + logprob(4, 6)), False)
    assert backend.loglikelihood([([7, 7], [2, 3])]) == [scores[0]] and backend.scored == 2  # cached
