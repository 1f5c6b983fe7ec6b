"""The fixed fine-tuning job: train a base model on one training mix with TRL's SFTTrainer.

Loss falls on assistant tokens only, for any chat template: each conversation is rendered with the
model's own template, and the text of every assistant turn is located by rendering the conversation
up to that turn (with and without the turn). Those character spans mark the tokens that carry loss:
the turn's content plus its end-of-turn token, never the template text after it (e.g. ChatML's
newline). SFTTrainer receives the pre-tokenized `input_ids` + `labels` (-100 elsewhere) as is.

Multi-GPU: with `launcher: accelerate` the same job runs under `accelerate launch --num_processes N`
(`launch_command`), each process executing this module's entry point (`python -m harness.finetune
--spec FILE`) on the same mix; rank 0 writes the checkpoint into the temporary directory that the
calling process renames into the cache when every process has exited cleanly.
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import artefacts
from harness.config import FinetuneConfig
from harness.errors import ConfigError, DataError, first_line
from harness.hashing import hash_file
from harness.models import ResolvedModel, load_tokenizer, use_all_cores
from harness.testhooks import pause_point

log = logging.getLogger("harness.finetune")

ROLES = {"system", "user", "assistant"}
IGNORE = -100  # label of tokens that carry no loss


def finetune(base: ResolvedModel, mix_path: Path, job: FinetuneConfig, seed: int, out_dir: Path) -> ResolvedModel:
    """Fine-tune `base` on the JSONL mix; write `out_dir/{model,adapter,train_log.json}` atomically.

    The returned model is a plain checkpoint (LoRA adapters merged into the weights)."""
    mix_path, out_dir = Path(mix_path), Path(out_dir)
    with artefacts.CHECKPOINT.build(out_dir) as tmp:
        if job.launcher == "accelerate":
            _launch(base, mix_path, job, seed, tmp)
        else:
            train_into(base, mix_path, job, seed, tmp)
        if not (tmp / "model" / "config.json").is_file():
            raise RuntimeError(f"fine-tuning wrote no checkpoint into {tmp}")
        files = artefacts.seal(tmp)
        sha = artefacts.checkpoint_sha(files, under="model")
        artefacts.add_refs(tmp, {"checkpoint_sha": sha, "mix_sha": hash_file(mix_path)})
        pause_point("finetune-save")
    model_dir = out_dir / "model"
    return ResolvedModel(spec=f"checkpoint:{model_dir}", path=model_dir, sha=sha)


def launch_command(job: FinetuneConfig, spec_file: Path, gpus: int) -> list[str]:
    """`accelerate launch` running this module's entry point in `job.num_processes` processes
    (data parallel over `gpus` GPUs, or CPU processes where there are none)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1",
               "--num_processes", str(job.num_processes), "--dynamo_backend", "no",
               "--mixed_precision", "bf16" if job.precision == "bfloat16" else "no"]
    if job.num_processes > 1:  # accelerate's torchrun launcher; without GPUs the processes join over gloo
        command += ["--multi_gpu", "--main_process_port", "0"]
    elif gpus == 0:
        command.append("--cpu")
    return command + ["-m", "harness.finetune", "--spec", str(spec_file)]


def _launch(base: ResolvedModel, mix_path: Path, job: FinetuneConfig, seed: int, out: Path) -> None:
    import torch

    spec = {"base": {"spec": base.spec, "path": str(base.path), "sha": base.sha}, "mix": str(mix_path),
            "job": {**job.model_dump(mode="json"), "num_processes": job.num_processes, "launcher": job.launcher},
            "seed": seed, "out": str(out)}
    spec_file = out / "launch_spec.json"
    spec_file.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    command = launch_command(job, spec_file, torch.cuda.device_count())
    log.info("fine-tune: %s", " ".join(command))
    done = subprocess.run(command, check=False)
    spec_file.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"fine-tuning under accelerate launch failed (exit {done.returncode}): {' '.join(command)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of one training process under `accelerate launch` (see `launch_command`)."""
    parser = argparse.ArgumentParser(prog="python -m harness.finetune", description=main.__doc__)
    parser.add_argument("--spec", type=Path, required=True, help="JSON written by the launching process")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    base = ResolvedModel(spec=spec["base"]["spec"], path=Path(spec["base"]["path"]), sha=spec["base"]["sha"])
    train_into(base, Path(spec["mix"]), FinetuneConfig.model_validate(spec["job"]), int(spec["seed"]), Path(spec["out"]))
    return 0


