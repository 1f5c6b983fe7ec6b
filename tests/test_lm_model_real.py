"""On the real SmolLM2, lm-eval's `forgetbench` model (the harness backend) gives lm-eval's own HF
model's per-example results on IFEval, MMLU-Pro and GPQA: the same responses, the same chosen
answers, log-likelihoods equal to 1e-4 (about 1-2 minutes on 2 cores)."""
from __future__ import annotations

import pytest

from harness.evaluation import ifeval, leaderboard_tasks
from harness.evaluation.lm_model import lm_for
from harness.generation import GenerationCache, TransformersBackend

pytestmark = pytest.mark.slow
LIMIT, SEED = 4, 7


def recorded(lm) -> dict:
    """Wrap `lm`'s request methods to keep every request's arguments and answer."""
    seen: dict = {}
    for kind in ("loglikelihood", "generate_until"):
        original = getattr(lm, kind)

        def wrapper(requests, disable_tqdm=False, _original=original):
            answers = _original(requests, disable_tqdm=disable_tqdm)
            seen.update((repr(r.args), a) for r, a in zip(requests, answers))
            return answers

        setattr(lm, kind, wrapper)
    return seen


@pytest.fixture(scope="module")
def both(real_model, tmp_path_factory):
    from lm_eval.models.huggingface import HFLM

    hf = HFLM(pretrained=str(real_model.path), device="cpu", dtype="float32", batch_size=8)
    backend = TransformersBackend(real_model, cache=GenerationCache(tmp_path_factory.mktemp("gen") / "gen.sqlite"))
    ours = lm_for(backend)  # one backend (one model load) serves all three benchmarks
    return (hf, recorded(hf)), (ours, recorded(ours))


def same_examples(theirs, ours):
    assert [(e.example_id, e.metric, e.value, e.prediction) for e in ours.examples] == \
        [(e.example_id, e.metric, e.value, e.prediction) for e in theirs.examples]
    assert [(s.metric, s.value, s.n) for s in ours.scores] == [(s.metric, s.value, s.n) for s in theirs.scores]


def same_answers(theirs: dict, ours: dict):
    assert theirs.keys() == ours.keys() and theirs
    for request, answer in theirs.items():
        if isinstance(answer, str):
            assert ours[request] == answer, request
        else:
            assert ours[request][0] == pytest.approx(answer[0], abs=1e-4) and ours[request][1] == answer[1], request


def test_ifeval_responses_equal_lm_evals_hf_model(real_model, data_dir, both):
    (hf, hf_seen), (ours, our_seen) = both
    run = dict(data_dir=data_dir, limit=LIMIT, subset_seed=SEED, max_new_tokens=48)
    same_examples(ifeval.evaluate_ifeval(real_model, lm=hf, **run), ifeval.evaluate_ifeval(real_model, lm=ours, **run))
    same_answers(hf_seen, our_seen)


@pytest.mark.parametrize("name", ["mmlu_pro", "gpqa"])  # not `benchmark`: pytest-benchmark's fixture name
def test_multiple_choice_loglikelihoods_equal_lm_evals_hf_model(real_model, data_dir, both, name):
    (hf, hf_seen), (ours, our_seen) = both
    hf_seen.clear(), our_seen.clear()
    run = dict(data_dir=data_dir, limit=LIMIT, subset_seed=SEED, gpqa_subset="diamond")
    same_examples(leaderboard_tasks.evaluate_benchmark(name, real_model, lm=hf, **run),
                  leaderboard_tasks.evaluate_benchmark(name, real_model, lm=ours, **run))
    same_answers(hf_seen, our_seen)
