"""Leaderboard views and commands: schema migration, paper table, compare (paired bootstrap), read-only
query, parquet export."""
from __future__ import annotations

import json
import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import ForgetbenchError
from harness.results import BenchmarkResult, ExampleResult, RunRecord, Score
from leaderboard import SCHEMA_VERSION, Leaderboard, schema
from leaderboard.compare import compare, holm, paired_bootstrap
from leaderboard.sql import run_query
from leaderboard.views import paper_table

EVIL = '<script>alert("x")</script>&'


def run(run_id, recipe, seed=0, study="demo"):
    return RunRecord(
        run_id=run_id, study=study, recipe=recipe, recipe_params={}, seed=seed, base_model="smollm2",
        base_model_sha="base", checkpoint_sha=f"ck-{run_id}", mix_sha=None, config_hash="c",
        finetune_config_hash=None, eval_config_hash="e", data_hashes={}, package_versions={},
        started_at="2025-01-01T00:00:00+00:00", finished_at=f"2025-01-01T00:00:{seed:02d}+00:00", domain="medmcqa",
        generation_backend="transformers")


def results(ifeval: list[float], domain: list[float], prediction: str = "") -> list[BenchmarkResult]:
    """Per-example values given; the aggregate score is their mean (as the harness records it)."""
    def bench(name, metric, values, second="other"):
        second_value = float(np.mean(values)) if second != "other" else 0.0
        return BenchmarkResult(
            benchmark=name, primary_metric=metric,
            scores=[Score(metric, float(np.mean(values)), None, len(values)), Score(second, second_value, None, 1)],
            examples=[ExampleResult(f"{name}-{i}", metric, v, prediction=prediction) for i, v in enumerate(values)])
    return [bench("ifeval", "prompt_level_strict_acc", ifeval, "inst_level_strict_acc"), bench("domain", "acc", domain)]


N = 40


@pytest.fixture
def demo_board(tmp_path) -> Leaderboard:
    """Shaped like the demo's leaderboard: baseline, none and public:alpaca (two seeds each)."""
    board = Leaderboard(tmp_path / "demo.duckdb")
    board.record(run("base", "baseline"), results([1.0] * 30 + [0.0] * 10, [1.0] * 10 + [0.0] * 30))
    for seed in (0, 1):
        board.record(run(f"none-{seed}", "none", seed),  # forgets: 20 + seed of 40 IFEval prompts pass
                     results([1.0] * (20 + seed) + [0.0] * (20 - seed), [1.0] * 30 + [0.0] * 10))
        board.record(run(f"alp-{seed}", "public:alpaca", seed),
                     results([1.0] * (29 + seed) + [0.0] * (11 - seed), [1.0] * 24 + [0.0] * 16, prediction=EVIL))
    board.record(run("evil", EVIL), results([1.0] * 30 + [0.0] * 10, [1.0] * 10 + [0.0] * 30))
    return board


# -- 1. schema migration ---------------------------------------------------------------------------

def test_a_file_written_with_the_v1_schema_opens_migrates_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:  # exactly what forgetbench 0.1 (schema v1) wrote
        schema.MIGRATIONS[1](con)
        con.execute("INSERT INTO meta VALUES ('application', ?), ('schema_version', '1')", [schema.APPLICATION])
        con.execute("INSERT INTO runs VALUES ('r1','s','none','{}',0,'m','b','ck',NULL,'c',NULL,'e','{}','{}',"
                    "'2025-01-01','2025-01-01','finished','{}')")
        con.execute("INSERT INTO scores VALUES ('r1','ifeval','acc',0.5,NULL,2,true,'{}')")
        con.execute("INSERT INTO examples VALUES ('r1','ifeval','acc','a',1.0,'p','t'), ('r1','ifeval','acc','b',0.0,'','')")
    board = Leaderboard(path)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        history = con.execute("SELECT version, applied_at IS NOT NULL FROM migrations ORDER BY version").fetchall()
        assert history == [(1, False)] + [(v, True) for v in range(2, SCHEMA_VERSION + 1)]
        indexes = con.execute("SELECT index_name FROM duckdb_indexes() WHERE table_name='examples'").fetchall()
        assert indexes == [("examples_run",)]
    assert list(board.runs().run_id) == ["r1"]
    assert board.table().ifeval.tolist() == [0.5]
    assert run_query(board, "SELECT count(*) AS n FROM examples").n.tolist() == [2]
    board.record(run("r2", "none"), results([1.0], [0.0]))  # and it takes new rows
    assert sorted(board.runs().run_id) == ["r1", "r2"]


