"""The DuckDB leaderboard: atomic, idempotent, multi-process-safe recording; deltas; rendering."""
from __future__ import annotations

import json
import multiprocessing
import threading

import duckdb
import pandas as pd
import pytest

from harness.errors import ForgetbenchError
from harness.results import BenchmarkResult, ExampleResult, RunRecord, Score
from leaderboard import FORMATS, SCHEMA_VERSION, Leaderboard, render, rows


def make_run(run_id: str, recipe: str = "public:alpaca", *, seed: int = 0, study: str = "s1",
             base_model_sha: str = "base-1", eval_config_hash: str = "eval-1",
             finished_at: str = "2025-01-01T12:00:00+00:00") -> RunRecord:
    return RunRecord(
        run_id=run_id, study=study, recipe=recipe, recipe_params={"share": 0.5, "source": "alpaca"},
        seed=seed, base_model="smollm2-135m-instruct", base_model_sha=base_model_sha,
        checkpoint_sha=f"ckpt-{run_id}", mix_sha=None if recipe == "baseline" else f"mix-{run_id}",
        config_hash="cfg-1", finetune_config_hash=None if recipe == "baseline" else "ft-1",
        eval_config_hash=eval_config_hash, data_hashes={"domain": "d1"},
        package_versions={"duckdb": duckdb.__version__}, started_at="2025-01-01T11:00:00+00:00",
        finished_at=finished_at, domain="medmcqa", generation_backend="transformers",
    )


def make_results(arc: float, gsm: float, *, n_examples: int = 3) -> list[BenchmarkResult]:
    """Two benchmarks; arc has a secondary metric (acc_norm = acc + 0.05) to check primary filtering."""
    return [
        BenchmarkResult(
            benchmark="arc", primary_metric="acc",
            scores=[Score("acc", arc, 0.01, n_examples), Score("acc_norm", arc + 0.05, None, n_examples)],
            examples=[ExampleResult(f"arc-{i}", "acc", float(i % 2), prediction="A|B\nC", target="A")
                      for i in range(n_examples)],
            settings={"num_fewshot": 0},
        ),
        BenchmarkResult(
            benchmark="gsm", primary_metric="exact_match",
            scores=[Score("exact_match", gsm, 0.02, n_examples)],
            examples=[ExampleResult(f"gsm-{i}", "exact_match", 1.0) for i in range(n_examples)],
        ),
    ]


def counts(path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("runs", "scores", "examples")}


@pytest.fixture
def board(tmp_path) -> Leaderboard:
    return Leaderboard(tmp_path / "board.duckdb")


def test_baseline_and_two_recipes_give_runs_scores_examples_and_deltas_against_the_baseline(board):
    board.record(make_run("base", "baseline"), make_results(arc=0.50, gsm=0.30))
    board.record(make_run("a", "public:alpaca"), make_results(arc=0.45, gsm=0.60))
    board.record(make_run("b", "self:regen", seed=1), make_results(arc=0.52, gsm=0.40))

    assert counts(board.path) == {"runs": 3, "scores": 9, "examples": 18}
    runs = board.runs()
    assert list(runs.run_id) == ["base", "a", "b"]  # baseline first, then by recipe
    assert json.loads(runs.recipe_params[0]) == {"share": 0.5, "source": "alpaca"}
    assert board.find_baseline("base-1", "eval-1") == "base"
    assert board.find_baseline("base-1", "other") is None

    deltas = board.deltas()
    assert set(deltas.columns) >= {"run_id", "study", "recipe", "seed", "benchmark", "metric", "is_primary",
                                   "value", "baseline_value", "delta", "baseline_run_id"}
    got = {(r.run_id, r.benchmark): (r.value, r.baseline_value, r.delta) for r in deltas.itertuples()}
    assert got == {
        ("a", "arc"): pytest.approx((0.45, 0.50, -0.05)),
        ("a", "gsm"): pytest.approx((0.60, 0.30, 0.30)),
        ("b", "arc"): pytest.approx((0.52, 0.50, 0.02)),
        ("b", "gsm"): pytest.approx((0.40, 0.30, 0.10)),
    }
    assert set(deltas.baseline_run_id) == {"base"}
    all_metrics = board.deltas(primary_only=False)
    norm = all_metrics[(all_metrics.run_id == "a") & (all_metrics.metric == "acc_norm")]
    assert norm.delta.iloc[0] == pytest.approx(-0.05)

    table = board.table()
    assert list(table.columns) == ["run_id", "study", "recipe", "seed", "finished_at", "arc", "gsm"]
    assert table.set_index("run_id").loc["b", "gsm"] == pytest.approx(0.40)


