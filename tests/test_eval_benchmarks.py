"""The issue-4 benchmarks: lm-eval tasks on the mirror (MMLU-Pro, GPQA diamond in memory, MATH-L5),
AdvBench safety, AlpacaEval with a judge, the suite's data checks and the `forgetbench eval` command."""
from __future__ import annotations

import json
import math

import pytest

from harness.config import DEFAULT_BENCHMARKS, KNOWN_BENCHMARKS, EvalConfig
from harness.domains import get_domain
from harness.errors import DataError
from harness.evaluation import alpaca_eval, lmeval_tasks, safety
from harness.generation import GenerationBackend, GenerationCache

EIGHT = {"mmlu_pro", "gpqa", "ifeval", "math_l5", "safety_raw", "safety_jailbreak", "alpaca_eval", "domain"}


class ScriptedBackend(GenerationBackend):
    """Answers every prompt with `reply(prompt)`; the real tokenizer applies the chat template."""

    name = "scripted"

    def __init__(self, model, reply, tmp_path):
        super().__init__(model, batch_size=4, cache=GenerationCache(tmp_path / f"gen-{id(self)}.sqlite"))
        self.reply, self.prompts = reply, []
        from harness.models import load_tokenizer

        self._tok = load_tokenizer(model, padding_side="left")

    @property
    def tokenizer(self):
        return self._tok

    def _generate_batch(self, prompts, sampling):
        self.prompts += prompts
        return [self.reply(p) for p in prompts]


def test_eight_benchmarks_are_known_and_the_default_suite_stays_small():
    assert set(KNOWN_BENCHMARKS) == EIGHT
    assert tuple(EvalConfig().benchmarks) == DEFAULT_BENCHMARKS == ("ifeval", "domain")


def test_settings_of_unused_benchmarks_do_not_change_the_eval_hash(data_dir):
    from harness.evaluation.suite import eval_config_hash

    domain = get_domain("medmcqa")
    plain = EvalConfig(benchmarks=["domain"])
    other_judge = EvalConfig(benchmarks=["domain"], judge_model="someone/else", gpqa_subset="main")
    assert eval_config_hash(plain, domain, data_dir, "transformers") == eval_config_hash(
        other_judge, domain, data_dir, "transformers")


@pytest.mark.parametrize("name, missing", [
    ("mmlu_pro", "eval/mmlu_pro/test.jsonl"), ("gpqa", "eval/gpqa/gpqa_diamond.zip"),
    ("math_l5", "eval/math/test.jsonl"), ("safety_raw", "eval/advbench/harmful_behaviors.csv"),
    ("alpaca_eval", "eval/alpaca_eval/reference_text_davinci_003.json"),
])
def test_missing_benchmark_data_fails_before_any_work_naming_the_file(tmp_path, name, missing):
    from harness.evaluation.suite import check_eval_data

    with pytest.raises(DataError) as caught:
        check_eval_data(EvalConfig(benchmarks=[name]), get_domain("medmcqa"), tmp_path)
    assert str(tmp_path / missing) in str(caught.value)


def test_jailbreak_needs_the_suffix_file(tmp_path, data_dir):
    (tmp_path / "eval/advbench").mkdir(parents=True)
    (tmp_path / safety.ADVBENCH_FILE).write_bytes((data_dir / safety.ADVBENCH_FILE).read_bytes())
    safety.check_safety_data(tmp_path, jailbreak=False)
    with pytest.raises(DataError, match="jailbreak_suffix.txt"):
        safety.check_safety_data(tmp_path, jailbreak=True)


def test_gpqa_diamond_is_read_in_memory_and_never_written_out(tiny_model, data_dir, _session_cache):
    rows = lmeval_tasks.gpqa_diamond_in_memory(str(data_dir / lmeval_tasks.GPQA_ZIP))["train"]
    assert len(rows) == 198 and "Correct Answer" in rows.column_names
    result = lmeval_tasks.evaluate_lm_eval_task(lmeval_tasks.gpqa_spec("diamond"), tiny_model, data_dir=data_dir,
                                                limit=2, subset_seed=1, batch_size=2)
    assert result.primary_metric == "acc_norm" and result.scores[0].n == 2 and len(result.examples) == 2
    assert {e.prediction for e in result.examples} <= {"(A)", "(B)", "(C)", "(D)"}
    # No question text anywhere in the cache (task YAMLs, datasets cache, generation cache).
    needles = [rows[i]["Question"][:60].encode() for i in range(0, 198, 20)]
    for path in _session_cache.rglob("*"):
        if path.is_file() and path.stat().st_size < 200_000_000:
            data = path.read_bytes()
            assert not any(n in data for n in needles), path


def test_mmlu_pro_zero_shot_on_the_mirror(tiny_model, data_dir):
    result = lmeval_tasks.evaluate_lm_eval_task(lmeval_tasks.MMLU_PRO, tiny_model, data_dir=data_dir, limit=2,
                                                subset_seed=1, batch_size=2)
    assert result.scores[0].metric == "acc" and result.scores[0].n == 2
    assert result.settings["num_fewshot"] == 0 and result.settings["data_sha256"]
    assert all(e.target in "ABCDEFGHIJ" and e.prediction in "ABCDEFGHIJ" for e in result.examples)


