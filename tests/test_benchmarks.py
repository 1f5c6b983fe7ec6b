"""Benchmarks register through entry points (built-ins and third-party packages alike), are cached one
by one, and any lm-eval task runs by name, including a task of the user's own YAML folder."""
from __future__ import annotations

import json
import textwrap

import pytest
import yaml

from harness.benchmark import describe, get_benchmark, make_benchmark, registry, resolve_params
from harness.config import EvalConfig
from harness.domains import get_domain
from harness.errors import ConfigError
from harness.hashing import hash_file
from leaderboard.store import Leaderboard

EIGHT = {"mmlu_pro", "gpqa", "ifeval", "math_l5", "safety_raw", "safety_jailbreak", "alpaca_eval", "domain"}


def test_the_built_ins_are_registered_through_entry_points():
    from importlib import metadata

    from harness.evaluation.builtin import Gpqa
    from harness.evaluation.lm_eval_runner import LmEvalBenchmark

    names = {ep.name for ep in metadata.entry_points(group="forgetbench.benchmarks")}
    assert EIGHT | {"lm_eval"} <= names
    assert registry()["gpqa"] is Gpqa
    assert all(issubclass(registry()[name], LmEvalBenchmark) for name in ("mmlu_pro", "gpqa", "ifeval", "math_l5",
                                                                        "lm_eval"))
    assert {name: cls.group for name, cls in registry().items() if name in EIGHT} == {
        "mmlu_pro": "general", "gpqa": "general", "ifeval": "general", "math_l5": "general",
        "safety_raw": "side", "safety_jailbreak": "side", "alpaca_eval": "side", "domain": "domain"}


