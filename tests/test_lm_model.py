"""lm-eval's `forgetbench` model answers lm-eval's requests as lm-eval's own HF model does, through the
harness backend and its cache (tiny random model; the real-model comparison on whole benchmarks is in
test_lm_model_real.py)."""
from __future__ import annotations

import pytest
from conftest import forward_input_shapes
from lm_eval.api.instance import Instance

from harness.evaluation.lm_model import BackendLM, lm_for
from harness.generation import GenerationCache, TransformersBackend

CHAT = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
LOGLIKELIHOOD_PAIRS = [
    (CHAT, "Blue"),  # one-token continuations of one context share a forward pass
    (CHAT, "Red"),
    (CHAT + "The answer is", " green, like grass."),  # multi-token
    ("Question: 2 + 2 = ", "4"),  # a trailing space moves to the continuation
    ("", "An empty context is scored after the prefix token."),
]
QUESTION = ("<|im_start|>user\nWhat is the correct answer to this question: which colour is the sky on a clear day?\n"
            "Choices:\n(A) blue\n(B) red\n(C) green\n<|im_end|>\n<|im_start|>assistant\nAnswer:")
CHOICES = [(QUESTION, f" ({letter})") for letter in "ABC"]  # multi-token choices: they share the context's pass
LOGLIKELIHOOD_PAIRS += CHOICES
GENERATE_REQUESTS = [  # different stop lists and budgets in one call: grouped like lm-eval's HF model
    (CHAT, {"until": ["\n"], "max_gen_toks": 12, "do_sample": False}),
    ("<|im_start|>user\nCount to five.<|im_end|>\n<|im_start|>assistant\n", {"until": ["3", "."], "max_gen_toks": 9}),
    ("Once upon a time", {"until": [], "max_gen_toks": 7, "temperature": 0.0}),
    (CHAT, {"until": ["\n"], "max_gen_toks": 12, "do_sample": False}),
    # the prompt ends in a newline: only the generated text may complete a stop string
    (CHAT, {"until": ["\n\n"], "max_gen_toks": 6}),
]


def requests(kind, arguments):
    return [Instance(request_type=kind, doc={}, arguments=args, idx=i) for i, args in enumerate(arguments)]


@pytest.fixture(scope="module")
def hf_lm(tiny_model):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(tiny_model.path), device="cpu", dtype="float32", batch_size=3)


@pytest.fixture
def backend(tiny_model, tmp_path):
    return TransformersBackend(tiny_model, cache=GenerationCache(tmp_path / "gen.sqlite"))


def test_loglikelihoods_equal_lm_evals_hf_model(hf_lm, backend):
    ours = lm_for(backend).loglikelihood(requests("loglikelihood", LOGLIKELIHOOD_PAIRS))
    theirs = hf_lm.loglikelihood(requests("loglikelihood", LOGLIKELIHOOD_PAIRS))
    assert [greedy for _, greedy in ours] == [greedy for _, greedy in theirs]
    assert [lp for lp, _ in ours] == pytest.approx([lp for lp, _ in theirs], abs=1e-4)


def test_rolling_loglikelihoods_equal_lm_evals_hf_model_over_several_windows(tiny_model, backend):
    from lm_eval.models.huggingface import HFLM

    texts = [(" ".join(["a long document that needs more than one window"] * 4),), ("short",)]
    hf_lm = HFLM(pretrained=str(tiny_model.path), device="cpu", dtype="float32", batch_size=3, max_length=16)
    ours = BackendLM(backend=backend, max_length=16).loglikelihood_rolling(requests("loglikelihood_rolling", texts))
    assert ours == pytest.approx(hf_lm.loglikelihood_rolling(requests("loglikelihood_rolling", texts)), abs=1e-4)


