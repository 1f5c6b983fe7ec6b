"""The small-model general suite gives what lm-eval's own CLI gives on the same documents (slow, real SmolLM2).

For each of the seven benchmarks the harness result (its mirror loader, its seeded subset, lm-eval's
`forgetbench` model over the harness backend) is compared with lm-eval run the way its CLI runs:
`simple_evaluate(model="hf", ...)` on the **stock** task YAML, included by a YAML this test writes
that swaps only the data source for `dataset_path: json` on files this test converts from the mirror
itself (not through the harness's loaders), on the documents the harness drew (`samples`), with the
same chat-template setting. Per-example values and every score must be equal.
"""
from __future__ import annotations

import bz2
import csv
import json
import os
from pathlib import Path

import pytest
import yaml

from harness.evaluation import general_suite
from harness.evaluation.lm_eval_runner import stock_yaml
from harness.evaluation.lm_model import lm_for
from harness.generation import GenerationCache, TransformersBackend

pytestmark = pytest.mark.slow
# FORGETBENCH_SUITE_LIMIT=100 pytest -s ... prints each benchmark's scores on both sides at a larger size
LIMIT, SEED = int(os.environ.get("FORGETBENCH_SUITE_LIMIT", 12)), 3


# -- the mirror, converted to the Hub sets' fields by this test alone ---------------------------------

def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def hub_rows(name: str, data_dir: Path) -> dict[str, list[dict]]:
    """Subject/task name -> rows in the Hub set's fields (MMLU: one entry per subject, test and dev)."""
    eval_dir = data_dir / "eval"
    if name in ("arc_easy", "arc_challenge"):
        file = {"arc_easy": "arc_easy/ARC-Easy-Test.jsonl", "arc_challenge": "arc_challenge/ARC-Challenge-Test.jsonl"}
        return {name: [{"id": r["id"], "question": r["question"]["stem"], "answerKey": r["answerKey"],
                        "choices": {"text": [c["text"] for c in r["question"]["choices"]],
                                    "label": [c["label"] for c in r["question"]["choices"]]}}
                       for r in _jsonl(eval_dir / file[name])]}
    if name == "piqa":
        labels = _lines(eval_dir / "piqa/valid-labels.lst")
        return {name: [dict(goal=r["goal"], sol1=r["sol1"], sol2=r["sol2"], label=int(y))
                       for r, y in zip(_jsonl(eval_dir / "piqa/valid.jsonl"), labels, strict=True)]}
    if name == "winogrande":
        return {name: [dict(qID=r["qID"], sentence=r["sentence"], option1=r["option1"], option2=r["option2"],
                            answer=str(r["answer"])) for r in _jsonl(eval_dir / "winogrande/dev.jsonl")]}
    if name == "boolq":
        return {name: [dict(question=r["question"], passage=r["passage"], idx=i, label=1 if r["answer"] else 0)
                       for i, r in enumerate(_jsonl(eval_dir / "boolq/dev.jsonl"))]}
    if name == "hellaswag":
        with bz2.open(eval_dir / "hellaswag/hellaswag_val_full.txt.bz2", "rt", encoding="utf-8") as handle:
            lines = handle.read().rstrip("\n").split("\n")
        rows = []
        for start in range(0, len(lines), 6):
            activity, _, context = lines[start].partition(": ")
            rows.append(dict(ind=start // 6, activity_label=activity, ctx_a=context, ctx_b="", ctx=context,
                             endings=lines[start + 2:start + 6], label=lines[start + 1].strip()))
        return {name: rows}
    raise AssertionError(name)


def mmlu_rows(subject: str, data_dir: Path, part: str) -> list[dict]:
    with (data_dir / "eval/mmlu" / part / f"{subject}_{part}.csv").open(encoding="utf-8", newline="") as handle:
        return [dict(question=r[0], subject=subject, choices=r[1:5], answer="ABCD".index(r[5].strip()))
                for r in csv.reader(handle)]


