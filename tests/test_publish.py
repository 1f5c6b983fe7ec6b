"""What a newcomer sees without knowing the commands: the demo's closing summary (paper view, then the
seed model against `none` and against the recipe that forgot least, each exactly as its command prints
it) and `forgetbench publish` (a study's results as a folder of Markdown, HTML and PNG files, written
whole or not at all)."""
from __future__ import annotations

import re

import pandas as pd
import pytest
import yaml
from conftest import record_study

from harness.cli import demo_summary, main
from harness.study_file import parse_study
from leaderboard.compare import compare
from leaderboard.publish import MARKER, best_recipe, comparison_sections, summary_sections
from leaderboard.render import render
from leaderboard.views import FORGETTING, paper_table

PNG = b"\x89PNG\r\n\x1a\n"
STUDY_RECIPES = ["none", "public:alpaca", "reconstructed-single", "sdft-rewrite"]  # record_study's, in its order


def study_config(name="med", recipes=STUDY_RECIPES) -> dict:
    return {"name": name, "base_model": "smollm2-135m-instruct", "domain": "medmcqa", "recipes": list(recipes),
            "eval": {"benchmarks": {"ifeval": {"limit": 80}, "domain": {"limit": 80}}}, "seeds": [0, 1]}


def printed(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_best_recipe_is_the_rehearsal_recipe_that_forgot_least(study_board):
    table = paper_table(study_board, "med")
    best, why = best_recipe(table)
    forgetting = dict(zip(table.recipe, table[FORGETTING]))
    # record_study's effects: sdft-rewrite loses least on IFEval + MMLU-Pro, none most
    assert best == "sdft-rewrite"
    assert forgetting["sdft-rewrite"] == max(v for r, v in forgetting.items() if r not in ("baseline", "none"))
    assert why == (f"least mean forgetting on the general benchmarks: avg_delta {forgetting['sdft-rewrite']:+.2f} "
                   f"leaderboard points on avg(mmlu_pro,ifeval) against the seed model, mean over 2 seeds; "
                   f"none: {forgetting['none']:+.2f}")


def test_best_recipe_skips_none_and_unpaired_recipes_and_breaks_ties_by_study_order():
    table = pd.DataFrame({"recipe": ["baseline", "none", "b", "a", "c", "none@lr=1"], "runs": [1, 2, 2, 2, 2, 2],
                          FORGETTING: [float("nan"), 0.5, -1.0, -1.0, float("nan"), 0.9]})
    assert best_recipe(table)[0] == "b"  # tie: the table's order
    assert best_recipe(table, ["a", "b", "c"])[0] == "a"  # tie: the study's order
    assert best_recipe(table[table.recipe.isin(["baseline", "none", "c"])]) == (
        None, "no rehearsal recipe (other than none and the baseline) has an average forgetting (avg_delta) "
              "against a seed-model run")
    assert best_recipe(table[table.recipe.isin(["baseline", "none"])]) == (
        None, "the study has no rehearsal recipe, only none and the baseline")
    assert best_recipe(table.drop(columns=FORGETTING))[0] is None


def test_demo_summary_is_the_paper_view_then_compare_of_none_and_of_the_best_recipe(study_board, capsys):
    path = str(study_board.path)
    text = demo_summary(study_board.path, parse_study(study_config(), "study.yaml"))
    headers = [line for line in text.splitlines() if line.startswith("== ")]
    assert headers == [
        "== Paper view of study med: one row per recipe, mean ± std over seeds — run: "
        f"forgetbench leaderboard --view paper --study med --leaderboard {path}",
        "== none (no rehearsal) against the seed model (B − A = none − baseline, per benchmark) — run: "
        f"forgetbench compare baseline none --study med --leaderboard {path}",
        f"== best recipe: sdft-rewrite ({best_recipe(paper_table(study_board, 'med'))[1]}), against the seed model"
        f" — run: forgetbench compare baseline sdft-rewrite --study med --leaderboard {path}",
    ]
    # each section's body is exactly what its command prints
    bodies = re.split(r"^== .*\n", text, flags=re.M)[1:]
    assert bodies[0] == printed(capsys, "leaderboard", "--view", "paper", "--study", "med", "--leaderboard", path) + "\n"
    assert bodies[1] == printed(capsys, "compare", "baseline", "none", "--study", "med", "--leaderboard", path) + "\n"
    assert bodies[2] == printed(capsys, "compare", "baseline", "sdft-rewrite", "--study", "med", "--leaderboard", path)
    assert "ci_low" in bodies[1] and "p_value" in bodies[2]


def test_demo_summary_names_the_baseline_by_run_id_where_the_study_has_none_of_its_own(tmp_path):
    board = record_study(tmp_path / "lb.duckdb", recipes=("none", "public:alpaca"), seeds=(0,), study="other")
    record_study(tmp_path / "lb.duckdb", recipes=("none", "public:alpaca"), seeds=(0,), baseline=False, prefix="b-")
    text = demo_summary(board.path, parse_study(study_config(), "study.yaml"))
    assert f"forgetbench compare base none --study med --leaderboard {board.path}" in text  # `base`: the run id
    assert "best recipe: public:alpaca (" in text
    assert "Not compared" not in text


def test_a_recipe_whose_seeds_pair_with_different_baselines_is_compared_run_by_run(tmp_path):
    board = record_study(tmp_path / "lb.duckdb", recipes=("none",), seeds=(0, 1))
    record_study(tmp_path / "lb.duckdb", recipes=(), prefix="x-")  # a second seed-model run, study med
    with board.connect(read_only=False) as con:  # evaluated another way: seed 1 pairs with it
        con.execute("UPDATE runs SET eval_config_hash = 'e2' WHERE run_id IN ('x-base', 'none-1')")
    sections = comparison_sections(board, "med", "none")
    assert [s.command for s in sections] == ["forgetbench compare base none-0 --study med",
                                             "forgetbench compare x-base none-1 --study med"]
    assert sections[1].body == render(compare(board, "x-base", "none-1"), "table")


def test_demo_summary_says_so_where_there_is_no_recipe_but_none(tmp_path):
    board = record_study(tmp_path / "lb.duckdb", recipes=("none",), seeds=(0,))
    text = demo_summary(board.path, parse_study(study_config(recipes=["none"]), "study.yaml"))
    assert text.endswith("== Best recipe against the seed model\nNo best recipe: the study has no rehearsal recipe, "
                         "only none and the baseline.\n")


def test_publish_writes_the_study_results_and_replaces_its_own_earlier_folder(study_board, tmp_path, capsys):
    out, path = tmp_path / "docs" / "results", str(study_board.path)
    study_file = tmp_path / "med.yaml"
    study_file.write_text(yaml.safe_dump(study_config(recipes=list(reversed(STUDY_RECIPES)))))
    argv = ["publish", "--study", "med", "--out", str(out), "--study-file", str(study_file), "--leaderboard", path]
    assert main(argv) == 0
    figures = ["deltas.png", "gain-vs-forgetting.png", "profiles.png", "shift-vs-forgetting.png"]
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "comparisons.md", "figures", "paper.md",
                                                     "report.html", "versions.md"]
    assert sorted(p.name for p in (out / "figures").iterdir()) == figures
    for name in figures:
        data = (out / "figures" / name).read_bytes()
        assert data[:8] == PNG and int.from_bytes(data[16:20], "big") > 600, name

    paper = (out / "paper.md").read_text()
    assert printed(capsys, "leaderboard", "--view", "paper", "--study", "med", "--leaderboard", path,
                   "--format", "md") in paper
    assert all(f"| med | {recipe} | 2 |" in paper for recipe in STUDY_RECIPES)

    comparisons = (out / "comparisons.md").read_text()
    positions = []
    for recipe in STUDY_RECIPES:
        command = f"`forgetbench compare baseline {recipe} --study med --leaderboard {path} --format md`"
        table = render(compare(study_board, "baseline", recipe, study="med"), "markdown")
        assert f"{command}\n\n{table}" in comparisons and "| ci_low | ci_high | p_value | p_holm |" in table
        positions.append(comparisons.index(command))
    assert positions == sorted(positions, reverse=True)  # the study file's order: sdft-rewrite first

    report = (out / "report.html").read_text()
    assert report.startswith("<!DOCTYPE html>") and 'id="chart-deltas"' in report
    versions = (out / "versions.md").read_text()
    assert re.search(r"^\| torch \| \S+ \| - \|$", versions, re.M) and "| vl-convert-python |" in versions

    readme = (out / "README.md").read_text()
    assert readme.startswith(MARKER + "\n")
    assert f"forgetbench run {study_file} --leaderboard {path}\nforgetbench {' '.join(argv)}\n" in readme
    assert all(f"| `{name}` |" in readme for name in ["paper.md", "comparisons.md", "report.html", "versions.md",
                                                        *(f"figures/{f}" for f in figures)])
    # record_study: every run starts at 00:00 and finishes at 00:0<seed>
    assert "Wall time: 1 min 00 s from the first run's start to the last run's finish (4 min 00 s summed" in readme
    assert "best recipe: sdft-rewrite (" in readme

    (out / "paper.md").write_text("stale")
    assert main(argv) == 0  # an earlier publish's folder is replaced whole
    assert (out / "paper.md").read_text() == paper
    assert sorted(p.name for p in out.parent.iterdir()) == ["results"]  # no temporary folder left


