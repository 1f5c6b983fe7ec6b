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

One module per part: `sampling` (decoding settings), `cache` (the persistent cache), `backend` (the
interface and the cache loop every backend shares), `transformers_backend`, `vllm_backend` (optional
GPU extra), `endpoint` (OpenAI-compatible servers).
"""
from __future__ import annotations

from harness.errors import ConfigError
from harness.generation.backend import GenerationBackend, model_max_length, token_lengths
from harness.generation.cache import GenerationCache, cache_keys, occurrence_indices
from harness.generation.endpoint import EndpointBackend, is_endpoint
from harness.generation.sampling import SAIL_SG_DECODING, Sampling
from harness.generation.transformers_backend import TransformersBackend, end_token_ids, generated_stop_check
from harness.generation.vllm_backend import (
    VLLM_BACKENDS,
    VLLMBackend,
    VLLMTarget,
    adapter_dir,
    request_seed,
    require_vllm,
    vllm_sampling_kwargs,
    vllm_target,
)
from harness.models import ResolvedModel

__all__ = ["BACKENDS", "SAIL_SG_DECODING", "VLLM_BACKENDS", "EndpointBackend", "GenerationBackend", "GenerationCache",
           "Sampling", "TransformersBackend", "VLLMBackend", "VLLMTarget", "adapter_dir", "cache_keys", "end_token_ids",
           "generated_stop_check", "is_endpoint", "make_backend", "model_max_length", "occurrence_indices",
           "request_seed", "require_vllm", "token_lengths", "vllm_sampling_kwargs", "vllm_target"]

BACKENDS = ("transformers", *VLLM_BACKENDS)


def make_backend(name: str, model: ResolvedModel, batch_size: int | None = None) -> GenerationBackend:
    """The generation backend `name` over `model`; `batch_size` caps its batches (None: memory decides)."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown generation backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name in VLLM_BACKENDS:
        return VLLMBackend(model, batch_size=batch_size, backend=name)
    return TransformersBackend(model, batch_size=batch_size)
