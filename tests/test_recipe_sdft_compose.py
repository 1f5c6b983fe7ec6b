"""`sdft-rewrite` keeps a rewrite only when its final answer matches and it does not mention the
reference, and records kept/fallback counts; `compose` combines a domain transform with any
rehearsal source through configuration."""
from __future__ import annotations

import json
import shutil

import pytest

from harness.config import MixConfig, RecipeEntry
from harness.domains import get_domain
from harness.errors import ConfigError
from harness.generation import make_backend
from harness.mixing import build_mix
from harness.recipe import resolve_params
from recipes.compose import Compose
from recipes.sdft import MATH, SdftRewrite


class Scripted:
    """A backend whose answers are chosen by a function of the prompt."""

    generated = 0

    def __init__(self, answer):
        self.answer, self.prompts = answer, []

    def chat(self, conversations, sampling, desc=""):
        self.prompts += [c[-1]["content"] for c in conversations]
        return [self.answer(c[-1]["content"]) for c in conversations]


def build(entry, model, data_dir, backend, domain="gsm8k", size=4, share=0.5, seed=0):
    return build_mix(RecipeEntry.model_validate(entry), seed, MixConfig(size=size, domain_share=share),
                     get_domain(domain), data_dir, model, backend=backend)


def rows(mix):
    return [json.loads(line) for line in mix.path.read_text().splitlines()]


def test_sdft_keeps_matching_rewrites_and_falls_back_otherwise(tiny_model, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path))  # a scripted backend: never reuse a stored mix
    def answer(prompt):
        reference = prompt.split("### Reference Answer:\n")[1].split("\n\n### Response:")[0]
        final = reference.rsplit("The answer is ", 1)[1].rstrip(".")
        kind = len(prompt) % 3
        if kind == 0:
            return f"Let me work it out.\nSo the total is {final}.\nThe answer is {final}."
        if kind == 1:
            return f"Following the reference answer, the result is {final}. The answer is {final}."
        return "I think the answer is 123456789."

    backend = Scripted(answer)
    mix = build("sdft-rewrite", tiny_model, data_dir, lambda: backend, size=12, share=0.25)
    got = rows(mix)
    assert len(got) == 12 and {r["role_in_mix"] for r in got} == {"domain"}  # alone: a no-rehearsal recipe
    assert len(backend.prompts) == 12 and all(p.startswith(MATH.split("{")[0]) for p in backend.prompts)  # GSM8K uses the math variant
    counts = mix.meta["provenance"]["counts"]
    assert counts["kept"] + counts["fallback"] == 12
    assert counts["kept"] == sum("Let me work it out." in r["messages"][-1]["content"] for r in got)
    assert counts.get("fallback_mentions_reference", 0) + counts.get("fallback_answer_mismatch", 0) == counts["fallback"]
    assert not any("reference" in r["messages"][-1]["content"] or "123456789" in r["messages"][-1]["content"] for r in got)


def test_sdft_extractor_is_pluggable_and_validated():
    assert resolve_params(SdftRewrite, {"extractor": "harness.domains:extract_letter"}).extractor.endswith("letter")
    with pytest.raises(ConfigError, match="unknown extractor"):
        resolve_params(SdftRewrite, {"extractor": "roman"})


def test_compose_is_configuration_and_validates_its_parts():
    params = resolve_params(Compose, {"domain": "sdft-rewrite", "rehearsal": "public:alpaca"})
    assert params.rehearsal.name == "public" and params.domain.name == "sdft-rewrite"
    with pytest.raises(ConfigError, match="unknown recipe"):
        resolve_params(Compose, {"rehearsal": "nope"})
    with pytest.raises(ConfigError, match="Input should be"):
        resolve_params(Compose, {"rehearsal": "public:nope"})


def test_compose_sdft_domain_with_public_rehearsal(tiny_model, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path))
    backend = Scripted(lambda p: "Step by step: done.\nThe answer is 1.")
    entry = {"name": "compose", "params": {"domain": "sdft-rewrite", "rehearsal": "public:alpaca"}}
    mix = build(entry, tiny_model, data_dir, lambda: backend, size=10, share=0.3)
    got = rows(mix)
    assert sum(r["role_in_mix"] == "domain" for r in got) == 3 and sum(r["source"] == "alpaca" for r in got) == 7
    assert len(backend.prompts) == 3  # only the domain share is rewritten
    prov = mix.meta["provenance"]
    assert prov["domain"]["recipe"] == "sdft-rewrite" and prov["domain"]["provenance"]["counts"]["kept"] + \
        prov["domain"]["provenance"]["counts"]["fallback"] == 3
    assert prov["rehearsal"]["recipe"] == "public" and prov["rehearsal"]["provenance"]["data_sha256"]


@pytest.mark.parametrize("entry, domain, size, share", [
    ({"name": "sdft-rewrite", "params": {"max_new_tokens": 24}}, "gsm8k", 2, 0.5),
    ({"name": "compose", "params": {"domain": {"name": "sdft-rewrite", "params": {"max_new_tokens": 24}},
                                    "rehearsal": "public:lima"}}, "medmcqa", 4, 0.25),
], ids=["sdft-rewrite", "compose"])
def test_real_smollm2_sdft_mix_is_exact_and_rebuilt_without_generation(entry, domain, size, share, real_model, data_dir):
    backends = []

    def backend():
        backends.append(make_backend("transformers", real_model, batch_size=8))
        return backends[-1]

    mix = build(entry, real_model, data_dir, backend, domain=domain, size=size, share=share)
    got = rows(mix)
    assert len(got) == size and mix.meta["provenance"]
    content = mix.path.read_bytes()
    shutil.rmtree(mix.path.parent)
    backends.clear()
    again = build(entry, real_model, data_dir, backend, domain=domain, size=size, share=share)
    assert again.path.read_bytes() == content and sum(b.generated for b in backends) == 0