def test_deltas_use_the_latest_finished_baseline(board):
    board.record(make_run("old", "baseline", finished_at="2025-01-01T10:00:00+00:00"), make_results(0.1, 0.1))
    board.record(make_run("new", "baseline", finished_at="2025-01-02T10:00:00+00:00"), make_results(0.2, 0.2))
    board.record(make_run("a"), make_results(0.5, 0.5))
    assert board.find_baseline("base-1", "eval-1") == "new"
    assert set(board.deltas().baseline_run_id) == {"new"}
    assert board.deltas().delta.tolist() == pytest.approx([0.3, 0.3])


def test_a_failure_in_the_middle_of_record_leaves_no_rows_of_that_run(board, monkeypatch):
    board.record(make_run("base", "baseline"), make_results(0.5, 0.3))
    before = counts(board.path)
    real_insert = rows.insert_frame

    def failing_insert(con, table, frame):
        if table == "examples":  # runs and scores rows are already written in the transaction
            raise RuntimeError("disk full (simulated)")
        real_insert(con, table, frame)

    monkeypatch.setattr(rows, "insert_frame", failing_insert)
    with pytest.raises(RuntimeError, match="simulated"):
        board.record(make_run("a"), make_results(0.4, 0.6))
    assert counts(board.path) == before
    # a failed re-record keeps the earlier record of that run intact
    with pytest.raises(RuntimeError, match="simulated"):
        board.record(make_run("base", "baseline"), make_results(0.9, 0.9))
    assert counts(board.path) == before
    assert board.table().set_index("run_id").loc["base", "arc"] == pytest.approx(0.5)


def test_re_recording_a_run_id_replaces_its_rows_without_duplicates(board):
    board.record(make_run("a"), make_results(0.4, 0.6, n_examples=5))
    board.record(make_run("a", seed=7), make_results(0.1, 0.2, n_examples=3))
    assert counts(board.path) == {"runs": 1, "scores": 3, "examples": 6}
    row = board.table().iloc[0]
    assert (row.seed, row.arc, row.gsm) == (7, pytest.approx(0.1), pytest.approx(0.2))


def test_a_re_record_with_the_same_scores_keeps_when_the_run_was_produced(board):
    board.record(make_run("a"), make_results(0.4, 0.6))
    board.record(make_run("a", finished_at="2025-02-01T12:00:00+00:00"), make_results(0.4, 0.6))
    assert str(board.runs().finished_at.iloc[0]).startswith("2025-01-01")
    board.record(make_run("a", finished_at="2025-03-01T12:00:00+00:00"), make_results(0.5, 0.6))
    assert str(board.runs().finished_at.iloc[0]).startswith("2025-03-01")


def test_invalid_results_are_refused_before_anything_is_written(board):
    duplicated = make_results(0.4, 0.6)
    duplicated[1].examples.append(ExampleResult("gsm-0", "exact_match", 0.0))
    with pytest.raises(ForgetbenchError, match="run a, benchmark gsm: an example_id appears twice"):
        board.record(make_run("a"), duplicated)
    no_primary = make_results(0.4, 0.6)
    no_primary[0].primary_metric = "f1"
    with pytest.raises(ForgetbenchError, match="primary metric 'f1' has no score"):
        board.record(make_run("a"), no_primary)
    assert counts(board.path) == {"runs": 0, "scores": 0, "examples": 0}


def test_a_run_whose_baseline_has_another_eval_config_gets_no_delta(board):
    board.record(make_run("base", "baseline", eval_config_hash="eval-1"), make_results(0.5, 0.3))
    board.record(make_run("a", eval_config_hash="eval-2"), make_results(0.4, 0.6))
    board.record(make_run("b", eval_config_hash="eval-1"), make_results(0.6, 0.6))
    deltas = board.deltas().set_index(["run_id", "benchmark"])
    assert deltas.loc[("a", "arc"), "delta"] != deltas.loc[("a", "arc"), "delta"]  # NaN: no baseline
    assert deltas.loc["a"].baseline_value.isna().all() and deltas.loc["a"].baseline_run_id.isna().all()
    assert deltas.loc[("b", "arc"), "delta"] == pytest.approx(0.1)


# -- several processes ---------------------------------------------------------------------------

def _record_many(path: str, prefix: str, count: int, start) -> None:
    start.wait(30)
    board = Leaderboard(path, lock_timeout=60)
    for i in range(count):
        board.record(make_run(f"{prefix}-{i}", seed=i, study=prefix), make_results(i / 100, 1 - i / 100))


def _hold_file(path: str, held, release) -> None:
    con = duckdb.connect(path)
    held.set()
    release.wait(30)
    con.close()


def test_two_processes_recording_20_runs_each_into_one_file_lose_no_row(tmp_path):
    path = str(tmp_path / "board.duckdb")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers = [ctx.Process(target=_record_many, args=(path, p, 20, start)) for p in ("p1", "p2")]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert counts(path) == {"runs": 40, "scores": 120, "examples": 240}
    table = Leaderboard(path).table()
    assert sorted(table.study.value_counts().items()) == [("p1", 20), ("p2", 20)]