def test_show_documents_group_data_and_every_parameter(capsys):
    from harness.cli import main

    assert main(["benchmarks", "show", "gpqa"]) == 0
    text = capsys.readouterr().out
    assert "Group: general (in the Open LLM Leaderboard v2 average, avg)" in text
    assert "Leaderboard score: mean of acc_norm, random baseline 0.25" in text
    assert "subset (one of leaderboard, diamond, main, extended, default 'leaderboard'): GPQA set" in text
    assert "limit (int | None, default None): examples evaluated" in text
    assert "Data: mirror eval/gpqa/gpqa_diamond.zip" in text
    assert "Shorthand: `lm_eval:VALUE` sets `task`." in describe("lm_eval")
    piqa = describe("piqa")
    assert "Group: general (in the small-model suite average, small_avg)" in piqa
    assert "random baseline 0.5, not clipped at 0" in piqa
    assert "chat_template (bool, default False)" in piqa
    assert main(["benchmarks", "list"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert EIGHT | {"lm_eval"} <= listed


def test_shorthand_and_parameters_are_validated_and_name_the_result():
    assert make_benchmark("lm_eval:hellaswag").label == "lm_eval:hellaswag"
    assert make_benchmark("lm_eval", {"task": "hellaswag", "limit": 3}).label == "lm_eval:hellaswag"
    with pytest.raises(ConfigError, match="takes no `name:value` shorthand"):
        resolve_params(get_benchmark("gpqa"), {"": "x"})
    with pytest.raises(ConfigError, match="task: Field required"):
        make_benchmark("lm_eval")



def test_every_suite_problem_of_a_study_is_its_own_line(tmp_path):
    from harness.study_file import load_study

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "domain": "medmcqa", "recipes": ["none"], "eval": {"benchmarks": {
        "gpqa": {"subset": "all"}, "nope": None, "lm_eval:x": None, "lm_eval": {"task": "x"}}}}, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        load_study(path)
    assert [line.split(" registered:")[0] for line in caught.value.lines] == [
        f"{path}: eval.benchmarks.gpqa: subset: Input should be 'leaderboard', 'diamond', 'main' or 'extended'",
        f"{path}: eval.benchmarks.nope: unknown benchmark 'nope';",
        f"{path}: eval.benchmarks.lm_eval: the same benchmark as lm_eval:x (lm_eval:x)"]


def test_eval_params_fill_one_benchmarks_own_parameters_and_limits_reach_every_benchmark():
    from harness.evaluation.eval_command import build_eval_config, parse_params

    params = parse_params(["gpqa.subset=main", "alpaca_eval.judge_model=http://host:8000/v1#m",
                           "safety_raw.keywords=extended", "drift.limit=100"])
    cfg = build_eval_config(["gpqa", "safety_raw", "alpaca_eval", "domain", "drift"], 5, 32, 8, 1234, params=params)
    assert cfg.benchmarks == {"gpqa": {"limit": 5, "max_new_tokens": 32, "subset": "main"},
                              "safety_raw": {"limit": 5, "max_new_tokens": 32, "keywords": "extended"},
                              "alpaca_eval": {"limit": 5, "max_new_tokens": 32, "judge_model": "http://host:8000/v1#m"},
                              "domain": {"limit": 5, "max_new_tokens": 32},
                              "drift": {"limit": 100, "max_new_tokens": 32}}  # typed: 100 is a number
    assert [b.params.max_new_tokens for b in cfg.suite()] == [None, 32, 32, 32, 32]  # gpqa: log-likelihood
    with pytest.raises(ConfigError, match=r"--param ifeval\..*: ifeval is not a benchmark of the suite"):
        build_eval_config(["gpqa"], None, None, None, 1234, params=parse_params(["ifeval.max_new_tokens=8"]))
    with pytest.raises(ConfigError, match="--suite: gpqa: subset: Input should be 'leaderboard', 'diamond'"):
        build_eval_config(["gpqa"], None, None, None, 1234, params=parse_params(["gpqa.subset=everything"]))
    with pytest.raises(ConfigError, match="--param gpqa=diamond: expected BENCH.KEY=VALUE"):
        parse_params(["gpqa=diamond"])


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("FORGETBENCH_CACHE", str(path))
    return path


@pytest.fixture
def evaluations(monkeypatch):
    """The labels of the benchmarks actually evaluated (not reused from the cache), in order, and the
    number of generators made."""
    from harness import generation
    from harness.evaluation.builtin import DomainTask, SafetyRaw

    done = {"evaluated": [], "generators": 0}
    for cls in (DomainTask, SafetyRaw):  # SafetyJailbreak inherits SafetyRaw's
        original = cls.evaluate

        def counted(self, ctx, original=original):
            done["evaluated"].append(self.label)
            return original(self, ctx)

        monkeypatch.setattr(cls, "evaluate", counted)
    make_backend = generation.make_backend

    def counted_backend(*args, **kwargs):
        done["generators"] += 1
        return make_backend(*args, **kwargs)

    monkeypatch.setattr(generation, "make_backend", counted_backend)
    return done


def test_adding_a_benchmark_evaluates_only_it_and_removing_one_reuses_the_rest(tiny_model, data_dir, fresh_cache,
                                                                              evaluations):
    from harness.evaluation.suite import EVAL_KEY, evaluate_model

    domain = get_domain("medmcqa")
    small = {"limit": 2, "max_new_tokens": 4}

    def evaluate(*names):
        cfg = EvalConfig(benchmarks={name: small for name in names}, batch_size=2)
        evaluations["evaluated"].clear()
        evaluations["generators"] = 0
        return evaluate_model(tiny_model, cfg, domain, data_dir, "transformers")

    first = evaluate("domain", "safety_raw")
    assert evaluations == {"evaluated": ["domain", "safety_raw"], "generators": 1}  # one generator, shared
    added = evaluate("domain", "safety_raw", "safety_jailbreak")
    assert evaluations == {"evaluated": ["safety_jailbreak"], "generators": 1}
    assert [r.settings for r in added[:2]] == [r.settings for r in first]  # reused as recorded
    removed = evaluate("safety_jailbreak")
    assert evaluations == {"evaluated": [], "generators": 0}
    assert removed[0].settings[EVAL_KEY] == added[2].settings[EVAL_KEY]
    assert len(list(fresh_cache.glob("evals/*/results.json"))) == 3
    evaluate("domain", "safety_raw")
    assert evaluations == {"evaluated": [], "generators": 0}  # nothing to generate: no model loaded at all
    cfg = EvalConfig(benchmarks={"domain": small, "safety_raw": {**small, "keywords": "extended"}}, batch_size=2)
    evaluations["evaluated"].clear()
    evaluate_model(tiny_model, cfg, domain, data_dir, "transformers")
    assert evaluations["evaluated"] == ["safety_raw"]  # its own parameter changed: only it again


def test_adding_a_benchmark_to_an_evaluated_study_evaluates_only_it_for_each_model(tiny_study, tiny_model, data_dir,
                                                                                 fresh_cache, evaluations, tmp_path):
    from harness.study import run_study
    from harness.study_file import load_study

    small = {"limit": 2, "max_new_tokens": 4}
    board = tmp_path / "lb.duckdb"
    run_study(load_study(tiny_study("one.yaml")), Leaderboard(board), data_dir)
    assert evaluations["evaluated"] == ["domain", "domain"]  # baseline, then the fine-tuned `none`
    evaluations["evaluated"].clear()
    eval_settings = {"batch_size": 2, "benchmarks": {"domain": small, "safety_raw": small}}
    run_study(load_study(tiny_study("two.yaml", eval=eval_settings)), Leaderboard(board), data_dir)
    assert evaluations["evaluated"] == ["safety_raw", "safety_raw"]  # the checkpoint and the domain results reused
    assert len(list(fresh_cache.glob("checkpoints/*"))) == 1


def _write_tasks(folder, data):
    """Two lm-eval tasks of one's own over a local JSONL file: multiple choice and generate_until."""
    folder.mkdir()
    common = textwrap.dedent(f"""\
        dataset_path: json
        dataset_name: null
        dataset_kwargs:
          data_files:
            test: {data}
        test_split: test
        doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
        """)
    (folder / "fb_tiny_mc.yaml").write_text("task: fb_tiny_mc\noutput_type: multiple_choice\n" + common + textwrap.dedent("""\
        doc_to_target: answer
        doc_to_choice: choices
        metric_list:
          - metric: acc
            aggregation: mean
            higher_is_better: true
          - metric: acc_norm
            aggregation: mean
            higher_is_better: true
        """))
    (folder / "fb_tiny_gen.yaml").write_text("task: fb_tiny_gen\noutput_type: generate_until\n" + common + textwrap.dedent("""\
        doc_to_target: "{{choices[answer]}}"
        generation_kwargs:
          until: ["\\n"]
          do_sample: false
          max_gen_toks: 6
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
        """))


def test_an_lm_eval_task_of_ones_own_runs_offline_with_all_its_metrics(tiny_model, tmp_path, capsys):
    import duckdb

    from harness.cli import main

    data = tmp_path / "questions.jsonl"
    rows = [{"question": f"What is {i} plus {i}?", "choices": [str(2 * i), str(2 * i + 1), "7"], "answer": 0}
            for i in range(1, 6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = tmp_path / "tasks"
    _write_tasks(tasks, data)
    board = tmp_path / "board.duckdb"
    command = ["eval", "--model", str(tiny_model.path), "--suite", "lm_eval:fb_tiny_mc,lm_eval:fb_tiny_gen",
               "--include-path", str(tasks), "--limit", "3", "--batch-size", "2", "--leaderboard", str(board),
               "--base-model", str(tiny_model.path)]
    assert main(command) == 0, capsys.readouterr().err
    with duckdb.connect(str(board), read_only=True) as db:
        scores = db.execute("SELECT benchmark, metric, n, is_primary FROM scores ORDER BY ALL").fetchall()
        examples = db.execute("SELECT benchmark, metric, count(*) FROM examples GROUP BY ALL ORDER BY ALL").fetchall()
        settings = json.loads(db.execute("SELECT settings FROM scores WHERE benchmark = 'lm_eval:fb_tiny_mc' "
                                         "AND is_primary").fetchone()[0])
    assert scores == [("lm_eval:fb_tiny_gen", "exact_match", 3, True), ("lm_eval:fb_tiny_mc", "acc", 3, True),
                      ("lm_eval:fb_tiny_mc", "acc_norm", 3, False)]
    assert examples == [("lm_eval:fb_tiny_gen", "exact_match", 3), ("lm_eval:fb_tiny_mc", "acc", 3),
                        ("lm_eval:fb_tiny_mc", "acc_norm", 3)]
    assert settings["task"] == "fb_tiny_mc" and settings["include_path"] == str(tasks)
    assert settings["fingerprint"]["data_files"] == {str(data): hash_file(data)}

    # editing the task folder changes its fingerprint, so neither task's cached result is reused
    from harness.evaluation.suite import benchmark_identity, context

    cfg = EvalConfig(benchmarks=["lm_eval:fb_tiny_mc"], include_path=tasks)
    ctx = context(cfg, get_domain("medmcqa"), None, "transformers")
    before = benchmark_identity(cfg.suite()[0], ctx)
    (tasks / "fb_tiny_gen.yaml").write_text((tasks / "fb_tiny_gen.yaml").read_text().replace("max_gen_toks: 6",
                                                                                             "max_gen_toks: 5"))
    after = benchmark_identity(cfg.suite()[0], ctx)
    assert before["fingerprint"]["task_files"] != after["fingerprint"]["task_files"]
    assert {k: v for k, v in before.items() if k != "fingerprint"} == {k: v for k, v in after.items() if k != "fingerprint"}
    assert before["fingerprint"]["task_files"] == settings["fingerprint"]["task_files"]

    (tasks / "fb_both.yaml").write_text("group: fb_both\ntask: [fb_tiny_mc, fb_tiny_gen]\n")
    with pytest.raises(ConfigError, match="^lm_eval:fb_both: names a group of lm-eval tasks; name its tasks one by one"):
        make_benchmark("lm_eval:fb_both").check_data(context(cfg, get_domain("medmcqa"), None, "transformers"))


@pytest.fixture(scope="session")
def benchmark_plugin(installed_distribution):
    return installed_distribution("benchmark_plugin_example")


def test_an_installed_benchmark_is_listed_and_runs_in_a_study(benchmark_plugin, forgetbench_process, tiny_model,
                                                              data_dir, tmp_path):
    import duckdb

    listing = forgetbench_process("benchmarks", "list", site=benchmark_plugin)
    assert listing.returncode == 0, listing.stderr
    assert any(line.split()[:2] == ["echo", "side"] for line in listing.stdout.splitlines())
    shown = forgetbench_process("benchmarks", "show", "echo", site=benchmark_plugin)
    assert "max_new_tokens (int, default 16): answer budget" in shown.stdout

    study = {"name": "plugin", "base_model": str(tiny_model.path), "domain": "medmcqa", "recipes": ["none"],
             "mix": {"size": 6, "domain_share": 0.5}, "diagnostics": {"enabled": False},
             "finetune": {"max_steps": 1, "batch_size": 2, "max_seq_length": 256},
             "eval": {"batch_size": 2, "benchmarks": {"domain": {"limit": 2, "max_new_tokens": 4},
                                                      "echo": {"limit": 3, "max_new_tokens": 4}}}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    board = tmp_path / "lb.duckdb"
    result = forgetbench_process("run", path, "--data-dir", data_dir, "--leaderboard", board, site=benchmark_plugin)
    assert result.returncode == 0, result.stderr[-3000:]
    with duckdb.connect(str(board), read_only=True) as db:
        rows = db.execute("SELECT r.recipe, s.metric, s.n FROM scores s JOIN runs r USING (run_id) "
                          "WHERE s.benchmark = 'echo' ORDER BY r.recipe").fetchall()
    assert rows == [("baseline", "echoed", 3), ("none", "echoed", 3)]
    paper = forgetbench_process("leaderboard", "--leaderboard", board, "--format", "csv", site=benchmark_plugin)
    assert paper.returncode == 0, paper.stderr
    header = [c for c in paper.stdout.splitlines()[0].split(",") if not c.endswith("_std")]
    # its group, side, goes before domain
    assert header[:8] == ["study", "recipe", "runs", "domain_rows", "trained_rows", "echo", "domain", "domain_gain"]


def test_a_studys_include_path_is_relative_to_the_study_file_and_kept_out_of_its_config_hash(tmp_path):
    from harness.study_file import load_study

    (tmp_path / "tasks").mkdir()
    path = tmp_path / "study.yaml"
    study = {"name": "s", "domain": "medmcqa", "recipes": ["none"],
             "eval": {"benchmarks": ["lm_eval:mine"], "include_path": "tasks"}}
    path.write_text(yaml.safe_dump(study))
    loaded = load_study(path)
    assert loaded.eval.include_path == tmp_path / "tasks"
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    absolute = {**study, "eval": {**study["eval"], "include_path": str(tmp_path / "tasks")}}
    (elsewhere / "study.yaml").write_text(yaml.safe_dump(absolute))
    assert load_study(elsewhere / "study.yaml").config_hash() == loaded.config_hash()