def test_publish_copies_the_authors_notes_into_the_readme_and_names_them_in_the_command(study_board, tmp_path, capsys):
    out, notes = tmp_path / "results", tmp_path / "findings.md"
    notes.write_text("- `none` forgets on IFEval; **reproduces**.\n", encoding="utf-8")
    argv = ["publish", "--study", "med", "--out", str(out), "--notes", str(notes), "--leaderboard", str(study_board.path)]
    assert main(argv) == 0
    readme = (out / "README.md").read_text()
    assert "## Findings\n\n- `none` forgets on IFEval; **reproduces**.\n\n## Summary" in readme
    assert f"--notes {notes}" in readme  # the regenerate command keeps them
    inside = out / "notes.md"
    inside.write_text("mine")
    capsys.readouterr()
    assert main([*argv[:5], "--notes", str(inside), "--leaderboard", str(study_board.path)]) == 2
    assert capsys.readouterr().err == (f"forgetbench: error: --notes {inside}: lies inside --out {out}, which "
                                       "publish replaces; keep it outside\n")


@pytest.mark.parametrize("case", ["unknown study", "out under a file", "foreign folder", "wrong study file"])
def test_publish_refuses_bad_input_in_one_line_and_writes_nothing(study_board, tmp_path, capsys, case):
    out = tmp_path / "results"
    extra = []
    study = "med"
    if case == "unknown study":
        study, expected = "nope", f"--study nope: no runs of that study in {study_board.path} (studies there: med)"
    elif case == "out under a file":
        (tmp_path / "a-file").write_text("")
        out = tmp_path / "a-file" / "results"
        expected = f"--out {out}: cannot be created, {tmp_path / 'a-file'} is a file, not a folder"
    elif case == "foreign folder":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        expected = (f"--out {out}: holds files that `forgetbench publish` did not write; name a new or empty "
                    "folder (publish replaces the whole folder)")
    else:
        (tmp_path / "other.yaml").write_text(yaml.safe_dump(study_config(name="other")))
        extra = ["--study-file", str(tmp_path / "other.yaml")]
        expected = f"--study-file {tmp_path / 'other.yaml'}: defines study 'other', not 'med'"
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert main(["publish", "--study", study, "--out", str(out), "--leaderboard", str(study_board.path), *extra]) == 2
    assert capsys.readouterr().err == f"forgetbench: error: {expected}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no folder, no temporary left behind
    if case == "foreign folder":
        assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_the_summary_ends_with_each_recipes_drift_from_the_seed_model_least_first(tmp_path):
    board = record_study(tmp_path / "lb.duckdb", drift=True)
    sections = summary_sections(board, "med")
    drift = sections[-1]
    assert drift.title.startswith("drift from the seed model per recipe") and "--benchmarks drift" in drift.command
    lines = [line.split() for line in drift.body.strip().splitlines()[2:]]  # below the header and its rule
    order = [line[0] for line in lines]  # record_study moves reconstructed-single least and none most
    assert order[0] == "reconstructed-single" and order[-1] == "none" and len(order) == 4
    expected = compare(board, "baseline", "none", study="med", benchmarks=["drift"]).iloc[0]
    assert float(lines[-1][4]) == pytest.approx(expected["diff"], abs=1e-4) and expected["ci_high"] < 0


def test_the_best_recipe_is_judged_on_the_small_model_suite_where_a_study_scored_it():
    table = pd.DataFrame({"recipe": ["baseline", "none", "a", "b"], "runs": [1, 1, 1, 1],
                          FORGETTING: [float("nan"), -1.0, -5.0, -2.0],
                          "small_avg_delta": [float("nan"), -3.0, -0.5, -4.0],
                          "small_avg(arc_easy,piqa)": [40.0, 37.0, 39.5, 36.0]})
    best, why = best_recipe(table)
    assert best == "a" and why.startswith("least mean forgetting on the general benchmarks: small_avg_delta -0.50 "
                                          "points on small_avg(arc_easy,piqa)")
