"""Opt-in benchmark (FORGETBENCH_BIG_BENCH=1): 1,000,000 score rows and 10,000,000 example rows;
the paper table and a compare of two runs. Built with SQL in ~a minute; goal: compare < 200 ms."""
from __future__ import annotations

import os

import duckdb
import pytest

from leaderboard import Leaderboard
from leaderboard.compare import compare
from leaderboard.views import paper_table

pytestmark = pytest.mark.skipif(os.environ.get("FORGETBENCH_BIG_BENCH") != "1",
                                reason="big benchmark: set FORGETBENCH_BIG_BENCH=1 (builds 11M rows)")

RUNS, BENCHMARKS, METRICS, EXAMPLES = 10_000, 10, 10, 100  # 10k runs x 100 scores, x 1000 examples


@pytest.fixture(scope="module")
def big_board(tmp_path_factory) -> Leaderboard:
    board = Leaderboard(tmp_path_factory.mktemp("big") / "big.duckdb")
    with duckdb.connect(str(board.path)) as con:
        con.execute(f"""
            INSERT INTO runs SELECT 'r' || i, 'study' || (i % 10), CASE WHEN i < 10 THEN 'baseline'
                   ELSE 'recipe' || (i % 50) END, '{{}}', i // 500, 'm', 'base' || (i % 10), 'ck', NULL, 'c', NULL,
                   'e', '{{}}', '{{}}', '2025-01-01', '2025-01-01', 'finished', '{{}}'
            FROM range({RUNS}) t(i)""")
        con.execute(f"""
            INSERT INTO scores SELECT 'r' || i, 'b' || b, 'm' || m, random(), NULL, {EXAMPLES}, m = 0, '{{}}'
            FROM range({RUNS}) t(i), range({BENCHMARKS}) u(b), range({METRICS}) v(m)""")
        con.execute(f"""
            INSERT INTO examples SELECT 'r' || i, 'b' || b, 'm0', 'x' || x, (hash(i, b, x) % 2)::DOUBLE, '', ''
            FROM range({RUNS}) t(i), range({BENCHMARKS}) u(b), range({EXAMPLES}) w(x)""")
        assert con.execute("SELECT count(*) FROM scores").fetchone()[0] == 1_000_000
        assert con.execute("SELECT count(*) FROM examples").fetchone()[0] == 10_000_000
    return board


def test_bench_paper_table_over_1m_scores(benchmark, big_board):
    table = benchmark(paper_table, big_board)
    assert len(table) == 60  # 50 recipes (each in one study) + one baseline per study


def test_bench_compare_two_runs_over_10m_examples(benchmark, big_board):
    result = benchmark(compare, big_board, "r5000", "r7777")  # 10,000 resamples
    assert len(result) == BENCHMARKS and (result.n == EXAMPLES).all()
