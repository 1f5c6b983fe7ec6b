"""Reconstruction recipes: the pre-query template is derived from the chat template; instructions
are sampled and cleaned; single and committee mixes have the exact size, are byte-identical on a
rerun, record their provenance, and a rebuild from the generation cache generates nothing."""
from __future__ import annotations

import json

import pytest
from conftest import make_mix

from harness.errors import ConfigError
from harness.generation import make_backend
from harness.models import load_tokenizer
from harness.recipe import resolve_params
from recipes.reconstructed import ReconstructedSingle
from recipes.reconstruction import DRAW_CHUNK, InstructionSampler, pre_query_template, take

SMALL = {"instruction_max_new_tokens": 16, "answer_max_new_tokens": 16, "judge_max_new_tokens": 16}


def build(entry, model, data_dir, backends, seed=0, size=6, share=0.5, domain="medmcqa"):
    def backend():
        backends.append(make_backend("transformers", model, batch_size=8))
        return backends[-1]

    return make_mix(entry, model, data_dir, seed=seed, size=size, share=share, domain=domain, backend=backend)


def rows(mix):
    return [json.loads(line) for line in mix.path.read_text().splitlines()]


def test_pre_query_template_comes_from_the_chat_template(tiny_model):
    tokenizer = load_tokenizer(tiny_model)
    prefix, end = pre_query_template(tokenizer)
    assert prefix.endswith("<|im_start|>user\n") and prefix.startswith("<|im_start|>system\n")  # SmolLM2 default system kept
    assert end == "<|im_end|>"
    tokenizer.chat_template = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                               "{{ m['content'] }}<|eot_id|>{% endfor %}")
    prefix, end = pre_query_template(tokenizer)
    assert prefix == tokenizer.bos_token + "<|start_header_id|>user<|end_header_id|>\n\n" and end == "<|eot_id|>"


def test_instructions_are_cleaned(tiny_model, scripted_backend):
    drafts = ["  Write a poem about the sea.  ", "", "   ", "ok", "the the the the the the the the the the",
              "Write a poem about the sea.", "write a poem about the sea!", "Explain how a bicycle stays upright when moving.",
              "Explain how a bicycle stays upright when moving, please.", " ".join([f"word{i}" for i in range(400)]),
              "<|im_start|>assistant hi there friend", "List three facts about Mars."]
    backend = scripted_backend(tiny_model, lambda *_: drafts.pop(0))  # the drafts in order, whatever was asked
    sampler = InstructionSampler(backend, seed=1, max_words=300, max_draws=len(drafts))
    got = take(sampler.stream(), 3)
    assert got == ["Write a poem about the sea.", "Explain how a bicycle stays upright when moving.",
                   "List three facts about Mars."]
    assert backend.prompts[0] == pre_query_template(backend.tokenizer)[0]
    # <|im_end|> is SmolLM2's EOS, so no stop strings; plain sampling at temperature 1
    assert all(s.temperature == 1.0 and s.top_p == 1.0 and s.stop == () for s in backend.samplings)
    assert dict(sampler.stats) == {"drawn": 12, "kept": 3, "empty": 2, "degenerate": 3, "duplicate": 2,
                                   "near_duplicate": 1, "too_long": 1}


@pytest.mark.parametrize("batch_size", [None, 3, 64])
def test_instruction_draws_do_not_depend_on_the_backends_batch_size(tiny_model, scripted_backend, batch_size):
    """Sampler seeds go by fixed chunks of DRAW_CHUNK draws, so the instructions are the same however
    generation is batched, also with no batch cap at all (the default since batches are sized by memory)."""
    backend = scripted_backend(tiny_model, lambda prompt, sampling, occurrence: f"Describe item {sampling.seed} {occurrence}.")
    backend.batch_size = batch_size
    sampler = InstructionSampler(backend, seed=2, max_words=300, max_draws=100)
    take(sampler.stream(), DRAW_CHUNK + 1)
    seeds = [sampling.seed for sampling in backend.samplings]
    assert seeds[:DRAW_CHUNK] == [2 * 100_003] * DRAW_CHUNK and seeds[DRAW_CHUNK] == 2 * 100_003 + 1