def reference_task(folder: Path, task: str, stock: str, splits: dict[str, list[dict]]) -> str:
    """A YAML including lm-eval's stock `stock` with the data swapped for JSON files; its task name."""
    files = {}
    for split, rows in splits.items():
        files[split] = str(folder / f"{task}.{split}.jsonl")
        Path(files[split]).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    evaluated = next(iter(splits))
    body = {"include": str(stock_yaml(stock)), "task": f"ref_{task}", "dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": files}, "training_split": None, "validation_split": None,
            "test_split": None, "fewshot_split": "dev" if "dev" in splits else None}
    body["test_split" if evaluated == "test" else "validation_split"] = evaluated
    (folder / f"ref_{task}.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    return f"ref_{task}"


# -- the two runs -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def harness_lm(real_model, tmp_path_factory):
    return lm_for(TransformersBackend(real_model, cache=GenerationCache(tmp_path_factory.mktemp("gen") / "g.sqlite")))


@pytest.fixture(scope="module")
def hf_lm(real_model):
    from lm_eval.api.registry import get_model

    # what `lm_eval --model hf --model_args pretrained=...,dtype=float32 --device cpu --batch_size 8` builds
    return get_model("hf").create_from_arg_string(f"pretrained={real_model.path},dtype=float32",
                                                  {"batch_size": 8, "device": "cpu"})


def reference_run(name: str, ours, data_dir: Path, folder: Path, hf_lm, chat_template: bool):
    """lm-eval alone on the documents the harness evaluated: {(example id, metric): value}, scores."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    wanted: dict[str, dict[int, str]] = {}  # reference task -> {document position: the harness's example id}
    stocks = general_suite.task_names(name)
    for example_id in {e.example_id for e in ours.examples}:
        if name == "mmlu":
            subject, _, position = example_id.partition("/")
            task = f"mmlu_{subject}_continuation"
            if f"ref_{task}" not in wanted:
                reference_task(folder, task, stocks[task], {"test": mmlu_rows(subject, data_dir, "test"),
                                                            "dev": mmlu_rows(subject, data_dir, "dev")})
            wanted.setdefault(f"ref_{task}", {})[int(position)] = example_id
        else:
            if not wanted:
                rows = hub_rows(name, data_dir)[name]
                split = general_suite.SUITE[name].split
                reference_task(folder, name, stocks[name], {split: rows})
                identity = {"arc_easy": "id", "arc_challenge": "id", "winogrande": "qID"}.get(name)
                positions = {(str(r[identity]) if identity else str(i)): i for i, r in enumerate(rows)}
            wanted.setdefault(f"ref_{name}", {})[positions[example_id]] = example_id
    output = simple_evaluate(model=hf_lm, tasks=sorted(wanted), task_manager=TaskManager(include_path=str(folder),
                                                                                          include_defaults=False),
                             samples={task: sorted(ids) for task, ids in wanted.items()},
                             apply_chat_template=chat_template, log_samples=True)
    values = {}
    for task, ids in wanted.items():
        for sample in output["samples"][task]:
            for metric in ("acc", "acc_norm"):
                if metric in sample:
                    values[(ids[sample["doc_id"]], metric)] = float(sample[metric])
    return values, output


CASES = [(name, False) for name in general_suite.SUITE] + [("arc_easy", True)]


@pytest.mark.parametrize(("name", "chat_template"), CASES,
                         ids=[f"{n}-chat" if chat else n for n, chat in CASES])
def test_suite_benchmark_equals_lm_evals_own_run_of_its_stock_task(name, chat_template, data_dir, harness_lm, hf_lm,
                                                                   tmp_path):
    ours = general_suite.evaluate_suite_task(general_suite.SUITE[name], harness_lm, data_dir=data_dir, limit=LIMIT,
                                             subset_seed=SEED, chat_template=chat_template)
    theirs, output = reference_run(name, ours, data_dir, tmp_path, hf_lm, chat_template)

    assert len({e.example_id for e in ours.examples}) == LIMIT
    assert {(e.example_id, e.metric): e.value for e in ours.examples} == theirs
    reference = {}
    for score in ours.scores:
        if name == "mmlu":  # 57 subject tasks pooled, every question weighted alike (lm-eval's group aggregate)
            expected = [v for (_, metric), v in theirs.items() if metric == score.metric]
            reference[score.metric] = sum(expected) / len(expected)
        else:
            reference[score.metric] = output["results"][f"ref_{name}"][f"{score.metric},none"]
        assert score.value == pytest.approx(reference[score.metric], abs=1e-12)
    assert ours.settings["chat_template"] is chat_template
    print(f"\n{name} (chat template {'on' if chat_template else 'off'}, {LIMIT} documents): " + ", ".join(
        f"{s.metric} harness {s.value:.4f} / lm-eval {reference[s.metric]:.4f}" for s in ours.scores))
