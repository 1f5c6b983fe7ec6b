"""The GPU and cluster paths, checked on CPU where they can be: vLLM is only reached when chosen and
says which extra to install; vLLM (for generation and lm-eval's benchmarks alike, through the
`forgetbench` lm-eval model) is pointed at the fine-tuned weights (merged) or carries the run's
adapter, never the base model alone; multi-process fine-tuning runs the same job
under `accelerate launch`."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest

from harness.config import FinetuneConfig
from harness.errors import ConfigError, ModelError
from harness.evaluation.lm_eval_runner import load_lm
from harness.finetune import finetune, launch_command
from harness.generation import make_backend, vllm_target

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory):
    """A real LoRA fine-tune of the tiny model: `<run>/model` (merged) and `<run>/adapter`."""
    folder = tmp_path_factory.mktemp("lora-run")
    mix = folder / "mix.jsonl"
    mix.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"question {i}"},
                                                    {"role": "assistant", "content": f"answer {i}"}]}) + "\n"
                           for i in range(4)))
    job = FinetuneConfig(method="lora", max_steps=1, batch_size=2, max_seq_length=64)
    return finetune(tiny_model, mix, job, 0, folder / "run"), mix


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed here")
@pytest.mark.parametrize("backend", ["vllm", "vllm-lora"])
def test_vllm_backends_name_the_extra_when_vllm_is_missing(backend, tiny_model):
    with pytest.raises(ConfigError, match=r"pip install 'forgetbench\[vllm\]'"):
        make_backend(backend, tiny_model)
    with pytest.raises(ConfigError, match=r"pip install 'forgetbench\[vllm\]'"):
        load_lm(tiny_model, 2, backend)


def test_vllm_serves_the_merged_checkpoint_not_its_base(lora_run, tiny_model):
    run, _ = lora_run
    target = vllm_target(run, "vllm")
    assert target.model_path == run.path != tiny_model.path and target.adapter is None
    assert (run.path / "config.json").is_file() and run.sha != tiny_model.sha  # the merged fine-tuned weights


def test_vllm_lora_carries_the_runs_adapter_on_its_base(lora_run, tiny_model):
    run, _ = lora_run
    target = vllm_target(run, "vllm-lora")
    adapter = run.path.parent / "adapter"
    assert target.model_path == tiny_model.path.resolve()
    assert target.adapter == adapter.resolve() and (adapter / "adapter_model.safetensors").is_file()
    rank = json.loads((adapter / "adapter_config.json").read_text())["r"]
    assert target.max_lora_rank >= rank


def test_vllm_lora_serves_a_model_without_adapter_as_it_is(tiny_model):
    target = vllm_target(tiny_model, "vllm-lora")  # the seed model: the baseline run
    assert target.model_path == tiny_model.path and target.adapter is None


def test_vllm_lora_refuses_an_adapter_whose_base_is_not_a_local_checkpoint(lora_run, tmp_path):
    run, _ = lora_run
    copy = tmp_path / "run"
    shutil.copytree(run.path.parent, copy)
    config_file = copy / "adapter" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "base_model_name_or_path": "org/not-here"}))
    moved = type(run)(spec=run.spec, path=copy / "model", sha=run.sha)
    with pytest.raises(ModelError, match=r"adapter_config.json: base_model_name_or_path 'org/not-here'"):
        vllm_target(moved, "vllm-lora")


def test_lm_eval_benchmarks_run_on_the_harness_backend(tiny_model):
    from harness.evaluation.lm_model import BackendLM

    lm = load_lm(tiny_model, 4, "transformers")
    assert isinstance(lm, BackendLM) and lm.backend.name == "transformers" and lm.backend.batch_size == 4
    shared = make_backend("transformers", tiny_model)
    assert load_lm(None, None, shared).backend is shared  # an existing backend: one model load for everything


def test_accelerate_launch_command_runs_this_job_in_n_processes(tmp_path):
    job = FinetuneConfig(num_processes=4, launcher="accelerate", precision="bfloat16")
    command = launch_command(job, tmp_path / "spec.json", gpus=4)
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "4" and "--multi_gpu" in command
    assert command[command.index("--mixed_precision") + 1] == "bf16"
    assert command[-4:] == ["-m", "harness.finetune", "--spec", str(tmp_path / "spec.json")]
    single = launch_command(FinetuneConfig(launcher="accelerate"), tmp_path / "spec.json", gpus=0)
    assert "--cpu" in single and "--multi_gpu" not in single


def test_more_processes_than_one_need_the_accelerate_launcher():
    with pytest.raises(ValueError, match="num_processes 2 needs launcher: accelerate"):
        FinetuneConfig(num_processes=2)


def test_process_count_is_in_the_job_hash_only_when_it_is_not_one():
    assert "num_processes" not in FinetuneConfig().model_dump() and "launcher" not in FinetuneConfig().model_dump()
    assert FinetuneConfig(launcher="accelerate").model_dump() == FinetuneConfig().model_dump()
    assert FinetuneConfig(num_processes=2, launcher="accelerate").model_dump()["num_processes"] == 2


def test_two_cpu_processes_under_accelerate_train_one_checkpoint(lora_run, tiny_model, tmp_path):
    _, mix = lora_run
    job = FinetuneConfig(method="lora", max_steps=1, batch_size=2, max_seq_length=64, num_processes=2,
                         launcher="accelerate")
    model = finetune(tiny_model, mix, job, 0, tmp_path / "run")
    log = json.loads((tmp_path / "run" / "train_log.json").read_text())
    assert log["num_processes"] == 2 and log["steps"] == 1
    assert (model.path / "config.json").is_file() and (tmp_path / "run" / "adapter").is_dir()
    assert not (tmp_path / "run" / "launch_spec.json").exists()


def test_the_cpu_evaluation_path_imports_neither_vllm_nor_ray():
    code = ("import sys; import harness.study, harness.executors, harness.generation, harness.evaluation.ifeval, "
            "harness.evaluation.leaderboard_tasks, harness.evaluation.lm_model, harness.finetune; "
            "from lm_eval import simple_evaluate; print(sorted(m for m in ('vllm', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
