"""Study files validate into typed objects; every problem is reported as FILE: FIELD: reason."""
from __future__ import annotations

from importlib import resources

import pytest
import yaml

from harness.errors import ConfigError
from harness.study_file import load_study, parse_study

MINIMAL = {"name": "s1", "domain": "medmcqa", "recipes": ["none"]}


def write(tmp_path, data) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


def test_bundled_demo_study_is_valid():
    text = resources.files("harness").joinpath("studies/demo.yaml").read_text()
    study = parse_study(yaml.safe_load(text), "demo.yaml")
    assert [r.name for r in study.recipes] == ["none", "public", "reconstructed-single", "sdft-rewrite"]
    assert study.mix.domain_share == pytest.approx(0.5)  # 8 domain rows beside 8 rehearsal rows


@pytest.mark.parametrize("name", ["demo.yaml", "reference.yaml"])
def test_bundled_studies_pass_every_preflight_check_on_the_mirror(name, data_dir):
    """What `validate` and `run` check before any work, token lengths of every mix's domain rows included."""
    from harness.study import preflight

    text = resources.files("harness").joinpath("studies", name).read_text()
    assert preflight(parse_study(yaml.safe_load(text), name), data_dir) == []


def test_bundled_reference_study_covers_every_recipe_family_at_the_demos_dose():
    """The published reference study (docs/results): SmolLM2, two seeds or more, every recipe family (a public set, a
    committee, a compose), the small-model suite's benchmarks above chance at 135M
    with the domain and the drift, mixes larger than the demo's, and the demo's learning rate (the
    dose harness/studies/dose-sweep.yaml found)."""
    studies = resources.files("harness").joinpath("studies")
    reference = parse_study(yaml.safe_load(studies.joinpath("reference.yaml").read_text()), "reference.yaml")
    demo = parse_study(yaml.safe_load(studies.joinpath("demo.yaml").read_text()), "demo.yaml")
    assert reference.base_model == "smollm2-135m-instruct" and len(reference.seeds) >= 2
    names = [r.name for r in reference.recipes]
    assert {"none", "reconstructed-single", "reconstructed-committee", "sdft-rewrite", "compose"} <= set(names)
    assert "public" in names
    assert {"arc_easy", "piqa", "hellaswag", "domain", "drift"} <= set(reference.eval.benchmarks)
    assert reference.mix.size > demo.mix.size and reference.domain == demo.domain
    assert reference.finetune.learning_rate == demo.finetune.learning_rate


def test_defaults_fill_a_minimal_study(tmp_path):
    study = load_study(write(tmp_path, MINIMAL))
    assert study.base_model == "smollm2-135m-instruct"
    assert study.mix.domain_share == 0.17
    assert study.finetune.method == "lora"
    assert set(study.eval.benchmarks) == {"ifeval", "domain"}
    assert study.seeds == [0]


def test_shorthand_and_mapping_recipe_forms_mean_the_same(tmp_path):
    shorthand = load_study(write(tmp_path, {**MINIMAL, "recipes": ["public:dolly"]}))
    mapping = load_study(write(tmp_path, {**MINIMAL, "recipes": [{"name": "public", "params": {"set": "dolly"}}]}))
    assert shorthand.recipes[0].label == mapping.recipes[0].label == "public:dolly"
    with pytest.raises(ConfigError, match=r"recipes\[1\]: public:dolly repeats recipes\[0\]"):  # so both is a duplicate
        load_study(write(tmp_path, {**MINIMAL, "recipes": ["public:dolly", {"name": "public", "params": {"set": "dolly"}}]}))


