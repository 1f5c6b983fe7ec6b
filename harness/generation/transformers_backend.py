"""The transformers backend: CPU or GPU, batches sized by memory, its own decoding loop
(harness.decoding) and tree-shaped log-likelihood scoring (harness.tree_scoring)."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from harness.batching import AUTO_MAX_BATCH
from harness.generation.backend import GenerationBackend
from harness.generation.cache import GenerationCache
from harness.generation.sampling import Sampling
from harness.hashing import hash_json
from harness.models import ResolvedModel

# A scoring batch holds rows of at least this share of its longest row's length: padding costs as much
# as real tokens, and on a CPU a forward of a few hundred tokens is as efficient as one of thousands.
SCORING_MIN_FILL = 0.85


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
