"""A local judge's first-token log-probabilities, in the form an OpenAI chat completion with
`logprobs: true, top_logprobs: k` returns them, so the `alpaca_eval` package's own `logprob_parser`
reads them unchanged (its `weighted_alpaca_eval_gpt4_turbo` annotator asks for exactly that).

One forward pass per batch of conversations (chat template applied, generation prompt added, the
annotator's shared instructions run once: `harness.decoding.next_token_logits`); the k most likely
next tokens, decoded one by one, with their log-probabilities. Results are kept in
the generation cache under the model's hash, the conversation and `k`, so asking again costs nothing.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from harness.generation import GenerationCache, Sampling, cache_keys
from harness.models import ResolvedModel


class LogprobJudge:
    """Top-k first-token log-probabilities of `model` after each conversation."""

    name = "transformers-logprobs"

    def __init__(self, model: ResolvedModel, batch_size: int | None = 8, cache: GenerationCache | None = None,
                 backend=None):
        """`backend`: a loaded `TransformersBackend` of the same model, whose weights the judge borrows
        rather than load them a second time."""
        self.model = model
        self.backend = backend
        self.batch_size = batch_size or 8  # None (a generation backend's "memory decides"): 8 per forward
        self.cache = cache if cache is not None else GenerationCache()
        self.scored = 0  # conversations run through the model (cache misses)
        self._loaded = None

    def top_logprobs(self, conversations: Sequence[Sequence[dict]], k: int = 5) -> list[list[dict]]:
        """Per conversation: [{"token": text, "logprob": value}, ...], most likely first."""
        texts = [json.dumps(list(c), sort_keys=True) for c in conversations]
        keys = cache_keys([self.name, self.model.sha, k], texts, Sampling(max_new_tokens=1))
        found = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start:start + self.batch_size]
            fresh = {keys[i]: json.dumps(top) for i, top in zip(batch, self._score([conversations[i] for i in batch], k))}
            self.cache.put_many(fresh)
            found.update(fresh)
            self.scored += len(batch)
        return [json.loads(found[key]) for key in keys]

    def _score(self, conversations: list, k: int) -> list[list[dict]]:
        import torch

        from harness.decoding import next_token_logits

        model, tokenizer = self._model()
        prompts = [tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True)
                   for c in conversations]
        rows = tokenizer(prompts, add_special_tokens=False)["input_ids"]
        logits = next_token_logits(model, rows, tokenizer.pad_token_id or 0)
        values, ids = torch.log_softmax(logits, dim=-1).topk(k, dim=-1)
        return [[{"token": tokenizer.decode([int(t)]), "logprob": float(v)} for v, t in zip(row_v, row_t)]
                for row_v, row_t in zip(values, ids)]

    def _model(self):
        if self._loaded is None and self.backend is not None:
            self._loaded = (self.backend._loaded(), self.backend.tokenizer)
        if self._loaded is None:
            import torch

            from harness.models import load_model, load_tokenizer

            model = load_model(self.model)
            if torch.cuda.is_available():
                model = model.to("cuda")
            self._loaded = (model, load_tokenizer(self.model, padding_side="left"))
        return self._loaded