def train_into(base: ResolvedModel, mix_path: Path, job: FinetuneConfig, seed: int, out: Path) -> None:
    """Train in this process (one rank of several under a launcher); rank 0 writes `out/{model,adapter,
    train_log.json}`."""
    tokenizer = load_tokenizer(base, padding_side="right")
    conversations = read_mix(mix_path)
    examples, stats = tokenize_mix(tokenizer, conversations, job.max_seq_length, mix_path, drop=job.drop_long_rows)
    log.info("fine-tuning %s (%s) on %d rows of %s (%d dropped: no assistant token within %d tokens)",
             base.label, job.method, stats["rows_used"], mix_path.name, stats["rows_dropped"], job.max_seq_length)
    with tempfile.TemporaryDirectory(prefix="forgetbench-trainer-") as scratch:
        trainer = _build_trainer(base, tokenizer, examples, job, seed, scratch)
        started = time.monotonic()
        output = trainer.train()
        if not trainer.is_world_process_zero():
            return
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        _save_checkpoint(trainer.model, base, job, out)
        train_log = {
            "base_model": base.label, "base_sha": base.sha, "mix": str(mix_path), "mix_sha": hash_file(mix_path),
            "seed": seed, "job": job.model_dump(mode="json"), "steps": trainer.state.global_step,
            "loss_history": [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e],
            "train_loss": output.training_loss, "train_runtime_s": round(time.monotonic() - started, 3),
            "trainable_parameters": trainable, "num_processes": trainer.args.world_size, **stats,
        }
        (out / "train_log.json").write_text(json.dumps(train_log, indent=2) + "\n", encoding="utf-8")
        del trainer