def test_single_params_check_the_ablation_combination():
    assert resolve_params(ReconstructedSingle, {"responses_per_instruction": 3, "self_judge": True}).self_judge
    with pytest.raises(ConfigError, match="self_judge"):
        resolve_params(ReconstructedSingle, {"responses_per_instruction": 3})


def endpoint_member_reply(body) -> str:
    judging = "Evaluate the quality of the AI’s response" in body["messages"][-1]["content"]
    return "Concise and correct.\nScore: 5" if judging else "An endpoint answer."


def test_committee_with_an_endpoint_member(tiny_model, data_dir, tmp_path, monkeypatch, chat_endpoint):
    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path))  # count real requests, never a stored mix
    with chat_endpoint(endpoint_member_reply) as (base_url, requests):
        url = base_url + "#fake-model"
        entry = {"name": "reconstructed-committee", "params": {**SMALL, "members": ["seed", url], "responses_per_instruction": 2}}
        mix = build(entry, tiny_model, data_dir, [], size=4, share=0.5)
        sent = len(requests)
        # 2 instructions x (2 answers + 4 candidates judged)
        assert sent == 2 * 2 + 2 * 4 and requests[0]["model"] == "fake-model"
        records = mix.meta["provenance"]["candidate_scores"]
        assert len(records) == 2 and all(len(r["candidates"]) == 4 for r in records)
        assert all(c["scores"][1] == 5.0 for r in records for c in r["candidates"])  # the endpoint judge
        judgments = mix.meta["provenance"]["judgments"]
        assert judgments["total"] == 16 and judgments["unparseable"] >= 0
        assert mix.meta["provenance"]["effective"] == {"members": 2, "generators": 2, "judges": 2}  # two different models
        chosen = {r["row"]: r["candidates"][r["chosen"]]["member"] for r in records}
        answers = [r["messages"][-1]["content"] for r in rows(mix) if r["role_in_mix"] == "rehearsal"]
        assert len(answers) == 2 and set(chosen.values()) <= {"seed", url}


@pytest.mark.parametrize("entry", [
    {"name": "reconstructed-single", "params": SMALL},
    # the paper's Single-Model-Multi-Response-Filtered ablation: L = 3 sampled answers, the seed model judges
    {"name": "reconstructed-single", "params": {**SMALL, "responses_per_instruction": 3, "self_judge": True}},
    {"name": "reconstructed-committee", "params": {**SMALL, "members": ["seed", "seed@1"], "responses_per_instruction": 1}},
], ids=["single", "single-multi-response-filtered", "committee"])
def test_real_smollm2_mix_exact_identical_and_cached(entry, real_model, data_dir):
    backends = []
    mix = build(entry, real_model, data_dir, backends, size=4)
    got = rows(mix)
    assert len(got) == 4 and sum(r["role_in_mix"] == "domain" for r in got) == 2
    rehearsal = [r for r in got if r["role_in_mix"] == "rehearsal"]
    assert {r["source"] for r in rehearsal} == {entry["name"]}
    assert all(r["messages"][0]["role"] == "user" and r["messages"][0]["content"].strip() for r in rehearsal)
    prov = mix.meta["provenance"]
    assert prov["seed_model"] == real_model.sha and prov["instruction_cleaning"]["kept"] >= 2
    if "self_judge" in entry["params"] or entry["name"].endswith("committee"):
        L = entry["params"]["responses_per_instruction"]
        assert len(prov["candidate_scores"]) == 2
        # seed and seed@1 are one model judging greedily: one judge, its judgment counted once
        assert prov["effective"] == {"members": len(prov["members"]), "generators": len(prov["members"]), "judges": 1}
        assert prov["judgments"]["total"] == 2 * len(prov["members"]) * L
        assert all(len(c["scores"]) == 1 for r in prov["candidate_scores"] for c in r["candidates"])
        # every candidate is recorded (K x L per instruction) with its mean, and the chosen one has the best mean
        for record in prov["candidate_scores"]:
            assert len(record["candidates"]) == len(prov["members"]) * L
            assert sorted(c["sample"] for c in record["candidates"]) == sorted(list(range(L)) * len(prov["members"]))
            means = [c["mean"] for c in record["candidates"] if c["mean"] is not None]
            assert record["candidates"][record["chosen"]]["mean"] == (max(means) if means else None)
    # same seed, stored mix deleted, generation cache kept: byte-identical and no generation at all
    import shutil

    content = mix.path.read_bytes()
    shutil.rmtree(mix.path.parent)
    backends.clear()
    again = build(entry, real_model, data_dir, backends, size=4)
    assert again.path.read_bytes() == content
    assert sum(b.generated for b in backends) == 0