def test_a_shorter_window_cuts_contexts_from_the_left_as_lm_eval_does(hf_lm, tiny_model, backend):
    from lm_eval.models.huggingface import HFLM

    short = HFLM(pretrained=str(tiny_model.path), device="cpu", dtype="float32", batch_size=3, max_length=12)
    pairs = requests("loglikelihood", LOGLIKELIHOOD_PAIRS[2:4])
    ours = BackendLM(backend=backend, max_length=12).loglikelihood(pairs)
    assert [lp for lp, _ in ours] == pytest.approx([lp for lp, _ in short.loglikelihood(pairs)], abs=1e-4)
    prompts = requests("generate_until", [("word " * 40, {"until": [], "max_gen_toks": 4})])
    assert BackendLM(backend=backend, max_length=12).generate_until(prompts) == short.generate_until(prompts)


def test_generations_equal_lm_evals_hf_model_with_mixed_stop_lists(hf_lm, backend):
    ours = lm_for(backend).generate_until(requests("generate_until", GENERATE_REQUESTS))
    theirs = hf_lm.generate_until(requests("generate_until", GENERATE_REQUESTS))
    assert ours == theirs


def test_answers_come_from_the_persistent_cache_the_second_time(backend, tiny_model):
    lm = lm_for(backend)
    first = (lm.loglikelihood(requests("loglikelihood", LOGLIKELIHOOD_PAIRS)),
             lm.generate_until(requests("generate_until", GENERATE_REQUESTS)))
    assert backend.scored == len(LOGLIKELIHOOD_PAIRS) and backend.generated == len(GENERATE_REQUESTS)
    again = TransformersBackend(tiny_model, cache=backend.cache)  # a later process on the same cache file
    lm = lm_for(again)
    assert (lm.loglikelihood(requests("loglikelihood", LOGLIKELIHOOD_PAIRS)),
            lm.generate_until(requests("generate_until", GENERATE_REQUESTS))) == first
    assert again.scored == 0 and again.generated == 0 and again._model is None  # never even loaded


def test_one_token_choices_of_one_question_share_one_forward_pass(backend):
    lm = lm_for(backend)
    with forward_input_shapes(backend._loaded()) as shapes:
        lm.loglikelihood(requests("loglikelihood", [(CHAT, f" {letter}") for letter in "ABCDEFGHIJ"]))
    assert len(shapes) == 1 and shapes[0][0] == 1  # one row: the context, its choices as branches


def test_multi_token_choices_of_one_question_run_the_question_once_as_branches_of_one_row(backend):
    lm = lm_for(backend)
    context = lm.tok_encode(QUESTION)
    tails = [len(lm.tok_encode(choice, add_special_tokens=False)) - 1 for _, choice in CHOICES]
    with forward_input_shapes(backend._loaded()) as shapes:
        lm.loglikelihood(requests("loglikelihood", CHOICES))
    assert shapes == [(1, len(context) + sum(tails))]  # the question once, then only the choices' own tokens


def test_questions_of_different_lengths_batch_together_and_score_as_alone(tiny_model, tmp_path, monkeypatch):
    import harness.generation.transformers_backend as generation

    monkeypatch.setattr(generation, "SCORING_MIN_FILL", 0.0)  # one batch whatever the lengths
    pairs = requests("loglikelihood", CHOICES + LOGLIKELIHOOD_PAIRS[:4])
    together = lm_for(TransformersBackend(tiny_model, cache=GenerationCache(tmp_path / "together.sqlite")))
    with forward_input_shapes(together.backend._loaded()) as shapes:
        got = together.loglikelihood(pairs)
    assert len(shapes) == 1  # one padded batch of tree rows
    alone = [lm_for(TransformersBackend(tiny_model, cache=GenerationCache(tmp_path / f"alone{i}.sqlite")))
             .loglikelihood([pair])[0] for i, pair in enumerate(pairs)]
    assert [g for _, g in got] == [g for _, g in alone]
    assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in alone], abs=1e-5)


def test_many_choices_of_one_context_split_over_rows_of_bounded_size(tiny_model, tmp_path):
    from harness.tree_scoring import tree_rows

    lm = lm_for(TransformersBackend(tiny_model, cache=GenerationCache(tmp_path / "whole.sqlite")))
    pairs = [(lm.tok_encode(context), lm.tok_encode(choice, add_special_tokens=False)) for context, choice in CHOICES]
    context = len(pairs[0][0])
    rows = tree_rows(pairs, window=2048, max_row_tokens=context + 3)
    assert [len(row.scored) for row in rows] == [1, 1, 1]  # each row: the context and one choice's branch
    assert all(row.tokens[:context] == pairs[0][0] for row in rows)
    whole = tree_rows(pairs, window=2048)
    assert len(whole) == 1 and sorted(whole[0].scored) == [0, 1, 2]