class _AnswerKeyLM:
    """An lm-eval LM that answers MATH problems from a key: right for the first, wrong for the rest."""

    def __new__(cls, answers: dict[str, str]):
        from lm_eval.api.model import LM

        class Scripted(LM):
            def loglikelihood(self, requests):
                raise NotImplementedError

            def loglikelihood_rolling(self, requests):
                raise NotImplementedError

            def generate_until(self, requests):
                outputs = []
                for request in requests:
                    context = request.args[0]
                    problem = max((p for p in answers if p in context), key=len)
                    answer = answers[problem] if problem == first else "17"
                    outputs.append(f"Solution: ... $\\boxed{{{answer}}}$.\nFinal Answer: The final answer is "
                                   f"${answer}$. I hope it is correct.")
                return outputs

            def apply_chat_template(self, chat_history, add_generation_prompt=True):
                return "\n".join(m["content"] for m in chat_history)

            @property
            def tokenizer_name(self):
                return "scripted"

            def chat_template(self, chat_template=False):
                return ""

        first = next(iter(answers))
        return Scripted()


def test_math_l5_scores_equal_lm_evals_own_scoring_of_the_same_generations(data_dir):
    from lm_eval.tasks.leaderboard.math import utils

    rows = [json.loads(line) for line in (data_dir / lmeval_tasks.MATH_FILE).open() if line.strip()]
    level5 = [r for r in rows if r["level"] == "Level 5"]
    assert len(level5) == 1324
    keys = [lmeval_tasks._problem_key(r) for r in level5]
    chosen = [level5[i] for i in lmeval_tasks.subset_indices(keys, 3, 5)]
    answers = {r["problem"]: utils.remove_boxed(utils.last_boxed_only_string(r["solution"])) for r in chosen}
    result = lmeval_tasks.evaluate_lm_eval_task(lmeval_tasks.MATH_L5, None, data_dir=data_dir, limit=3,
                                                subset_seed=5, max_new_tokens=32, lm=_AnswerKeyLM(answers))
    assert result.settings["generation_kwargs"]["max_gen_toks"] == 32 and result.settings["num_fewshot"] == 4
    by_key = {e.example_id: e for e in result.examples}
    assert set(by_key) == {lmeval_tasks._problem_key(r) for r in chosen}
    rescored = []
    for row in chosen:
        example = by_key[lmeval_tasks._problem_key(row)]
        doc = {"problem": row["problem"], "solution": row["solution"], "answer": answers[row["problem"]]}
        value = utils.process_results(doc, [example.prediction])["exact_match"]
        assert example.value == value
        rescored.append(value)
    assert sorted(rescored) == [0, 0, 1]  # the scripted model got exactly one right
    assert result.scores[0].value == pytest.approx(sum(rescored) / 3) and result.scores[0].n == 3
    assert result.scores[0].stderr == pytest.approx(math.sqrt((1 / 3) * (2 / 3) / 2))


def test_safety_rates_from_keywords_with_suffix_appended(tiny_model, data_dir, tmp_path):
    suffix = (data_dir / safety.SUFFIX_FILE).read_text().rstrip("\r\n")
    assert suffix.startswith(" ")
    backend = ScriptedBackend(tiny_model, lambda p: "I'm sorry, I can't help." if suffix in p else "Sure, here is",
                              tmp_path)
    raw = safety.evaluate_safety(backend, data_dir=data_dir, jailbreak=False, limit=4, subset_seed=2)
    jail = safety.evaluate_safety(backend, data_dir=data_dir, jailbreak=True, limit=4, subset_seed=2)
    assert (raw.benchmark, raw.scores[0].value, raw.scores[0].n) == ("safety_raw", 0.0, 4)
    assert (jail.benchmark, jail.scores[0].value) == ("safety_jailbreak", 1.0)
    assert [e.example_id for e in raw.examples] == [e.example_id for e in jail.examples]
    assert safety.is_refusal("As an AI, I cannot do that") and not safety.is_refusal("Step 1: buy a lock pick")


def test_alpaca_eval_maps_verdicts_through_the_random_order(tiny_model, data_dir, tmp_path):
    model = ScriptedBackend(tiny_model, lambda p: "MODEL ANSWER", tmp_path)

    def prefer_model(prompt):  # a judge that always picks the output saying MODEL ANSWER
        a = prompt.index("Output (a):")
        b = prompt.index("Output (b):")
        return "Output (a)" if a < prompt.index("MODEL ANSWER") < b else "Output (b)"

    judge = ScriptedBackend(tiny_model, prefer_model, tmp_path)
    result = alpaca_eval.evaluate_alpaca_eval(model, judge, data_dir=data_dir, reference="text_davinci_003",
                                              limit=8, subset_seed=3)
    scores = {s.metric: s for s in result.scores}
    assert scores["win_rate"].value == 1.0 and scores["win_rate"].n == 8 and scores["unparseable"].value == 0
    orders = {json.loads(e.target)["model_is"] for e in result.examples}
    assert orders == {"a", "b"}  # order randomised per example
    assert 0.5 < scores["lc_win_rate"].value <= 1.0


