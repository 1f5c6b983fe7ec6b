"""IFEval through lm-eval's task and scoring: offline punkt data, seeded subsets, and scores that
match lm-eval's own scoring of the same responses."""
from __future__ import annotations

import json
import random

import pytest

from harness.errors import DataError
from harness.evaluation.ifeval import DATA_FILE, METRICS, evaluate_ifeval
from harness.hashing import hash_file
from harness.models import ResolvedModel
from harness.subsets import paired_subset


def _rows(data_dir) -> list[dict]:
    with open(data_dir / DATA_FILE, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _by_metric(result) -> dict[str, dict[str, object]]:
    table: dict[str, dict[str, object]] = {m: {} for m in METRICS}
    for example in result.examples:
        table[example.metric][example.example_id] = example
    return table


def test_punkt_tab_is_installed_offline_and_splits_sentences(_session_cache):
    import nltk

    from harness.evaluation.punkt import ensure_punkt_tab

    root = ensure_punkt_tab()
    folder = root / "tokenizers" / "punkt_tab" / "english"
    names = {"abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt"}
    assert names <= {p.name for p in folder.iterdir()}
    assert root.is_relative_to(_session_cache)
    assert str(nltk.data.find("tokenizers/punkt_tab/english/")).startswith(str(root))
    stamp = (folder / "ortho_context.tab").stat().st_mtime_ns
    assert ensure_punkt_tab() == root and (folder / "ortho_context.tab").stat().st_mtime_ns == stamp

    assert nltk.sent_tokenize("Dr. Smith went home. He slept.") == ["Dr. Smith went home.", "He slept."]
    # The learned parameters matter: abbreviations, initials and sentence starters.
    assert nltk.sent_tokenize("Mr. J. Smith paid $3.50 at 5 p.m. on Jan. 3. However, it rained.") == [
        "Mr. J. Smith paid $3.50 at 5 p.m. on Jan. 3.", "However, it rained."]
    assert nltk.word_tokenize("Hello, Mrs. Jones.") == ["Hello", ",", "Mrs.", "Jones", "."]


def subset_indices(keys, limit, seed):
    """Row indices of the IFEval subset, drawn by key as evaluate_ifeval draws them."""
    return paired_subset(range(len(keys)), limit, seed, keys=keys)


def test_without_keys_the_subset_is_drawn_over_positions_as_stored_results_were():
    rows = [f"row{i}" for i in range(50)]
    old_rule = [rows[i] for i in sorted(random.Random(7).sample(range(len(rows)), 5))]  # the earlier seeded_subset
    assert paired_subset(rows, 5, 7) == old_rule
    assert paired_subset(rows, 5, 7) == [rows[i] for i in subset_indices(list(range(50)), 5, 7)]


def test_seeded_subset_is_paired_across_runs_and_differs_across_seeds(data_dir):
    keys = [row["key"] for row in _rows(data_dir)]
    first = subset_indices(keys, 10, seed=1)
    assert first == subset_indices(keys, 10, seed=1) == sorted(first) and len(set(first)) == 10
    assert first != subset_indices(keys, 10, seed=2)
    assert first != list(range(10))  # a random draw, not the first N
    # Drawn by key, so the same prompts whatever the row order of the source.
    reordered = list(reversed(keys))
    assert {reordered[i] for i in subset_indices(reordered, 10, seed=1)} == {keys[i] for i in first}
    assert subset_indices(keys, None, seed=1) == list(range(len(keys)))
    with pytest.raises(ValueError):  # lm-eval would read an empty selection as "everything"
        subset_indices(keys, 0, seed=1)


def test_missing_ifeval_file_raises_data_error_naming_it_and_both_sources(tmp_path):
    model = ResolvedModel(spec="unused", path=tmp_path, sha="0" * 64)  # never loaded: the data check comes first
    with pytest.raises(DataError) as caught:
        evaluate_ifeval(model, data_dir=tmp_path, limit=3, subset_seed=1)
    message = str(caught.value)
    assert str(tmp_path / DATA_FILE) in message and "\n" not in message
    assert "--data-dir" in message and "FORGETBENCH_DATA_DIR" in message and "google/IFEval" in message


def test_tiny_model_gets_four_metrics_over_the_seeded_subset(tiny_model, data_dir):
    result = evaluate_ifeval(tiny_model, data_dir=data_dir, limit=3, subset_seed=1, max_new_tokens=16,
                             batch_size=4)
    assert result.benchmark == "ifeval" and result.primary_metric == "prompt_level_strict_acc"
    assert [s.metric for s in result.scores] == list(METRICS)
    assert all(0.0 <= s.value <= 1.0 and s.n == 3 for s in result.scores)
    rows = _rows(data_dir)
    expected = {str(rows[i]["key"]) for i in subset_indices([r["key"] for r in rows], 3, seed=1)}
    for metric, examples in _by_metric(result).items():
        assert set(examples) == expected, metric
    assert result.settings["data_sha256"] == hash_file(data_dir / DATA_FILE)
    assert {"task", "max_new_tokens", "limit", "subset_seed", "data_source", "lm_eval_version"} <= set(
        result.settings)


@pytest.mark.slow
def test_scores_equal_lm_evals_own_scoring_of_the_logged_responses(real_model, data_dir):
    """Re-score every reported response with lm-eval's IFEval `process_results` and aggregations
    (on the raw JSONL rows, not the task's loaded copy) and compare with what the harness reports."""
    from lm_eval.api.metrics import mean, mean_stderr
    from lm_eval.tasks.ifeval import utils

    result = evaluate_ifeval(real_model, data_dir=data_dir, limit=4, subset_seed=3, max_new_tokens=48,
                             batch_size=4)
    docs = {str(row["key"]): row for row in _rows(data_dir)}
    table = _by_metric(result)
    rescored = {key: utils.process_results(docs[key], [ex.prediction])
                for key, ex in table["prompt_level_strict_acc"].items()}
    assert len(rescored) == 4
    for metric in METRICS:
        raw = [rescored[key][metric] for key in sorted(rescored)]
        per_example = [sum(v) / len(v) if metric.startswith("inst") else float(v) for v in raw]
        assert [table[metric][key].value for key in sorted(rescored)] == per_example, metric
        score = next(s for s in result.scores if s.metric == metric)
        if metric.startswith("inst"):
            assert score.value == pytest.approx(utils.agg_inst_level_acc(raw)) and score.stderr is None
        else:
            assert score.value == pytest.approx(mean(raw))
            assert score.stderr == pytest.approx(mean_stderr([float(v) for v in raw]))
    # The comparison means something only if some instruction was followed.
    assert sum(ex.value for ex in table["inst_level_loose_acc"].values()) > 0
