"""An OpenAI-compatible chat-completions endpoint as a generation backend (committee members, the
AlpacaEval judge), cached like a local one."""
from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence

from harness.errors import DataError
from harness.generation.cache import GenerationCache, cache_keys
from harness.generation.sampling import Sampling


def is_endpoint(spec: str) -> bool:
    """An OpenAI-compatible endpoint spec (`http(s)://host/v1#model`) rather than a model spec."""
    return spec.startswith(("http://", "https://"))


class EndpointBackend:
    """An OpenAI-compatible chat-completions endpoint (`URL#model`), cached like a local backend: committee
    members and the AlpacaEval judge use it alike."""

    name = "endpoint"

    def __init__(self, spec: str, who: str = "endpoint", timeout: float = 120.0):
        self.spec = spec
        url, _, self.model_name = spec.partition("#")
        self.who = who  # named in errors: "committee member", "alpaca_eval judge", ...
        self.url = url if url.rstrip("/").endswith("/chat/completions") else url.rstrip("/") + "/chat/completions"
        self.timeout = timeout
        self.cache = GenerationCache()
        self.generated = 0

    def chat(self, conversations: Sequence[Sequence[dict]], sampling: Sampling, desc: str = "") -> list[str]:
        texts = [json.dumps(list(conversation), sort_keys=True) for conversation in conversations]

        def produce(missing: list[int]):
            for i in missing:  # one request at a time, each saved as it arrives
                yield [i], [self._request(list(conversations[i]), sampling)]
                self.generated += 1

        return self.cache.complete(cache_keys([self.name, self.url, self.model_name], texts, sampling), produce)

    def _request(self, messages: list[dict], sampling: Sampling) -> str:
        body = {"model": self.model_name or None, "messages": messages, "max_tokens": sampling.max_new_tokens,
                "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed}
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.top_k:
            body["top_k"] = sampling.top_k  # not in OpenAI's API; vLLM-style servers accept it
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())["choices"][0]["message"]["content"] or ""
        except Exception as exc:  # unreachable, malformed: name the endpoint and its role
            raise DataError(f"{self.who} {self.url}: request failed ({type(exc).__name__}: {exc})") from None
