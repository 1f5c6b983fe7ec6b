"""Study-level bookkeeping on the tiny model: a run's id comes from its own inputs, so growing a
study leaves the runs already on the leaderboard where they are."""
from __future__ import annotations

import duckdb
from conftest import tiny_study_config

from harness.config import StudyConfig
from harness.study import run_study
from leaderboard.store import Leaderboard


def _study(tiny_model, recipes):
    return StudyConfig.model_validate(tiny_study_config(
        tiny_model, name="grow", recipes=recipes, mix={"size": 8, "domain_share": 0.5},
        finetune={"method": "lora", "max_steps": 1, "batch_size": 4, "max_seq_length": 256},
        eval={"batch_size": 4, "benchmarks": {"domain": {"limit": 2, "max_new_tokens": 4}}}))


def test_adding_a_recipe_keeps_the_run_ids_already_on_the_leaderboard(tiny_model, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path / "cache"))
    board = tmp_path / "lb.duckdb"
    first = run_study(_study(tiny_model, ["none"]), Leaderboard(board), data_dir)
    grown = run_study(_study(tiny_model, ["none", "public:alpaca"]), Leaderboard(board), data_dir)

    assert grown[:2] == first  # baseline and `none` keep their ids
    with duckdb.connect(str(board), read_only=True) as con:
        ids = sorted(row[0] for row in con.execute("SELECT run_id FROM runs").fetchall())
    assert ids == sorted(grown)  # no stale copy of `none` under an old id


def test_changing_the_recipe_list_changes_no_mix(tiny_model, data_dir, tmp_path, monkeypatch):
    """Each planned run's mix, built the way a study builds it, is the same file whatever else the study runs."""
    from harness.domains import get_domain
    from harness.study import _RunContext, plan

    def mixes(recipes, cache):
        monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path / cache))  # separate caches: every mix really built
        study = _study(tiny_model, recipes).model_copy(update={"seeds": [0, 1]})
        context = _RunContext(study, get_domain(study.domain), data_dir, tiny_model, eval_hash="")
        built = {(p.label, p.seed): context.mix(p) for p in plan(study) if p.recipe is not None}
        return {run: (mix.meta["key"], mix.sha, mix.path.read_bytes()) for run, mix in built.items()}

    small = mixes(["none", "public:alpaca"], "a")
    large = mixes(["public:dolly", "public:alpaca", "none", "public:lima"], "b")
    assert set(small) < set(large)
    assert all(small[run] == large[run] for run in small)