def test_every_problem_is_reported_with_file_and_field(tmp_path):
    path = write(tmp_path, {"name": "s1", "domain": "nowhere", "recipes": ["nothing", "public:foo"],
                            "mix": {"size": 10, "domain_share": 1.5}, "finetune": {"method": "qlora"}})
    with pytest.raises(ConfigError) as info:
        load_study(path)
    lines = info.value.lines
    assert all(line.startswith(f"{path}: ") for line in lines)
    text = "\n".join(lines)
    for expected in ("mix.domain_share", "finetune.method", "recipes[0]: unknown recipe 'nothing'",
                     "recipes[1].params.set", "domain: unknown domain 'nowhere'"):
        assert expected in text


@pytest.mark.parametrize("share", [0, 1, -0.1, 1.2])
def test_domain_share_must_lie_strictly_between_0_and_1(tmp_path, share):
    with pytest.raises(ConfigError, match="mix.domain_share"):
        load_study(write(tmp_path, {**MINIMAL, "mix": {"domain_share": share}}))


def test_missing_required_field_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"study.yaml: recipes: Field required"):
        load_study(write(tmp_path, {"name": "s1", "domain": "medmcqa"}))


def test_unknown_setting_is_an_error_not_ignored(tmp_path):
    with pytest.raises(ConfigError, match=r"finetune.learnign_rate: Extra inputs"):
        load_study(write(tmp_path, {**MINIMAL, "finetune": {"learnign_rate": 1e-4}}))


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"study.yaml: line \d+: invalid YAML"):
        load_study(write(tmp_path, "name: [unclosed\n"))


def test_missing_study_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read study file"):
        load_study(tmp_path / "absent.yaml")


def test_config_hash_ignores_where_files_live(tmp_path):
    a = parse_study({**MINIMAL, "leaderboard": "a.duckdb"}, "a")
    b = parse_study({**MINIMAL, "leaderboard": "b.duckdb", "data_dir": "/x"}, "b")
    c = parse_study({**MINIMAL, "seeds": [1]}, "c")
    assert a.config_hash() == b.config_hash() != c.config_hash()


@pytest.mark.parametrize("entry, label", [
    ("none", "none"),
    ("public:alpaca", "public:alpaca"),
    ({"name": "reconstructed-single", "params": {"instruction_max_new_tokens": 48, "answer_max_new_tokens": 64}},
     "reconstructed-single:48,64"),
    ({"name": "reconstructed-committee", "params": {"members": ["seed", "seed@1"], "responses_per_instruction": 3}},
     "reconstructed-committee:seed|seed@1,3"),
    ({"name": "compose", "params": {"domain": {"name": "sdft-rewrite", "params": {"max_new_tokens": 96}},
                                    "rehearsal": "public:alpaca"}}, "compose:sdft-rewrite:96+public:alpaca"),
    ({"name": "none", "label": "vanilla"}, "vanilla"),
], ids=["name", "shorthand", "scalars", "list", "nested-entries", "given"])
def test_a_recipe_entry_is_labelled_readably_and_its_label_is_no_part_of_its_identity(entry, label):
    from harness.config import RecipeEntry

    parsed = RecipeEntry.model_validate(entry)
    assert parsed.label == label
    assert "label" not in parsed.model_dump() and "given_label" not in parsed.model_dump()  # hashes stay as they were


@pytest.mark.parametrize("recipes, message", [
    ([{"name": "none", "label": "x"}, {"name": "public", "params": {"set": "alpaca"}, "label": "x"}],
     "recipes[1]: its label 'x' is recipes[0]'s too; give one of them a `label:` of its own"),
    ([{"name": "none", "label": "baseline"}], "recipes[0]: label 'baseline' is reserved"),
    ([{"name": "none", "label": "no spaces please"}], "recipes[0].label: String should match pattern"),
], ids=["duplicate", "reserved", "bad-characters"])
def test_recipe_labels_are_unique_within_a_study_and_not_reserved(recipes, message):
    with pytest.raises(ConfigError) as error:
        parse_study({"name": "s", "domain": "medmcqa", "recipes": recipes}, "s.yaml")
    assert any(message in line for line in error.value.lines), error.value.lines