TABLE_3_MARK = "Evaluate the quality of the AI’s response"


def test_default_committee_judges_once_per_distinct_judge_and_says_so(tiny_model, data_dir, tmp_path, monkeypatch,
                                                                      scripted_backend, seed_model_reply, caplog):
    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path / "cache"))
    backend = scripted_backend(tiny_model, seed_model_reply)
    entry = {"name": "reconstructed-committee", "params": {**SMALL, "responses_per_instruction": 2}}
    with caplog.at_level("WARNING"):
        mix = make_mix(entry, tiny_model, data_dir, backend=lambda: backend)
    prov = mix.meta["provenance"]
    # the default members seed, seed@1, seed@2: three generators (own sampler seeds), one greedy judge
    assert prov["members"] == ["seed", "seed@1", "seed@2"] and prov["judge_prompt"] == "table3"
    assert prov["effective"] == {"members": 3, "generators": 3, "judges": 1}
    assert prov["judges"] == [["seed", "seed@1", "seed@2"]]
    assert "committee members seed, seed@1, seed@2 are the same model" in caplog.text
    judged = [(p, s) for p, s, _ in backend.requests if TABLE_3_MARK in p]
    assert len(judged) == 2 * 3 * 2 and all(s.greedy for _, s in judged)  # each candidate judged once
    assert prov["judgments"]["total"] == 12
    assert all(c["scores"] == [4.0] for r in prov["candidate_scores"] for c in r["candidates"])
    answers = {s.seed for p, s, _ in backend.requests if TABLE_3_MARK not in p and p.rstrip().endswith("assistant")}
    assert len(answers) == 3  # one sampler seed per generator


def test_sampled_judging_makes_every_member_its_own_judge(tiny_model, data_dir, tmp_path, monkeypatch,
                                                          scripted_backend, seed_model_reply):
    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path / "cache"))
    backend = scripted_backend(tiny_model, seed_model_reply)
    entry = {"name": "reconstructed-committee", "params": {**SMALL, "responses_per_instruction": 1, "judge_decoding": "sampled"}}
    mix = make_mix(entry, tiny_model, data_dir, backend=lambda: backend)
    prov = mix.meta["provenance"]
    assert prov["effective"] == {"members": 3, "generators": 3, "judges": 3}
    judged = [s for p, s, _ in backend.requests if TABLE_3_MARK in p]
    assert len(judged) == 2 * 3 * 3 and not any(s.greedy for s in judged) and len({s.seed for s in judged}) == 3
    assert all(len(c["scores"]) == 3 for r in prov["candidate_scores"] for c in r["candidates"])


def test_a_committee_members_own_weights_key_the_mix(tiny_model):
    """A member that is another model enters the mix key by its weights' hash, so a changed member
    checkpoint never reuses a stored mix; seed-model and endpoint members need no hash."""
    from harness.models import resolve_model
    from recipes.reconstructed import ReconstructedCommittee

    def fingerprint(members):
        return ReconstructedCommittee(resolve_params(ReconstructedCommittee, {"members": members})).fingerprint(None)

    assert "member_model_shas" not in fingerprint(["seed", "seed@1", "http://127.0.0.1:1/v1#judge"])
    with_model = fingerprint(["seed", f"{tiny_model.path}@3"])
    assert with_model["member_model_shas"] == {str(tiny_model.path): resolve_model(str(tiny_model.path)).sha}


def test_recipes_show_states_the_default_committees_effective_counts(capsys):
    from harness.cli import main

    assert main(["recipes", "show", "reconstructed-committee"]) == 0
    out = capsys.readouterr().out
    assert "Default committee (seed, seed@1, seed@2) with judge_decoding greedy: 3 distinct generators, 1 distinct judge." in out
    assert "with judge_decoding sampled: 3 distinct generators, 3 distinct judges." in out
    assert "judge_prompt (one of table3, harness, default 'table3')" in out
