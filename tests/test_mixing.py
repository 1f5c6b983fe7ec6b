"""Mixes have the exact size and domain share, are byte-identical on a rebuild, and are built once."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import make_mix

from harness.config import MixConfig, RecipeEntry
from harness.domains import get_domain
from harness.errors import ForgetbenchError
from harness.mixing import build_mix, split_sizes
from harness.recipe import Recipe, RecipeOutput


def build(entry, tiny_model, data_dir, seed=0, size=30, share=0.2):
    return make_mix(entry, tiny_model, data_dir, seed=seed, size=size, share=share)


def rows(mix):
    return [json.loads(line) for line in mix.path.read_text().splitlines()]


@pytest.mark.parametrize("size, share, expected", [(100, 0.17, (17, 83)), (10, 0.5, (5, 5)), (3, 0.01, (1, 2))])
def test_split_sizes(size, share, expected):
    assert split_sizes(MixConfig(size=size, domain_share=share)) == expected


def test_public_mix_has_exact_size_and_domain_share(tiny_model, data_dir):
    mix = build("public:alpaca", tiny_model, data_dir)
    parts = Counter(row["role_in_mix"] for row in rows(mix))
    assert parts == {"domain": 6, "rehearsal": 24}
    assert Counter(row["source"] for row in rows(mix)) == {"medmcqa": 6, "alpaca": 24}
    stats = mix.meta["stats"]
    assert stats["rows_per_source"] == {"medmcqa": 6, "alpaca": 24}
    assert stats["domain_tokens"]["min"] > 0 and stats["rehearsal_tokens"]["max"] >= stats["rehearsal_tokens"]["mean"]
    assert mix.meta["provenance"]["data_sha256"]


@pytest.mark.parametrize("entry, mix_rows, distinct", [("none", 6, 6), ("none:repeat", 30, 6), ("none:extra-domain", 30, 30)])
def test_none_trains_on_the_domain_share_alone_unless_its_fill_says_otherwise(tiny_model, data_dir, entry, mix_rows,
                                                                               distinct):
    mix = build(entry, tiny_model, data_dir)
    ids = Counter(row["id"] for row in rows(mix))
    assert len(rows(mix)) == mix_rows == mix.meta["rows"] == mix.meta["domain_rows"]
    assert {row["source"] for row in rows(mix)} == {"medmcqa"}
    assert len(ids) == distinct == mix.meta["unique_domain_rows"]
    assert set(ids.values()) == {mix_rows // distinct}  # repeat: every row as often
    assert mix.meta["provenance"] == {"fill": entry.partition(":")[2] or "alone", "unique_domain_rows": distinct,
                                      "rows": mix_rows}
    public = build("public:alpaca", tiny_model, data_dir)
    assert (mix.meta["domain_ids_sha256"] == public.meta["domain_ids_sha256"]) is (entry == "none")


def test_rebuild_is_byte_identical_and_reads_the_stored_mix(tiny_model, data_dir, tmp_path, monkeypatch):
    first = build("public:dolly", tiny_model, data_dir, seed=5)
    content = first.path.read_bytes()
    # a fresh cache directory forces a real rebuild: same bytes
    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path / "fresh"))
    second = build("public:dolly", tiny_model, data_dir, seed=5)
    assert second.path != first.path and second.path.read_bytes() == content and second.sha == first.sha
    other_seed = build("public:dolly", tiny_model, data_dir, seed=6)
    assert other_seed.sha != first.sha


def test_domain_rows_never_come_from_the_held_out_test_split(tiny_model, data_dir):
    test_prompts = {json.dumps(r["messages"]) for r in get_domain("medmcqa").test_rows(data_dir)}
    mix = build("none", tiny_model, data_dir, size=200)
    assert not test_prompts & {json.dumps(r["messages"]) for r in rows(mix)}


class WrongSize(Recipe):
    """Returns one row too few."""

    def build(self, ctx):
        return RecipeOutput(domain=ctx.domain_rows, rehearsal=ctx.domain_pool[: ctx.rehearsal_size - 1])


def test_a_recipe_returning_the_wrong_size_is_an_error_naming_it(tiny_model, data_dir, monkeypatch):
    from harness import recipe

    monkeypatch.setattr(recipe.RECIPES, "entries", lambda: {"wrong": WrongSize})
    with pytest.raises(ForgetbenchError, match=r"recipe wrong: returned 6 \+ 23 rows; its mix holds 30"):
        build("wrong", tiny_model, data_dir)


# -- paired design: every recipe of a seed trains on the same domain rows ---------------------------

def _lines(mix, role="domain"):
    """The mix file's lines (its exact bytes) of one part."""
    return {line for line in mix.path.read_text(encoding="utf-8").splitlines() if json.loads(line)["role_in_mix"] == role}


