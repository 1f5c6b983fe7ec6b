"""vLLM on a GPU (the optional `[vllm]` extra), imported only when a study chooses it."""
from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, ModelError
from harness.generation.backend import GenerationBackend
from harness.generation.cache import GenerationCache, occurrence_indices
from harness.generation.sampling import Sampling
from harness.hashing import hash_json
from harness.models import ResolvedModel

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