def test_a_v3_file_migrates_its_runs_extra_into_typed_columns(tmp_path):
    path = tmp_path / "v3.duckdb"
    extra = {"domain": "gsm8k", "generation_backend": "vllm", "mix": {"size": 8, "profile": {"n": 2}},
             "sweep": {"parameter": "mix.size", "value": 8, "recipe": "none"}, "command": "run"}
    with duckdb.connect(str(path)) as con:  # what forgetbench wrote at schema v3
        for step in (1, 2, 3):
            schema.MIGRATIONS[step](con)
        con.execute("INSERT INTO meta VALUES ('application', ?), ('schema_version', '3')", [schema.APPLICATION])
        con.execute("INSERT INTO runs VALUES ('r1','s','none@mix.size=8','{}',0,'m','b','ck','mx','c','ft','e','{}',"
                    "'{}','2025-01-01','2025-01-01','finished',?)", [json.dumps(extra)])
        con.execute("INSERT INTO runs VALUES ('r0','s','baseline','{}',0,'m','b','b',NULL,'c',NULL,'e','{}','{}',"
                    "'2025-01-01','2025-01-01','finished','{\"domain\": \"gsm8k\"}')")
    Leaderboard(path)  # opening it migrates it
    with duckdb.connect(str(path), read_only=True) as con:
        columns = [r[0] for r in con.execute("DESCRIBE runs").fetchall()]
        rows = con.execute("SELECT run_id, domain, generation_backend, mix, sweep_parameter, sweep_value, sweep_recipe, "
                           "extra FROM runs ORDER BY run_id").fetchall()
    assert "status" not in columns
    assert rows[0] == ("r0", "gsm8k", None, None, None, None, None, "{}")
    assert rows[1][:3] == ("r1", "gsm8k", "vllm") and json.loads(rows[1][3]) == extra["mix"]
    assert rows[1][4:7] == ("mix.size", "8", "none") and json.loads(rows[1][7]) == {"command": "run"}


def test_a_v4_file_moves_runs_of_nested_recipes_to_their_short_labels_and_run_ids(tmp_path):
    """A run recorded under the old repr label keeps every row, under the label and run id a rerun of its
    study now gives it (so the rerun finds it instead of adding a second copy)."""
    from harness.hashing import hash_json, short

    path = tmp_path / "v4.duckdb"
    old = "compose:{'name': 'sdft-rewrite', 'params': {'max_new_tokens': 96, 'rewrite_share': 0.5}},public:alpaca"
    with duckdb.connect(str(path)) as con:  # what forgetbench wrote at schema v4
        for step in (1, 2, 3, 4):
            schema.MIGRATIONS[step](con)
        con.execute("INSERT INTO meta VALUES ('application', ?), ('schema_version', '4')", [schema.APPLICATION])
        con.execute("INSERT INTO runs (run_id, study, recipe, recipe_params, seed, base_model, base_model_sha, "
                    "checkpoint_sha, mix_sha, config_hash, finetune_config_hash, eval_config_hash, data_hashes, "
                    "package_versions, started_at, finished_at, extra) VALUES ('ref-old-s0-1', 'ref', ?, '{\"p\": 1}', 0, "
                    "'m', 'b', 'ck', 'mx', 'c', 'ft', 'e', '{}', '{}', 't0', 't1', '{}')", [old])
        con.execute("INSERT INTO scores VALUES ('ref-old-s0-1', 'arc', 'acc', 0.5, NULL, 3, true, '{}')")
        con.execute("INSERT INTO examples VALUES ('ref-old-s0-1', 'arc', 'acc', 'e1', 1.0, 'p', 't')")
    Leaderboard(path)  # opening it migrates it
    label = "compose:sdft-rewrite:96,0.5+public:alpaca"
    identity = {"study": "ref", "recipe": label, "params": {"p": 1}, "seed": 0, "mix": "mx", "finetune": "ft",
                "model": "ck", "eval": "e"}
    run_id = f"ref-{label}-s0-{short(hash_json(identity), 8)}"  # as harness.study names the run
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT run_id, recipe FROM runs").fetchall() == [(run_id, label)]
        assert con.execute("SELECT DISTINCT run_id FROM scores UNION ALL SELECT DISTINCT run_id FROM examples"
                           ).fetchall() == [(run_id,), (run_id,)]