def _question(line):
    return next(m["content"] for m in reversed(json.loads(line)["messages"]) if m["role"] == "user").strip()


SMALL_GEN = {"instruction_max_new_tokens": 16, "answer_max_new_tokens": 16, "judge_max_new_tokens": 16}
BUILT_IN = ["none", "public:alpaca", "public:dolly", "sdft-rewrite",
            {"name": "reconstructed-single", "params": SMALL_GEN},
            {"name": "reconstructed-committee", "params": {**SMALL_GEN, "responses_per_instruction": 1}},
            {"name": "compose", "params": {"domain": "sdft-rewrite", "rehearsal": "public:lima"}}]


def test_every_built_in_recipe_of_a_seed_trains_on_the_same_domain_rows(tiny_model, data_dir, tmp_path, monkeypatch,
                                                                        scripted_backend, seed_model_reply):
    from harness.mixing import domain_order, split_sizes

    monkeypatch.setenv("FORGETBENCH_CACHE", str(tmp_path / "cache"))
    backend = scripted_backend(tiny_model, seed_model_reply)
    config = MixConfig(size=8, domain_share=0.25)
    domain = get_domain("medmcqa")
    mixes = {RecipeEntry.model_validate(e).label: build_mix(RecipeEntry.model_validate(e), 3, config, domain, data_dir,
                                                            tiny_model, backend=lambda: backend) for e in BUILT_IN}
    n_domain, n_rehearsal = split_sizes(config)
    train = domain.train_rows(data_dir)
    order = domain_order(3, len(train))
    ids = lambda lines: {json.loads(line)["id"] for line in lines}  # noqa: E731

    assert len({mix.meta["domain_rows_sha256"] for mix in mixes.values()}) == 1  # the pairing, recorded
    assert len({mix.meta["domain_ids_sha256"] for mix in mixes.values()}) == 1  # and the rows each trains on
    shared = _lines(mixes["public:alpaca"])
    assert ids(shared) == {train[i]["id"] for i in order[:n_domain]}
    for label, mix in mixes.items():
        lines = _lines(mix)
        assert ids(lines) == ids(shared) and mix.meta["unique_domain_rows"] == n_domain, label
        assert lines == shared, label  # byte for byte (the scripted SDFT rewrites are all rejected)
    assert mixes["none"].meta["rows"] == n_domain and mixes["public:alpaca"].meta["rows"] == n_domain + n_rehearsal
    # sdft-rewrite offered exactly those rows for rewriting, alone and under compose
    rewritten = [p for p, _, _ in backend.requests if "### Reference Answer:" in p]
    assert {p.split("### Instruction:\n")[1].split("\n\n### Reference Answer:")[0] for p in rewritten} == \
        {_question(line) for line in _lines(mixes["none"])}
    # compose's rewrites of the shared rows were the same requests (same rows, same stream): served from the cache
    assert len(rewritten) == n_domain
    # compose's rehearsal part draws from public:lima's own stream: the same rows as public:lima alone
    lima = build_mix(RecipeEntry.model_validate("public:lima"), 3, config, domain, data_dir, tiny_model, backend=lambda: backend)
    assert _lines(lima, "rehearsal") == _lines(mixes["compose:sdft-rewrite,public:lima"], "rehearsal")
