"""lm-eval's model `forgetbench`: lm-eval's tasks run on a harness generation backend.

One backend (one model load) serves every lm-eval benchmark, recipe and probe of a model, and every
generation and log-likelihood goes through the backend's persistent cache. It reproduces lm-eval
0.4's HF model (`HFLM`) request by request:
- `generate_until`: requests grouped by their generation settings (`until`, `max_gen_toks`,
  `do_sample`, `temperature`, `top_p`, `top_k`); greedy unless lm-eval's `normalize_gen_kwargs`
  says to sample, as in `HFLM`; the context cut from the left to the model's window
  less `max_gen_toks`; the text cut at the first stop string (HFLM's `until` plus its end-of-sequence
  text, which decoding without special tokens never shows). The backend stops each sequence at its
  own stop string and batches by token length and memory, where HFLM runs fixed batches until all stop.
- `loglikelihood`: lm-eval's own context/continuation split (`TemplateLM._encode_pair`: trailing
  spaces of the context move to the continuation; an empty context becomes the prefix token), scored by
  `GenerationBackend.loglikelihood` (HFLM's left truncation, float32 log-softmax, `is_greedy`).
- `loglikelihood_rolling`: HFLM's disjoint rolling windows over the same scoring.
- `apply_chat_template` / `chat_template` / `tokenizer_name`: HFLM's, on the backend's tokenizer.

`lm_for(backend)` gives the model of an existing backend. Once this module is imported, lm-eval also
builds one by name from a model spec: `simple_evaluate(model="forgetbench",
model_args="pretrained=SPEC[,generation_backend=vllm][,batch_size=N]", ...)`.
"""
from __future__ import annotations

import json
import logging
from typing import Any

# lm-eval fills its model registry with its own models only while the registry is empty: load them
# first, or registering `forgetbench` hides `hf`, `vllm` ... from anything else in this process
import lm_eval.models  # noqa: F401, E402
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from harness.generation import GenerationBackend, Sampling

log = logging.getLogger("harness.evaluation")

# lm-eval's default `max_gen_toks` when a task gives none (HFLM.max_gen_toks)
DEFAULT_MAX_GEN_TOKS = 256
# generation settings this model understands; anything else in a task's generation_kwargs is an error
_SAMPLING_KEYS = {"until", "max_gen_toks", "do_sample", "temperature", "top_p", "top_k"}