def test_a_judge_that_never_answers_in_form_gives_a_count_not_a_crash(tiny_model, data_dir, tmp_path):
    model = ScriptedBackend(tiny_model, lambda p: "answer", tmp_path)
    judge = ScriptedBackend(tiny_model, lambda p: "Well, it depends on many things.", tmp_path)
    result = alpaca_eval.evaluate_alpaca_eval(model, judge, data_dir=data_dir, reference="gpt4_1106_preview",
                                              limit=5, subset_seed=3)
    scores = {s.metric: s for s in result.scores}
    assert result.settings["unparseable"] == 5 and scores["unparseable"].value == 1.0 and scores["unparseable"].n == 5
    assert math.isnan(scores["win_rate"].value) and scores["win_rate"].n == 0
    assert len(result.examples) == 5 and all(math.isnan(e.value) for e in result.examples)


def test_verdict_parsing_and_length_control():
    assert alpaca_eval.parse_verdict("Output (b) is better") == "b"
    assert alpaca_eval.parse_verdict("I prefer output a.") == "a"
    assert alpaca_eval.parse_verdict("Tie.") == "tie"
    assert alpaca_eval.parse_verdict("B") == "b"
    assert alpaca_eval.parse_verdict("Both are fine") is None
    # wins only when longer: the length-controlled rate falls below the raw one
    prefs = [1.0] * 6 + [0.0] * 4
    diffs = [300, 250, 400, 200, 350, 100, -50, -100, -20, 10]
    lc, se = alpaca_eval.length_controlled(prefs, diffs)
    assert lc < 0.6 and se is not None and se > 0
    # no length effect: LC close to the raw win rate
    lc_flat, _ = alpaca_eval.length_controlled([1, 0, 1, 0, 1, 0, 1, 1], [10, 10, -10, -10, 5, -5, 0, 0])
    assert abs(lc_flat - 0.625) < 0.1


def test_forgetbench_eval_records_all_eight_benchmarks(tiny_model, data_dir, tmp_path, capsys, monkeypatch):
    """All eight through `forgetbench eval` on the tiny model. Its random judge never writes a parseable
    verdict, so AlpacaEval's win rate would rest on n=0 comparisons: that run is refused in one line
    and records nothing; with the judge's verdict parser answering, all eight are recorded."""
    from harness.cli import main
    from harness.evaluation import alpaca_eval
    from leaderboard.store import Leaderboard

    board = tmp_path / "board.duckdb"
    command = ["eval", "--model", str(tiny_model.path), "--limit", "2", "--max-new-tokens", "4",
               "--judge", str(tiny_model.path), "--data-dir", str(data_dir), "--leaderboard", str(board),
               "--batch-size", "4"]
    assert main(command) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("forgetbench: error: benchmark alpaca_eval on ")
    assert error.endswith(": win_rate rests on n=0 examples (limit 2); nothing is recorded")
    assert not board.exists()

    monkeypatch.setattr(alpaca_eval, "parse_verdict", lambda verdict: "a")
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in EIGHT)
    frame = Leaderboard(board).table()
    assert EIGHT <= set(frame.columns) and len(frame) == 1
    assert frame.iloc[0]["recipe"] == "eval"  # the tiny model is not the base model


@pytest.mark.slow
def test_forgetbench_eval_on_the_real_model_records_all_eight_at_limit_20(real_model, data_dir, tmp_path, capsys):
    """The issue's acceptance command on the real SmolLM2, offline on CPU: `forgetbench eval --model
    smollm2-135m-instruct --limit 20` (generation capped at 32 tokens to keep CI minutes down; the
    closing note reports the wall times at the default budgets). Evaluating the base model records
    a baseline with 20 examples behind every benchmark, each score in [0, 1] with its n."""
    import duckdb

    from harness.cli import main
    from leaderboard.store import Leaderboard

    board = tmp_path / "board.duckdb"
    code = main(["eval", "--model", "smollm2-135m-instruct", "--limit", "20", "--max-new-tokens", "32",
                 "--data-dir", str(data_dir), "--leaderboard", str(board)])
    assert code == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in EIGHT)
    frame = Leaderboard(board).table()
    assert len(frame) == 1 and frame.iloc[0]["recipe"] == "baseline"
    assert EIGHT <= set(frame.columns)
    with duckdb.connect(str(board), read_only=True) as con:
        scores = con.execute("SELECT benchmark, metric, value, n FROM scores").df()
        examples = con.execute("SELECT benchmark, count(DISTINCT example_id) AS n FROM examples "
                               "GROUP BY benchmark").df()
    assert set(scores["benchmark"]) >= EIGHT
    assert scores["value"].between(0, 1).all()
    primary = scores.groupby("benchmark")["n"].max()
    assert (primary[sorted(EIGHT)] == 20).all(), primary.to_dict()
    assert dict(zip(examples["benchmark"], examples["n"])) == {name: 20 for name in EIGHT}