# -- 2. views --------------------------------------------------------------------------------------

def test_paper_table_has_one_row_per_recipe_with_mean_and_std_over_seeds(demo_board):
    table = paper_table(demo_board, "demo")
    assert table.recipe.tolist() == ["baseline", EVIL, "none", "public:alpaca"]
    row = table.set_index("recipe").loc["none"]
    assert row.runs == 2
    assert row.ifeval == pytest.approx(0.5125) and row.ifeval_std == pytest.approx(np.std([0.5, 0.525], ddof=1))
    assert row.ifeval_lb == pytest.approx(51.25)  # leaderboard points: 100 x mean(prompt, inst strict acc)
    assert row["avg(ifeval)"] == pytest.approx(51.25)
    assert row.avg_delta == pytest.approx(51.25 - 75.0)
    assert row.domain_gain == pytest.approx(0.75 - 0.25) and row.domain_gain_std == pytest.approx(0)
    assert list(table.columns[:5]) == ["study", "recipe", "runs", "ifeval", "ifeval_std"]
    only = paper_table(demo_board, "demo", ["domain"])
    assert "ifeval" not in only.columns and "domain_gain" in only.columns


def test_leaderboard_command_prints_the_paper_table_in_every_format(demo_board, capsys):
    path = str(demo_board.path)
    assert main(["leaderboard", "--leaderboard", path, "--study", "demo"]) == 0
    out = capsys.readouterr().out
    assert "0.5125 ± 0.0177" in out and "avg(ifeval)" in out
    assert main(["leaderboard", "--leaderboard", path, "--format", "md", "--benchmarks", "ifeval"]) == 0
    assert capsys.readouterr().out.startswith("| study | recipe | runs | ifeval |")
    assert main(["leaderboard", "--leaderboard", path, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert records[0]["recipe"] == "baseline" and "ifeval_std" in records[0]
    assert main(["leaderboard", "--leaderboard", path, "--format", "csv", "--view", "deltas"]) == 0
    assert main(["leaderboard", "--leaderboard", path, "--benchmarks", "mmlu"]) == 2
    assert "--benchmarks: no scores of 'mmlu'; present: domain, ifeval" in capsys.readouterr().err


def _leaderboard_run(board, run_id, recipe, raw, settings=None):
    metric = {"mmlu_pro": "acc", "gpqa": "acc_norm", "math_l5": "exact_match"}
    results = [BenchmarkResult(b, metric[b], [Score(metric[b], raw[b], None, 10)], [], settings.get(b, {}) if settings
                               else {}) for b in metric]
    results.append(BenchmarkResult("ifeval", "prompt_level_strict_acc",
                                   [Score("prompt_level_strict_acc", raw["ifeval"][0], None, 10),
                                    Score("inst_level_strict_acc", raw["ifeval"][1], None, 10)], []))
    board.record(run(run_id, recipe, study="t1"), results)


def test_paper_average_reproduces_seed_000_table_1_from_leaderboard_normalised_scores(tmp_path):
    """Seed 000 Table 1: MMLU-Pro 46.74, GPQA 4.92, IFEval 80.99, MATH-L5 23.34 -> average 39.00. The
    raw scores below are those leaderboard scores undone: MMLU-Pro raw = 0.1 + 0.9 x 46.74 %, GPQA raw =
    0.25 + 0.75 x 4.92 %, IFEval prompt/inst strict accuracies whose mean is 80.99 %, MATH raw = 23.34 %."""
    board = Leaderboard(tmp_path / "t1.duckdb")
    table_1 = {"mmlu_pro": 0.1 + 0.9 * 0.4674, "gpqa": 0.25 + 0.75 * 0.0492, "ifeval": (0.7900, 0.8298),
               "math_l5": 0.2334}
    _leaderboard_run(board, "base", "baseline", table_1, {"mmlu_pro": {"num_fewshot": 0, "fewshot_note": "no "
                     "validation split"}, "gpqa": {"subsets": ["diamond"]}})
    # below chance on GPQA: the leaderboard clips at 0 rather than going negative
    _leaderboard_run(board, "ft", "none", {**table_1, "gpqa": 0.20, "math_l5": 0.2})
    table = paper_table(board, "t1").set_index("recipe")
    base, ft = table.loc["baseline"], table.loc["none"]
    label = "avg(mmlu_pro,gpqa,ifeval,math_l5)"
    assert [round(base[f"{b}_lb"], 2) for b in ("mmlu_pro", "gpqa", "ifeval", "math_l5")] == [46.74, 4.92, 80.99, 23.34]
    assert round(base[label], 2) == 39.00
    assert base.mmlu_pro == pytest.approx(table_1["mmlu_pro"])  # the raw score stays beside it
    assert ft.gpqa_lb == 0.0 and ft[label] == pytest.approx((46.74 + 0 + 80.99 + 20.0) / 4)
    assert ft.avg_delta == pytest.approx(ft[label] - base[label])
    assert base.lb_notes == "gpqa: diamond; mmlu_pro: 0-shot (no validation split)"


# -- 3. compare ------------------------------------------------------------------------------------

def test_bootstrap_on_constructed_differences_gives_the_known_answers():
    low, high, p = paired_bootstrap(np.zeros(50), resamples=2000)
    assert (low, high, p) == (0.0, 0.0, 1.0)  # identical runs: no difference at all
    low, high, p = paired_bootstrap(np.ones(60), resamples=2000)
    assert (low, high) == (1.0, 1.0) and p == pytest.approx(1 / 2001)  # every pair better: smallest p
    rng = np.random.default_rng(1)
    for shift in (0.0, 0.3):  # the bootstrap agrees with the paired t-test on normal differences
        diffs = rng.normal(shift, 1.0, 400)
        low, high, p = paired_bootstrap(diffs, resamples=20000)
        se = diffs.std(ddof=1) / np.sqrt(len(diffs))
        normal_p = math.erfc(abs(diffs.mean() / se) / math.sqrt(2))  # the t-test's p at n = 400
        assert p == pytest.approx(normal_p, abs=0.02)
        half = 1.96 * se
        assert low == pytest.approx(diffs.mean() - half, abs=0.02) and high == pytest.approx(diffs.mean() + half, abs=0.02)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_compare_pairs_examples_and_flags_only_the_real_difference(demo_board, capsys):
    out = compare(demo_board, "base", "none-0", resamples=4000).set_index("benchmark")
    assert out.loc["ifeval"].n == N and out.loc["ifeval"]["diff"] == pytest.approx(-0.25)
    # examples 20..29 passed for base and fail for none-0; everything else agrees: 10 discordant pairs
    assert out.loc["ifeval"].p_value < 0.01 and out.loc["ifeval"].significant
    assert out.loc["ifeval"].ci_high < 0
    assert out.loc["domain"]["diff"] == pytest.approx(0.5) and out.loc["domain"].significant
    same = compare(demo_board, "base", EVIL, resamples=1000).set_index("benchmark")
    assert same.p_value.tolist() == [1.0, 1.0] and not same.significant.any()
    # recipe names: each side is the per-example mean over its seeds
    recipes = compare(demo_board, "none", "public:alpaca", study="demo", resamples=1000).set_index("benchmark")
    assert recipes.loc["ifeval"]["diff"] == pytest.approx(0.7375 - 0.5125)
    assert main(["compare", "none", "public:alpaca", "--leaderboard", str(demo_board.path), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("benchmark,metric,n,a_mean,b_mean,diff,ci_low,ci_high,p_value,p_holm,significant")
    assert main(["compare", "base", "nobody", "--leaderboard", str(demo_board.path)]) == 2
    assert "RUN_B: 'nobody' is neither a run_id nor a recipe" in capsys.readouterr().err


def test_compare_takes_a_recipes_name_without_its_parameters_where_one_label_has_it(demo_board, capsys):
    for seed in (0, 1):  # labelled as studies label them: name:parameters
        demo_board.record(run(f"rs-{seed}", "reconstructed-single:48,64", seed),
                          results([1.0] * 25 + [0.0] * 15, [1.0] * 20 + [0.0] * 20))
    by_name = compare(demo_board, "baseline", "reconstructed-single", study="demo", resamples=500)
    by_label = compare(demo_board, "baseline", "reconstructed-single:48,64", study="demo", resamples=500)
    pd.testing.assert_frame_equal(by_name, by_label)
    demo_board.record(run("rs-other", "reconstructed-single:16,16", 0), results([1.0] * 40, [1.0] * 40))
    assert main(["compare", "baseline", "reconstructed-single", "--leaderboard", str(demo_board.path)]) == 2
    assert ("RUN_B: 'reconstructed-single' names several recipes (reconstructed-single:16,16, "
            "reconstructed-single:48,64); give one of them") in capsys.readouterr().err


def _with_settings(board, run_id, ifeval_settings, backend="transformers"):
    """Record a run whose IFEval scores carry these evaluation settings (domain's stay fixed)."""
    record = run(run_id, "r-" + run_id)
    record.generation_backend = backend
    out = results([1.0] * 20 + [0.0] * 20, [1.0] * 10 + [0.0] * 30)
    out[0].settings = {"limit": 40, "subset_seed": 1234, "data_sha256": "abc", **ifeval_settings}
    out[1].settings = {"limit": 40, "max_new_tokens": 32}
    board.record(record, out)


def test_compare_refuses_runs_evaluated_with_different_settings_naming_the_setting(tmp_path, capsys):
    board = Leaderboard(tmp_path / "lb.duckdb")
    _with_settings(board, "a", {"max_new_tokens": 512, "wall_seconds": 30.0})
    _with_settings(board, "same", {"max_new_tokens": 512, "wall_seconds": 95.5})  # only the cost differs
    # outcomes recorded beside the settings, nested ones too (GPQA's per-subset records, the LC fit's state)
    _with_settings(board, "pooled-a", {"subset_scores": {"main": 0.3}, "subset_settings": {"main": {"seconds": 4.0}},
                                       "lc_not_fitted": False, "lc_cv_splits": 5})
    _with_settings(board, "pooled-b", {"subset_scores": {"main": 0.4}, "subset_settings": {"main": {"seconds": 9.0}},
                                       "lc_not_fitted": True, "lc_cv_splits": 0})
    assert len(compare(board, "pooled-a", "pooled-b", resamples=200)) == 2
    _with_settings(board, "long", {"max_new_tokens": 1280, "wall_seconds": 30.0})
    _with_settings(board, "vllm", {"max_new_tokens": 512}, backend="vllm")
    assert len(compare(board, "a", "same", resamples=200)) == 2
    with pytest.raises(ForgetbenchError, match=r"ifeval max_new_tokens: 512 \(a\) vs 1280 \(long\); pass --allow-mismatch"):
        compare(board, "a", "long", resamples=200)
    different = r"run.generation_backend: \"transformers\" \(a\) vs \"vllm\" \(vllm\) \(and 1 more\)"
    with pytest.raises(ForgetbenchError, match=different):
        compare(board, "a", "vllm", resamples=200)
    # a setting of a benchmark that is not compared is not checked
    assert compare(board, "a", "long", resamples=200, benchmarks=["domain"]).benchmark.tolist() == ["domain"]
    assert main(["compare", "a", "long", "--leaderboard", str(board.path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("forgetbench: error: RUN_A/RUN_B: evaluated with different settings, ifeval max_new_tokens")


def test_compare_with_allow_mismatch_pairs_and_says_what_differs(tmp_path, capsys):
    board = Leaderboard(tmp_path / "lb.duckdb")
    _with_settings(board, "a", {"max_new_tokens": 512})
    _with_settings(board, "long", {"max_new_tokens": 1280})
    out = compare(board, "a", "long", resamples=200, allow_mismatch=True).set_index("benchmark")
    assert out.loc["ifeval"].mismatched_settings == "max_new_tokens" and out.loc["domain"].mismatched_settings == ""
    assert main(["compare", "a", "long", "--leaderboard", str(board.path), "--allow-mismatch"]) == 0
    printed = capsys.readouterr().out
    assert "mismatched_settings" in printed
    assert printed.rstrip().splitlines()[-1] == ("--allow-mismatch: paired despite differing settings: "
                                                 "ifeval max_new_tokens: 512 (a) vs 1280 (long)")
    assert main(["compare", "a", "long", "--leaderboard", str(board.path), "--allow-mismatch", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].endswith(",significant,mismatched_settings") and "--allow-mismatch" in captured.err


# -- query and export ------------------------------------------------------------------------------

@pytest.mark.parametrize("sql", [
    "INSERT INTO runs SELECT * FROM runs", "DROP TABLE examples", "DELETE FROM scores",
    "ATTACH '{dir}/x.duckdb' AS x", "COPY runs TO '{dir}/x.csv'", "SET enable_external_access = true",
    "CREATE TABLE t (a INT)",
])
def test_query_refuses_every_write_with_one_line(demo_board, capsys, sql):
    before = run_query(demo_board, "SELECT count(*) AS n FROM examples").n[0]
    assert main(["query", sql.format(dir=demo_board.path.parent), "--leaderboard", str(demo_board.path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("forgetbench: error: query: ") and "\n" not in err
    assert run_query(demo_board, "SELECT count(*) AS n FROM examples").n[0] == before
    assert not list(demo_board.path.parent.glob("x.*"))


def test_query_runs_select_and_export_writes_parquet(demo_board, tmp_path, capsys):
    assert main(["query", "SELECT recipe, count(*) AS n FROM runs GROUP BY recipe ORDER BY recipe",
                 "--leaderboard", str(demo_board.path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0] == {"recipe": EVIL, "n": 1}
    assert main(["export", "--out", str(tmp_path / "pq"), "--leaderboard", str(demo_board.path)]) == 0
    assert len(pd.read_parquet(tmp_path / "pq" / "examples.parquet")) == 6 * 2 * N
    assert list(pd.read_parquet(tmp_path / "pq" / "shift_measures.parquet").columns) == [
        "run_id", "measure", "part", "value", "n"]
    assert main(["leaderboard", "--leaderboard", str(demo_board.path), "--study", "demo",
                 "--export", str(tmp_path / "pq2")]) == 0
    assert len(pd.read_parquet(tmp_path / "pq2" / "runs.parquet")) == 6


# The HTML report's tests, headless Chromium included, are in tests/test_report.py.


def test_the_paper_view_places_benchmarks_by_their_registered_group_and_unknown_ones_among_the_others(tmp_path):
    """Groups and the average come from the benchmark registry: a side benchmark sits before the others,
    an lm_eval task (general, no leaderboard normalisation) and a benchmark no installed package
    registers (an old row) sit among the others, and neither enters the average."""
    def bench(name, value):
        return BenchmarkResult(benchmark=name, primary_metric="acc", scores=[Score("acc", value, None, 4)],
                               examples=[ExampleResult(f"{name}-0", "acc", value)])

    board = Leaderboard(tmp_path / "groups.duckdb")
    extra = [bench("retired_plugin", 0.3), bench("lm_eval:hellaswag", 0.4), bench("safety_raw", 0.9)]
    board.record(run("base", "baseline"), results([1.0, 0.0], [1.0, 0.0]) + extra)
    table = paper_table(board)
    columns = [c for c in table.columns if not c.endswith("_std")]
    assert columns == ["study", "recipe", "runs", "ifeval", "ifeval_lb", "avg(ifeval)", "avg_delta", "lb_notes",
                       "safety_raw", "lm_eval:hellaswag", "retired_plugin", "domain", "domain_gain"]
    assert table.loc[0, "avg(ifeval)"] == table.loc[0, "ifeval_lb"]  # only the averaged benchmark counts