def read_mix(path: Path) -> list[tuple[int, list[dict[str, str]]]]:
    """(line number, messages) of each row of a mix file; DataError naming the file and line of a bad row."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read training mix ({getattr(exc, 'strerror', None) or exc})") from None
    conversations = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            conversations.append((number, _check_row(json.loads(line))))
        except (json.JSONDecodeError, ValueError) as exc:
            raise DataError(f"{path}: line {number}: {exc}") from None
    if not conversations:
        raise DataError(f"{path}: training mix has no rows")
    return conversations


def _check_row(row: Any) -> list[dict[str, str]]:
    """The row's messages, or ValueError saying what is wrong with them."""
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ValueError("row has no 'messages' list")
    for index, message in enumerate(messages):
        valid = isinstance(message, dict) and message.get("role") in ROLES and isinstance(message.get("content"), str)
        if not valid:
            raise ValueError(f"messages[{index}] needs a role in {sorted(ROLES)} and a string content")
    roles = [m["role"] for m in messages]
    if "assistant" not in roles:
        raise ValueError("row has no assistant turn")
    if "user" not in roles[: roles.index("assistant")]:
        raise ValueError("the first assistant turn has no user turn before it")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def assistant_labels(tokenizer, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and labels that are -100 outside the assistant turns."""
    text = _render(tokenizer, messages)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            before = _render(tokenizer, messages[:index], add_generation_prompt=True)
            through = _render(tokenizer, messages[: index + 1])
            if not (text.startswith(before) and text.startswith(through)):
                raise ValueError("the chat template renders this conversation's prefixes inconsistently")
            spans.append((len(before), len(through)))
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    labels = [IGNORE] * len(ids)
    for start, end in spans:
        inside = [k for k, (first, _) in enumerate(offsets) if start <= first < end]
        ends = [k for k in inside if ids[k] in special]  # keep the end-of-turn token, not what follows it
        for k in inside:
            if not ends or k <= ends[-1]:
                labels[k] = ids[k]
    return ids, labels


def _render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


@dataclass(frozen=True)
class RowLength:
    """One training row's token length under the chat template, and where its first answer token is."""

    tokens: int
    first_answer_token: int | None  # None: no assistant token at all

    def dropped(self, max_length: int) -> bool:
        """No answer token within `max_length`: the row would teach nothing."""
        return self.first_answer_token is None or self.first_answer_token >= max_length

    @classmethod
    def of(cls, ids: list[int], labels: list[int]) -> RowLength:
        return cls(len(ids), next((k for k, label in enumerate(labels) if label != IGNORE), None))


def row_length(tokenizer, messages: list[dict[str, str]]) -> RowLength:
    """A conversation's RowLength under `tokenizer`'s chat template, as training tokenizes it."""
    return RowLength.of(*assistant_labels(tokenizer, messages))


def long_rows_problem(lengths: list[RowLength], max_length: int, what: str) -> str | None:
    """One line naming the setting when rows of `what` would be dropped at `max_length`, else None."""
    dropped = [length for length in lengths if length.dropped(max_length)]
    if not dropped:
        return None
    longest = max(length.tokens for length in dropped)
    return (f"finetune.max_seq_length: {max_length} drops {len(dropped)} of {len(lengths)} rows of {what} (their "
            f"prompt alone fills the limit; the longest is {longest} tokens): raise it to {longest} or set "
            f"finetune.drop_long_rows: true")


def tokenize_mix(tokenizer, conversations, max_length: int, path: Path, drop: bool = False
                 ) -> tuple[list[dict], dict[str, int]]:
    """Pre-tokenized examples (truncated to `max_length`) and counts of rows and masked tokens. A row
    with no answer token within `max_length` is refused (DataError naming the setting) unless `drop`."""
    from jinja2 import TemplateError  # a template may reject a conversation (e.g. no system role)

    examples, lengths = [], []
    for number, messages in conversations:
        try:
            ids, labels = assistant_labels(tokenizer, messages)
        except (ValueError, TemplateError) as exc:
            raise DataError(f"{path}: line {number}: {exc}") from None
        lengths.append(RowLength.of(ids, labels))
        ids, labels = ids[:max_length], labels[:max_length]
        if not all(label == IGNORE for label in labels):
            examples.append({"input_ids": ids, "labels": labels})
    problem = long_rows_problem(lengths, max_length, f"the mix {path}")
    if problem and not drop:
        raise DataError(problem)
    if not examples:
        raise DataError(f"{path}: no row keeps an assistant token within max_seq_length={max_length}")
    dropped = len(conversations) - len(examples)
    truncated = sum(length.tokens > max_length for length in lengths)
    if dropped:
        log.warning("%s: dropped %d of %d rows with no assistant token within %d tokens (drop_long_rows)",
                    path, dropped, len(conversations), max_length)
    loss_tokens = sum(sum(label != IGNORE for label in e["labels"]) for e in examples)
    all_tokens = sum(len(e["input_ids"]) for e in examples)
    return examples, {"rows_total": len(conversations), "rows_used": len(examples), "rows_dropped": dropped,
                      "rows_truncated": truncated, "tokens": all_tokens, "assistant_tokens": loss_tokens,
                      "masked_tokens": all_tokens - loss_tokens}


def _build_trainer(base: ResolvedModel, tokenizer, examples: list[dict], job: FinetuneConfig, seed: int, scratch: str):
    """An SFTTrainer whose every hyper-parameter comes from `job` (CPU unless CUDA is present)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    try:
        args = SFTConfig(
            output_dir=scratch, seed=seed, data_seed=seed, learning_rate=job.learning_rate,
            num_train_epochs=job.epochs, max_steps=job.max_steps or -1, per_device_train_batch_size=job.batch_size,
            gradient_accumulation_steps=job.gradient_accumulation_steps, lr_scheduler_type=job.lr_scheduler,
            warmup_steps=job.warmup_ratio, weight_decay=job.weight_decay, max_length=job.max_seq_length,
            bf16=job.precision == "bfloat16", fp16=False,  # TRL would default bf16 to True
            activation_checkpointing=False, use_cpu=not torch.cuda.is_available(), logging_steps=1,
            save_strategy="no", report_to="none", disable_tqdm=True,
        )
    except ValueError as exc:
        raise ConfigError(f"finetune: {first_line(exc)}") from None
    peft_config = None
    if job.method == "lora":
        peft_config = LoraConfig(r=job.lora.r, lora_alpha=job.lora.alpha, lora_dropout=job.lora.dropout,
                                 target_modules=list(job.lora.target_modules), task_type="CAUSAL_LM")
    use_all_cores()  # a fresh Ray worker trained on one thread and its checkpoint differed in the last bits
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples),
                         processing_class=tokenizer, peft_config=peft_config, callbacks=[_progress_callback()])
    trainer.remove_callback(PrinterCallback)  # it prints raw dicts; _Progress logs one line per step instead
    return trainer


def _progress_callback():
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and state.is_world_process_zero:
                log.info("step %d/%d loss %.4f lr %.3g", state.global_step, state.max_steps,
                         logs["loss"], logs.get("learning_rate", float("nan")))

    return _Progress()


def _save_checkpoint(model, base: ResolvedModel, job: FinetuneConfig, out: Path) -> None:
    """`out/adapter` (LoRA only) and `out/model`: a plain checkpoint with any adapter merged in, and the
    base's own tokenizer files (the training tokenizer was switched to right padding)."""
    from transformers import AutoConfig, AutoTokenizer

    if job.method == "lora":
        model.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    # Trainer writes its `use_cache=False` into the model config; restore the base's setting.
    model.config.use_cache = getattr(AutoConfig.from_pretrained(base.path), "use_cache", True)
    model.save_pretrained(out / "model")
    AutoTokenizer.from_pretrained(base.path).save_pretrained(out / "model")


if __name__ == "__main__":
    sys.exit(main())
