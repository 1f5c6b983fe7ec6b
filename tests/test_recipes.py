"""Recipes register through entry points — built-ins and third-party packages alike."""
from __future__ import annotations

import pytest
import yaml

from harness.errors import ConfigError
from harness.recipe import describe, registry, resolve_params
from recipes.public import PublicSet


def test_builtins_are_registered_through_entry_points():
    from importlib import metadata

    names = {ep.name for ep in metadata.entry_points(group="forgetbench.recipes")}
    assert {"none", "public"} <= names
    assert registry()["public"] is PublicSet


def test_show_documents_every_parameter():
    text = describe("public")
    assert "Mix in rows sampled" in text
    assert ("set (one of alpaca, dolly, lima, sharegpt, ultrachat, openhermes, openhermes-2.5, wildchat, "
            "evol-instruct, genqa, tulu-v2, required): which public SFT set") in text
    assert "Shorthand: `public:VALUE` sets `set`." in text


def test_shorthand_value_is_validated():
    with pytest.raises(ConfigError, match="set: Input should be 'alpaca'"):
        resolve_params(PublicSet, {"": "nope"})
    with pytest.raises(ConfigError, match="takes no `name:value` shorthand"):
        resolve_params(registry()["sdft-rewrite"], {"": "x"})
    with pytest.raises(ConfigError, match="fill: Input should be 'alone', 'repeat' or 'extra-domain'"):
        resolve_params(registry()["none"], {"": "x"})


@pytest.fixture(scope="session")
def plugin_path(installed_distribution):
    return installed_distribution("plugin_example")


def test_an_installed_plugin_is_listed_and_shown(plugin_path, forgetbench_process):
    listing = forgetbench_process("recipes", "list", site=plugin_path)
    assert listing.returncode == 0, listing.stderr
    assert "self-answers" in listing.stdout and "public" in listing.stdout
    shown = forgetbench_process("recipes", "show", "self-answers", site=plugin_path)
    assert "max_new_tokens (int, default 128): answer length" in shown.stdout


def test_an_installed_plugin_runs_in_a_study(plugin_path, forgetbench_process, tiny_model, data_dir, tmp_path):
    study = {
        "name": "plugin", "base_model": str(tiny_model.path), "domain": "medmcqa", "recipes": ["self-answers"],
        "mix": {"size": 6, "domain_share": 0.34}, "finetune": {"max_steps": 1, "batch_size": 2, "max_seq_length": 256},
        "eval": {"benchmarks": {"domain": {"limit": 2, "max_new_tokens": 4}}},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    result = forgetbench_process("run", path, "--data-dir", data_dir, "--leaderboard", tmp_path / "lb.duckdb",
                                 site=plugin_path)
    assert result.returncode == 0, result.stderr[-3000:]
    import duckdb

    with duckdb.connect(str(tmp_path / "lb.duckdb"), read_only=True) as db:
        recipes = sorted(r[0] for r in db.execute("SELECT recipe FROM runs").fetchall())
        params = db.execute("SELECT recipe_params FROM runs WHERE recipe = 'self-answers'").fetchone()[0]
    assert recipes == ["baseline", "self-answers"]
    assert '"max_new_tokens": 128' in params or '"max_new_tokens":128' in params


def test_the_harness_never_imports_the_built_in_recipes():
    import ast
    from pathlib import Path

    harness = Path(__file__).resolve().parents[1] / "harness"
    importing = []
    for path in harness.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            importing += [f"{path.name}: {name}" for name in names if name.split(".")[0] == "recipes"]
    assert importing == []