def test_without_the_tree_mask_each_input_is_its_own_causal_row(tiny_model, tmp_path, monkeypatch):
    import harness.generation.transformers_backend as generation

    expected = lm_for(TransformersBackend(tiny_model, cache=GenerationCache(tmp_path / "tree.sqlite"))).loglikelihood(
        requests("loglikelihood", LOGLIKELIHOOD_PAIRS))
    monkeypatch.setattr(generation, "_takes_tree_mask", lambda model: False)
    plain = lm_for(TransformersBackend(tiny_model, cache=GenerationCache(tmp_path / "plain.sqlite")))
    with forward_input_shapes(plain.backend._loaded()) as shapes:
        got = plain.loglikelihood(requests("loglikelihood", LOGLIKELIHOOD_PAIRS))
    assert sum(rows for rows, _ in shapes) == 7  # 10 pairs, 3 one-token pairs sharing one input with another
    assert [g for _, g in got] == [g for _, g in expected]
    assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in expected], abs=1e-5)


def test_chat_template_and_tokenizer_name_are_lm_evals(hf_lm, backend):
    lm = lm_for(backend)
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert lm.apply_chat_template(history) == hf_lm.apply_chat_template(history)
    assert lm.apply_chat_template(history + [{"role": "assistant", "content": "Hel"}], add_generation_prompt=False) == \
        hf_lm.apply_chat_template(history + [{"role": "assistant", "content": "Hel"}], add_generation_prompt=False)
    assert lm.chat_template(True) == hf_lm.chat_template(True)
    assert lm.tokenizer_name == hf_lm.tokenizer_name
    assert lm.max_length == hf_lm.max_length and lm.prefix_token_id == hf_lm.prefix_token_id


def test_sampling_settings_follow_lm_evals_normalisation(backend):
    lm = lm_for(backend)
    greedy, until = lm.sampling_for({"until": ["Problem:"], "do_sample": False, "temperature": 0.7, "max_gen_toks": 5})
    assert greedy.greedy and greedy.max_new_tokens == 5 and greedy.stop == ("Problem:",)
    assert until == ["Problem:", "<|im_end|>"]  # HFLM's list, with the end-of-sequence text
    sampled, _ = lm.sampling_for({"temperature": 0.7, "top_p": 0.9})  # no do_sample: a temperature means sampling
    assert (sampled.temperature, sampled.top_p, sampled.max_new_tokens) == (0.7, 0.9, 256)
    with pytest.raises(ValueError, match="'num_beams' is not supported"):
        lm.sampling_for({"num_beams": 4})


def test_the_model_is_registered_with_lm_eval_and_builds_from_a_model_spec(tiny_model):
    from lm_eval.api.registry import get_model

    assert get_model("forgetbench") is BackendLM
    lm = BackendLM.create_from_arg_string(f"pretrained={tiny_model.path},batch_size=4")
    assert lm.backend.name == "transformers" and lm.backend.batch_size == 4 and lm.backend.model.sha == tiny_model.sha



def test_the_tree_mask_lets_a_branch_see_the_context_and_itself_only():
    import torch

    from harness.tree_scoring import tree_attention_mask

    segments = torch.tensor([[0, 0, 1, 1, 2, -1]])  # context, branch 1, branch 2, padding
    allowed = tree_attention_mask(segments)[0, 0]
    assert allowed[3].tolist() == [True, True, True, True, False, False]  # branch 1: context and itself
    assert allowed[4].tolist() == [True, True, False, False, True, False]  # branch 2 skips branch 1
    assert allowed[5].tolist() == [True, True, False, False, False, True]  # padding: context (no empty softmax row)
    additive = tree_attention_mask(segments, torch.float32)[0, 0]
    assert (additive == 0).tolist() == allowed.tolist()