@register_model("forgetbench")
class BackendLM(TemplateLM):
    """An lm-eval model over a harness `GenerationBackend` (see the module docstring)."""

    def __init__(self, backend: GenerationBackend | None = None, pretrained: str | None = None,
                 generation_backend: str = "transformers", batch_size: int | str | None = None,
                 max_length: int | None = None, **_ignored: Any):
        """`max_length`: the window requests are fitted to (HFLM's option); default the model's own."""
        super().__init__()
        self._max_length = int(max_length) if max_length else None
        if backend is None:
            if not pretrained:
                raise ValueError("the forgetbench lm-eval model needs a backend or pretrained=<model spec>")
            from harness.generation import make_backend
            from harness.models import resolve_model

            cap = None if batch_size in (None, "", "auto") else int(batch_size)
            backend = make_backend(generation_backend, resolve_model(str(pretrained)), batch_size=cap)
        self.backend = backend
        self.chat_template_args: dict[str, Any] = {}

    # --- what lm-eval asks of a model ---------------------------------------------------------------

    @property
    def tokenizer(self):
        return self.backend.tokenizer

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        """Stands in for an empty context: BOS, else EOS (as HFLM)."""
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self._max_length or self.backend.max_length

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def get_model_info(self) -> dict:
        return {"model_sha": self.backend.model.sha, "generation_backend": self.backend.name}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None,
                   **kwargs) -> list[int]:
        """HFLM's `tok_encode` without `add_bos_token`: the tokenizer's own special tokens, except when
        the text already starts with the prefix token's text."""
        options = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        if add_special_tokens is None and string.startswith(self.tokenizer.decode(self.prefix_token_id)):
            options = {"add_special_tokens": False}
        ids = self.tokenizer.encode(string, **options)
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """HFLM's: the tokenizer's chat template; on a template error, again without system turns."""
        import jinja2

        options = dict(tokenize=False, add_generation_prompt=add_generation_prompt,
                       continue_final_message=not add_generation_prompt, **self.chat_template_args)
        try:
            return self.tokenizer.apply_chat_template(chat_history, **options)
        except jinja2.exceptions.TemplateError:
            log.warning("the chat template failed; applying it again without the system turns")
            return self.tokenizer.apply_chat_template([m for m in chat_history if m["role"] != "system"], **options)

    # --- requests ------------------------------------------------------------------------------------

    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str] | None, list[int], list[int]]],
                              disable_tqdm: bool = False, **_: Any) -> list[tuple[float, bool]]:
        window = self.max_length
        pairs = []
        for _, context, continuation in requests:
            if len(continuation) > window:
                raise ValueError(f"a continuation of {len(continuation)} tokens exceeds the {window}-token window")
            # HFLM scores (context + continuation)[-(window + 1):][:-1]: the context loses its first tokens
            pairs.append((context[max(0, len(context) + len(continuation) - window - 1):], continuation))
        answers = self.backend.loglikelihood(pairs, desc="lm-eval loglikelihood")
        for (request, _, _), answer in zip(requests, answers):
            if request is not None:  # rolling windows carry none; their totals are recorded per document
                self.cache_hook.add_partial("loglikelihood", request, answer)
        return answers

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval import utils

        windows, owners = [], []
        for index, (string,) in enumerate(request.args for request in requests):
            for context, continuation in map(utils.make_disjoint_window, utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((None, context, continuation))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, (logprob, _) in zip(owners, self._loglikelihood_tokens(windows)):
            totals[owner] += logprob
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from lm_eval.models.utils import postprocess_generated_text

        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(index)
        outputs: list[str] = [""] * len(requests)
        for members in groups.values():
            gen_kwargs = requests[members[0]].args[1]
            sampling, until = self.sampling_for(gen_kwargs)
            window = self.max_length - sampling.max_new_tokens
            if window <= 0:
                raise ValueError(f"max_gen_toks {sampling.max_new_tokens} leaves no room for a prompt in the "
                                 f"model's {self.max_length}-token window")
            prefix = _special_prefix(self.tokenizer)
            prompts = [self._prompt(requests[i].args[0], window, prefix) for i in members]
            for index, text in zip(members, self.backend.generate(prompts, sampling, desc="lm-eval generate_until")):
                outputs[index] = postprocess_generated_text(generation=text, stop=until, think_end_token=None)
                self.cache_hook.add_partial("generate_until", requests[index].args, outputs[index])
        return outputs

    def sampling_for(self, gen_kwargs: dict) -> tuple[Sampling, list[str]]:
        """The backend's `Sampling` for one lm-eval request's generation settings, and HFLM's full stop
        list (the task's `until` plus the end-of-sequence text). Greedy unless lm-eval's
        `normalize_gen_kwargs` says to sample (`do_sample` true, or a temperature above 0 without it)."""
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

        unknown = sorted(set(gen_kwargs) - _SAMPLING_KEYS - {"max_new_tokens", "max_tokens", "max_completion_tokens"})
        if unknown:
            raise ValueError(f"generation_kwargs: {unknown[0]!r} is not supported by the forgetbench lm-eval model "
                             f"(supported: {', '.join(sorted(_SAMPLING_KEYS))})")
        kwargs = normalize_gen_kwargs(gen_kwargs, DEFAULT_MAX_GEN_TOKS)
        eos = self.tokenizer.decode(self.eot_token_id, skip_special_tokens=False)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        sampled = bool(kwargs["do_sample"])  # normalize_gen_kwargs decides it from do_sample / temperature
        temperature = float(kwargs.get("temperature") or 0.0)
        sampling = Sampling(
            max_new_tokens=int(kwargs["max_gen_toks"]),
            temperature=(temperature or 1.0) if sampled else 0.0,
            top_p=float(kwargs.get("top_p") or 1.0) if sampled else 1.0,
            top_k=int(kwargs.get("top_k") or 0) if sampled else 0,
            # the end-of-sequence token ends generation anyway (and is never decoded into the text)
            stop=tuple(s for s in until if s and s != eos),
        )
        return sampling, until

    def _prompt(self, context: str, window: int, prefix: str) -> str:
        """The prompt text the backend generates from: what HFLM's batch encoding feeds the model, i.e.
        the tokenizer's special `prefix` where it adds one (HFLM keeps it unless the text starts with
        BOS), and a context longer than `window` tokens cut from the left."""
        bos = self.tokenizer.bos_token
        if prefix and not (bos and context.startswith(bos)):
            context = prefix + context
        ids = self.tokenizer(context, add_special_tokens=False)["input_ids"]
        if len(ids) > window:
            log.warning("a context of %d tokens is cut from the left to %d (the window less max_gen_toks)",
                        len(ids), window)
            context = self.tokenizer.decode(ids[-window:], skip_special_tokens=False)
        return context


def _special_prefix(tokenizer) -> str:
    """The text of the special tokens the tokenizer puts in front of a text by default ('' for none)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    if len(full) > len(plain) and full[len(full) - len(plain):] == plain:
        return tokenizer.decode(full[:len(full) - len(plain)], skip_special_tokens=False)
    return ""


def lm_for(backend: GenerationBackend) -> BackendLM:
    """The lm-eval model of an existing generation backend (its model load and cache are shared)."""
    return BackendLM(backend=backend)

