"""Recipes register through entry points — built-ins and third-party packages alike."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.errors import ConfigError
from harness.recipe import describe, registry, resolve_params
from recipes.public import PublicSet

PLUGIN = Path(__file__).parent / "plugin_example"


def forgetbench(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=900)


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
        resolve_params(registry()["none"], {"": "x"})


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    """pip-install the example distribution into its own folder (nothing touches the test env)."""
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(PLUGIN)], check=True)
    return target


def test_an_installed_plugin_is_listed_and_shown(plugin_path):
    env = {"PYTHONPATH": str(plugin_path)}
    listing = forgetbench("recipes", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "self-answers" in listing.stdout and "public" in listing.stdout
    shown = forgetbench("recipes", "show", "self-answers", env=env)
    assert "max_new_tokens (int, default 128): answer length" in shown.stdout


def test_an_installed_plugin_runs_in_a_study(plugin_path, tiny_model, data_dir, tmp_path):
    study = {
        "name": "plugin", "base_model": str(tiny_model.path), "domain": "medmcqa", "recipes": ["self-answers"],
        "mix": {"size": 6, "domain_share": 0.34}, "finetune": {"max_steps": 1, "batch_size": 2, "max_seq_length": 128},
        "eval": {"benchmarks": {"domain": {"limit": 2, "max_new_tokens": 4}}},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    result = forgetbench("run", path, "--data-dir", data_dir, "--leaderboard", tmp_path / "lb.duckdb",
                         env={"PYTHONPATH": str(plugin_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    import duckdb

    with duckdb.connect(str(tmp_path / "lb.duckdb"), read_only=True) as db:
        recipes = sorted(r[0] for r in db.execute("SELECT recipe FROM runs").fetchall())
        params = db.execute("SELECT recipe_params FROM runs WHERE recipe = 'self-answers'").fetchone()[0]
    assert recipes == ["baseline", "self-answers"]
    assert '"max_new_tokens": 128' in params or '"max_new_tokens":128' in params
