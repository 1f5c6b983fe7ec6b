"""`sdft-rewrite` keeps a rewrite only when its final answer matches and it does not mention the
reference, and records kept/fallback counts; `compose` combines a domain transform with any
rehearsal source through configuration."""
from __future__ import annotations

import json
import shutil

import pytest
from conftest import make_mix

from harness.errors import ConfigError
from harness.generation import make_backend
from harness.recipe import resolve_params
from recipes.compose import Compose
from recipes.sdft import SDFT_MATH_PREFIX, SDFT_MATH_SYSTEM, SdftRewrite, distill_prompt, mentions_reference

# sail-sg/sdft at bfb6c25, word for word: main.py's templates `alpaca_distill_using` (system text, the
# template's "\n\n" separator, the user slot) and `gsm8k_distill` (system, user slot, assistant prefill).
ALPACA_DISTILL_USING_SYSTEM = ("Below are an instruction that describes a task along with a reference answer. "
                               "Using the reference answer as a guide, write your own response.")
ALPACA_DISTILL_USING_USER = "### Instruction:\n{{content}}\n\n### Reference Answer:\n{{resp}}\n\n### Response:\n"
GSM8K_DISTILL_SYSTEM = ("You are an expert in math. Below are a math question and its reference answer. "
                        "Refer to the reference answer and write a response that appropriately answers the question.")
GSM8K_DISTILL_USER = "{{content}}\n\n{{resp}}"
GSM8K_DISTILL_PREFILL = "Great! Let's think step by step. "


class Scripted:
    """A backend whose answers are chosen by a function of the last user turn; records every request."""

    generated = 0

    def __init__(self, answer):
        self.answer, self.prompts, self.conversations, self.calls = answer, [], [], []

    def chat(self, conversations, sampling, desc="", assistant_prefix=""):
        self.calls.append((sampling, assistant_prefix))
        self.conversations += [list(c) for c in conversations]
        self.prompts += [c[-1]["content"] for c in conversations]
        return [self.answer(c[-1]["content"]) for c in conversations]


def build(entry, model, data_dir, backend, domain="gsm8k", size=4, share=0.5, seed=0):
    return make_mix(entry, model, data_dir, seed=seed, size=size, share=share, domain=domain, backend=backend)


def rows(mix):
    return [json.loads(line) for line in mix.path.read_text().splitlines()]


def test_sdft_keeps_matching_rewrites_and_falls_back_otherwise(tiny_model, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path))  # a scripted backend: never reuse a stored mix
    def answer(prompt):
        reference = prompt.split("\n\n", 1)[1]  # gsm8k_distill's user turn: question, blank line, reference
        final = reference.rsplit("The answer is ", 1)[1].rstrip(".")
        kind = len(prompt) % 3
        if kind == 0:
            return f"Let me work it out.\nSo the total is {final}.\nThe answer is {final}."
        if kind == 1:
            return f"Following the reference answer, the result is {final}. The answer is {final}."
        return "I think the answer is 123456789."

    backend = Scripted(answer)
    mix = build({"name": "sdft-rewrite", "params": {"fill": "extra-domain"}}, tiny_model, data_dir, lambda: backend,
                size=12, share=0.25)
    got = rows(mix)
    assert len(got) == 12 and {r["role_in_mix"] for r in got} == {"domain"}  # a no-rehearsal recipe
    # GSM8K uses sail-sg's math template: system turn, question + reference, the answer pre-filled
    assert len(backend.prompts) == 12
    assert all(c[0] == {"role": "system", "content": SDFT_MATH_SYSTEM} for c in backend.conversations)
    assert [prefix for _, prefix in backend.calls] == [SDFT_MATH_PREFIX]
    counts = mix.meta["provenance"]["counts"]
    assert counts["kept"] + counts["fallback"] == 12
    assert counts["kept"] == sum("Let me work it out." in r["messages"][-1]["content"] for r in got)
    assert counts.get("fallback_mentions_reference", 0) + counts.get("fallback_answer_mismatch", 0) == counts["fallback"]
    assert not any("reference" in r["messages"][-1]["content"] or "123456789" in r["messages"][-1]["content"] for r in got)


def test_sdft_templates_are_sail_sg_word_for_word():
    general = distill_prompt("sail-sg", "general", " Name a colour. ", " Blue. ")
    assert general.assistant_prefix == "" and general.messages == [{"role": "user", "content": (
        ALPACA_DISTILL_USING_SYSTEM + "\n\n" + ALPACA_DISTILL_USING_USER.replace("{{content}}", "Name a colour.")
        .replace("{{resp}}", "Blue."))}]  # sail-sg strips both slots
    math = distill_prompt("sail-sg", "math", "What is 2+2?", "2+2=4.\nThe answer is 4.")
    assert math.messages == [{"role": "system", "content": GSM8K_DISTILL_SYSTEM}, {"role": "user", "content": (
        GSM8K_DISTILL_USER.replace("{{content}}", "What is 2+2?").replace("{{resp}}", "2+2=4.\nThe answer is 4."))}]
    assert math.assistant_prefix == GSM8K_DISTILL_PREFILL
    # the harness's own earlier wording stays available by name
    assert distill_prompt("harness", "math", "q", "r").messages[0]["content"].startswith("Below is a math problem")


@pytest.mark.parametrize("text, rejected", [
    ("Using the Reference Answer, the total is 4.", True), ("Your response was good; mine: 4.", True),
    ("MY RESPONSE: 4", True), ("Here is your own response: 4", True), ("Now it's your turn to add them: 4", True),
    ("Your turn! 2 and 2 make 4.", True), ("The total is 4. Your turn is next.", False),
    ("2 and 2 make 4.", False), ("As the reference states, 4.", False),
])
def test_sdft_reference_filter_is_sail_sg_verify(text, rejected):
    """eval/gen_distilled_data.py `verify`: the five phrases in any case, or a text starting with "Your turn"."""
    assert mentions_reference(text, "sail-sg") is rejected


def test_sdft_rewrites_sample_with_the_paper_decoding_recorded(tiny_model, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path))
    backend = Scripted(lambda prompt: "Blue is the answer.")
    mix = build("sdft-rewrite", tiny_model, data_dir, lambda: backend, domain="medmcqa", size=4, share=0.5)
    (sampling, prefix), = backend.calls
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.max_new_tokens) == (0.95, 0.7, 50, 512)
    assert prefix == "" and backend.prompts[0].startswith(ALPACA_DISTILL_USING_SYSTEM + "\n\n### Instruction:\n")
    prov = mix.meta["provenance"]
    assert prov["decoding"] == {"sampling": True, "temperature": 0.95, "top_p": 0.7, "top_k": 50, "max_new_tokens": 512,
                                "seed": sampling.seed}
    assert (prov["wording"], prov["reference_filter"], prov["template"]) == ("sail-sg", "sail-sg", "general")
    greedy = build({"name": "sdft-rewrite", "params": {"temperature": 0, "wording": "harness"}}, tiny_model, data_dir,
                   lambda: backend, domain="medmcqa", size=4, share=0.5)
    assert backend.calls[-1][0].greedy and greedy.meta["provenance"]["decoding"] == {"sampling": False, "max_new_tokens": 512}


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
    assert len(got) == mix.meta["rows"] == (1 if entry["name"] == "sdft-rewrite" else size)  # sdft alone: the domain share
    assert mix.meta["provenance"]
    content = mix.path.read_bytes()
    shutil.rmtree(mix.path.parent)
    backends.clear()
    again = build(entry, real_model, data_dir, backend, domain=domain, size=size, share=share)
    assert again.path.read_bytes() == content and sum(b.generated for b in backends) == 0
