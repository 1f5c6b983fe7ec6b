"""The bundled GPU study files (seed 000's and seed 003's setups at full scale) validate offline:
`forgetbench validate` reads the base model's config from the local Hugging Face cache and checks
the LoRA targets on a meta-device model, without downloading anything."""
from __future__ import annotations

import json
import socket
from importlib import resources
from pathlib import Path

import pytest
import yaml

from harness.cli import main

MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
# config.json of meta-llama/Meta-Llama-3-8B-Instruct as the Hub serves it (the model's shape; no weights)
LLAMA_3_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 128000,
    "eos_token_id": 128009, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 14336, "max_position_embeddings": 8192, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.40.0.dev0", "use_cache": True, "vocab_size": 128256,
}
STUDIES = resources.files("harness").joinpath("studies")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A local Hugging Face cache holding only the model's config.json, laid out as the Hub client
    leaves it; and no network at all: any connection attempt fails the test."""
    import huggingface_hub.constants

    revision = "0" * 40
    repo = tmp_path / "hub" / f"models--{MODEL.replace('/', '--')}"
    (repo / "snapshots" / revision).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision / "config.json").write_text(json.dumps(LLAMA_3_8B_CONFIG))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    def no_network(*args, **kwargs):
        pytest.fail(f"validate tried to connect to {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "hub"


def validate(capsys, name, data_dir) -> tuple[int, list[str], str]:
    code = main(["validate", str(STUDIES / name), "--data-dir", str(data_dir)])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


@pytest.mark.parametrize("domain", ["gsm8k", "openfunctions"])
def test_seed_003_studies_validate_offline_with_the_model_config_cached(hub_cache, data_dir, capsys, domain):
    code, errors, out = validate(capsys, f"gpu-seed003-{domain}.yaml", data_dir)
    assert (code, errors) == (0, [])
    assert f"ok — baseline, none, sdft-rewrite, public:alpaca; seeds [0, 1]; mix 2000 rows (17% domain {domain})" in out
    study = yaml.safe_load((STUDIES / f"gpu-seed003-{domain}.yaml").read_text())
    assert study["finetune"]["lora"] == {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
    assert (study["finetune"]["learning_rate"], study["generation_backend"]) == (1e-4, "vllm")


def test_seed_000_study_validates_but_for_the_mirrors_smaller_domain(hub_cache, data_dir, capsys):
    """At seed 000's N = 100,000 rows `none` needs the Hub's MedMCQA; against the mirror's the size
    check is the one problem left, which says so."""
    code, errors, _ = validate(capsys, "gpu-seed000.yaml", data_dir)
    assert code == 2 and len(errors) == 1, errors
    assert errors[0].endswith("gpu-seed000.yaml: mix.size: 100000 rows at domain_share 0.17 take 17000 domain rows "
                              "for recipe none, but " f"{Path(data_dir).resolve()}/domain/medmcqa/medmcqa_dev_filtered.jsonl has "
                              "2238 training rows")
    study = yaml.safe_load((STUDIES / "gpu-seed000.yaml").read_text())
    assert study["base_model"] == MODEL and study["mix"] == {"size": 100000, "domain_share": 0.17}
    assert [r for r in study["recipes"] if isinstance(r, str)] == [
        "none", "public:sharegpt", "public:evol-instruct", "public:ultrachat", "public:openhermes",
        "public:openhermes-2.5", "public:wildchat", "public:genqa", "public:tulu-v2"]
    assert study["recipes"][-1]["name"] == "reconstructed-committee"


def test_a_gpu_study_without_the_model_cached_names_it_and_downloads_nothing(hub_cache, data_dir, capsys):
    (hub_cache / f"models--{MODEL.replace('/', '--')}" / "refs" / "main").unlink()
    code, errors, _ = validate(capsys, "gpu-seed003-gsm8k.yaml", data_dir)
    assert code == 2 and len(errors) == 1
    assert f"model '{MODEL}': no such local directory, and as a Hub id it is not in the local Hugging Face " \
           "cache while HF_HUB_OFFLINE=1" in errors[0]