def test_a_writer_waits_for_another_process_then_times_out_naming_the_file(tmp_path, caplog):
    path = tmp_path / "board.duckdb"
    board = Leaderboard(path, lock_timeout=0.5)
    ctx = multiprocessing.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_file, args=(str(path), held, release))
    holder.start()
    try:
        assert held.wait(30)
        with pytest.raises(ForgetbenchError, match=f"leaderboard {path}: still locked by another process "
                                                   f"\\(PID {holder.pid}: .*python"):
            board.record(make_run("a"), make_results(0.4, 0.6))
        waiting = [r.getMessage() for r in caplog.records if "waiting up to" in r.getMessage()]
        assert len(waiting) == 1  # said once, naming the holder, not once per retry
        assert waiting[0].startswith(f"leaderboard {path} is locked by another process (PID {holder.pid}: ")
        assert "python" in waiting[0] and waiting[0].endswith("; waiting up to 0.5s for it")
        with pytest.raises(ForgetbenchError, match="still locked"):
            board.runs()  # readers wait too: DuckDB refuses even read-only opens while a writer holds it
        board.lock_timeout = 30
        threading.Timer(0.5, release.set).start()
        board.record(make_run("a"), make_results(0.4, 0.6))  # waits for the holder, then lands
    finally:
        release.set()
        holder.join(30)
    assert counts(path)["runs"] == 1


# -- files that are not ours -----------------------------------------------------------------------

def test_opening_a_file_that_is_not_a_leaderboard_names_the_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    with pytest.raises(ForgetbenchError, match=f"{text}: not a forgetbench leaderboard"):
        Leaderboard(text)
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE things (a INT)")
    with pytest.raises(ForgetbenchError, match=f"{other}: not a forgetbench leaderboard"):
        Leaderboard(other)


def test_a_leaderboard_with_a_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "board.duckdb"
    Leaderboard(path)
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    with pytest.raises(ForgetbenchError, match=f"{path}: leaderboard schema_version {SCHEMA_VERSION + 1} is newer"):
        Leaderboard(path)
    Leaderboard(tmp_path / "fresh.duckdb")  # and a fresh one is created at the current version
    with duckdb.connect(str(tmp_path / "fresh.duckdb"), read_only=True) as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)


# -- rendering -------------------------------------------------------------------------------------

@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "recipe": ["baseline", "public:alpaca"],
        "seed": [0, 1],
        "arc": [0.5, 0.123456],
        "note": ["a|b", None],
    })


def test_render_table_aligns_columns_and_rounds_floats_to_4_decimals(frame):
    lines = render(frame, "table").splitlines()
    assert lines[0].split() == ["recipe", "seed", "arc", "note"]
    assert lines[2].split() == ["baseline", "0", "0.5000", "a|b"]
    assert lines[3].split() == ["public:alpaca", "1", "0.1235", "-"]
    assert lines[2].index("0.5000") == lines[3].index("0.1235")  # numbers right-aligned
    assert len({len(line.rstrip()) for line in lines[:2]}) == 1


def test_render_csv_json_and_markdown(frame):
    assert render(frame, "csv").splitlines() == [
        "recipe,seed,arc,note", "baseline,0,0.5,a|b", "public:alpaca,1,0.123456,"]
    assert json.loads(render(frame, "json")) == [
        {"recipe": "baseline", "seed": 0, "arc": 0.5, "note": "a|b"},
        {"recipe": "public:alpaca", "seed": 1, "arc": 0.123456, "note": None},
    ]
    assert render(frame, "markdown").splitlines() == [
        "| recipe | seed | arc | note |",
        "| --- | ---: | ---: | --- |",
        "| baseline | 0 | 0.5000 | a\\|b |",
        "| public:alpaca | 1 | 0.1235 | - |",
    ]


def test_render_of_leaderboard_frames_and_empty_frames(board):
    board.record(make_run("a"), make_results(0.4, 0.6))
    for fmt in FORMATS:
        assert "public:alpaca" in render(board.deltas(), fmt)
        render(board.runs(), fmt)
        render(board.table(study="nobody"), fmt)


def test_render_unknown_format_names_the_option_and_the_choices(frame):
    with pytest.raises(ForgetbenchError, match="--format: unknown format 'xml'; choose one of table, csv, json, markdown"):
        render(frame, "xml")


def test_the_leaderboard_works_beside_another_connection_of_the_same_process(board):
    with duckdb.connect(str(board.path)) as own:  # e.g. a report running its own SQL
        board.record(make_run("a"), make_results(0.4, 0.6))
        assert list(board.runs().run_id) == ["a"]
        assert own.execute("SELECT count(*) FROM scores").fetchone() == (3,)
