"""The drift benchmark: the seed model's greedy answers are the reference, every model is scored by the
log-probability it gives them, one value per prompt (tiny models; the real run is in the sweep study)."""
from __future__ import annotations

import math

import pytest
from transformers import AutoTokenizer

from harness.config import EvalConfig
from harness.domains import get_domain
from harness.errors import ConfigError
from harness.evaluation.suite import evaluate_model

SUITE = EvalConfig(benchmarks={"drift": {"limit": 8, "max_new_tokens": 8}})


@pytest.fixture(scope="module")
def other_model(tiny_model, tmp_path_factory):
    """The tiny model with its final norm zeroed: every next token equally likely, whatever the seed
    model would say (a model that drifted all the way)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.models import resolve_model

    model = AutoModelForCausalLM.from_pretrained(tiny_model.path)
    with torch.no_grad():
        model.model.norm.weight.zero_()
    out = tmp_path_factory.mktemp("drifted")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model.path).save_pretrained(out)
    return resolve_model(str(out))


def drift_of(model, base, data_dir):
    [result] = evaluate_model(model, SUITE, get_domain("medmcqa"), data_dir, "transformers", base_model=str(base.path))
    return result


def test_the_seed_model_scores_its_own_greedy_answers_higher_than_a_model_that_drifted(tiny_model, other_model, data_dir):
    own, drifted = drift_of(tiny_model, tiny_model, data_dir), drift_of(other_model, tiny_model, data_dir)
    assert own.primary_metric == "seed_answer_logprob" and own.scores[0].n == 8
    assert [e.example_id for e in own.examples] == [e.example_id for e in drifted.examples]  # paired prompts
    assert [e.prediction for e in own.examples] == [e.prediction for e in drifted.examples]  # the same answers
    assert drifted.scores[0].value == pytest.approx(-math.log(len(AutoTokenizer.from_pretrained(tiny_model.path))), abs=1e-4)
    assert own.scores[0].value > drifted.scores[0].value + 0.1  # greedy tokens are the seed model's likeliest
    assert own.settings["reference_sha"] == drifted.settings["reference_sha"] == tiny_model.sha


def test_drift_without_a_seed_model_names_the_parameter(tiny_model, data_dir):
    with pytest.raises(ConfigError, match="drift: no seed model to compare with; set eval.benchmarks.drift.reference_model"):
        evaluate_model(tiny_model, SUITE, get_domain("medmcqa"), data_dir, "transformers")
