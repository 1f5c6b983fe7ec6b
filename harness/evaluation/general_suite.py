"""The small-model general suite: ARC-Easy, ARC-Challenge, PIQA, WinoGrande, BoolQ, MMLU, HellaSwag.

These are the benchmarks a 135M model is measured with (SmolLM2's model card: HellaSwag 40.9, ARC 37.3,
PIQA 66.3), where it sits well above chance and so has something to lose; the Open LLM Leaderboard v2
four (MMLU-Pro, GPQA, IFEval, MATH-L5) sit at chance or zero at that size.

Each benchmark is **lm-eval's own stock task** (its prompt, choices, target, metrics) run through the
one lm-eval runner (harness.evaluation.lm_eval_runner); only the data source is swapped:
- without a data directory, the stock YAML as it is (its Hub id: `allenai/ai2_arc`, `baber/piqa`, ...);
- with the local mirror, a YAML that `include:`s the stock one and names `custom_dataset: !function
  data_shim.load`: a loader below that reads the mirror file into an in-memory `datasets.DatasetDict`
  with the Hub set's fields and the split lm-eval evaluates (the other split names are set to null:
  the mirror has only that split). The stock `process_docs`, `doc_to_text` ... then run unchanged.

Departures from the Hub data, recorded in the result's settings and shown in the paper view's
`lb_notes`: HellaSwag comes from the mirror's derived llama.cpp text form (wikiHow markup already
stripped, `ctx_b` not capitalised: lm-eval's query differs in those details). PIQA, WinoGrande, BoolQ,
ARC and MMLU hold the original files (see the mirror's MANIFEST).

Chat template: off by default (`chat_template: false`), as lm-eval's own CLI and the model card
measure these; a recorded parameter, since it changes log-likelihood scores.

Primary metrics as the Open LLM Leaderboard v1 used them: acc_norm for ARC and HellaSwag, acc for
WinoGrande, BoolQ and MMLU, acc_norm for PIQA. MMLU runs the 57 subject tasks (cloze form
`mmlu_<subject>_continuation` by default, the letter form `mmlu_<subject>` as an option) pooled over
every drawn question, as lm-eval's `mmlu` group aggregates (weight by size).
"""
from __future__ import annotations

import bz2
import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError, first_line
from harness.evaluation import lm_eval_runner as runner
from harness.hashing import hash_file, hash_json
from harness.paths import mirror_file
from harness.results import BenchmarkResult, ExampleResult, Score
from harness.subsets import paired_subset

log = logging.getLogger("harness.evaluation")

MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology",
    "world_religions",
)


@dataclass(frozen=True)
class SuiteTask:
    """One benchmark of the suite: which stock lm-eval task(s), where the mirror keeps its data, how."""

    benchmark: str
    hub_id: str
    mirror: tuple[str, ...]  # mirror files (relative to the data directory) the loader reads
    split: str  # the split the stock task evaluates (its test or validation split)
    loader: str  # the function of this module that reads the mirror into the Hub's fields
    key: Callable[[dict], str] | None = None  # a document's identity (example id); None: its position
    departure: str | None = None  # how the mirror's data depart from the Hub's, for lb_notes


def _arc_key(doc: dict) -> str:
    return str(doc["id"])


def _winogrande_key(doc: dict) -> str:
    return str(doc["qID"])


SUITE = {
    "arc_easy": SuiteTask("arc_easy", "allenai/ai2_arc (ARC-Easy)", ("eval/arc_easy/ARC-Easy-Test.jsonl",), "test",
                          "load_arc", key=_arc_key),
    "arc_challenge": SuiteTask("arc_challenge", "allenai/ai2_arc (ARC-Challenge)",
                               ("eval/arc_challenge/ARC-Challenge-Test.jsonl",), "test", "load_arc", key=_arc_key),
    "piqa": SuiteTask("piqa", "baber/piqa", ("eval/piqa/valid.jsonl", "eval/piqa/valid-labels.lst"), "validation",
                      "load_piqa"),
    "winogrande": SuiteTask("winogrande", "allenai/winogrande (winogrande_xl)", ("eval/winogrande/dev.jsonl",),
                            "validation", "load_winogrande", key=_winogrande_key),
    "boolq": SuiteTask("boolq", "aps/super_glue (boolq)", ("eval/boolq/dev.jsonl",), "validation", "load_boolq"),
    "hellaswag": SuiteTask("hellaswag", "Rowan/hellaswag", ("eval/hellaswag/hellaswag_val_full.txt.bz2",), "validation",
                           "load_hellaswag",
                           departure="hellaswag: the mirror's llama.cpp text form (wikiHow markup stripped, ctx_b "
                                     "not capitalised)"),
    "mmlu": SuiteTask("mmlu", "cais/mmlu", ("eval/mmlu/test", "eval/mmlu/dev"), "test", "load_mmlu"),
}
_SPLIT_KEYS = ("training_split", "validation_split", "test_split")
_STOCK = {"arc_easy": "arc/arc_easy.yaml", "arc_challenge": "arc/arc_challenge.yaml", "piqa": "piqa/piqa.yaml",
          "winogrande": "winogrande/default.yaml", "boolq": "super_glue/boolq/default.yaml",
          "hellaswag": "hellaswag/hellaswag.yaml"}


def task_names(benchmark: str, mmlu_form: str = "continuation") -> dict[str, str]:
    """lm-eval task name -> its stock YAML (relative to lm_eval/tasks/) for one benchmark of the suite."""
    if benchmark != "mmlu":
        return {benchmark: _STOCK[benchmark]}
    if mmlu_form == "continuation":
        return {f"mmlu_{s}_continuation": f"mmlu/continuation/mmlu_{s}.yaml" for s in MMLU_SUBJECTS}
    return {f"mmlu_{s}": f"mmlu/default/mmlu_{s}.yaml" for s in MMLU_SUBJECTS}


def mirror_paths(spec: SuiteTask, data_dir: Path | None) -> list[Path] | None:
    """The mirror files (or MMLU's folders) of `spec`, resolved; None for the Hub. DataError naming a
    missing one."""
    if data_dir is None:
        return None
    paths = []
    for relative in spec.mirror:
        path = Path(data_dir) / relative
        if relative.startswith("eval/mmlu/"):
            if not path.is_dir():
                raise DataError(f"{path}: data folder of {spec.benchmark} not found; point --data-dir or "
                                f"FORGETBENCH_DATA_DIR at a mirror that has it, or unset them to load {spec.hub_id}")
        else:
            mirror_file(data_dir, relative, spec.benchmark, hub_id=spec.hub_id, hub_fallback=True)
        paths.append(path.resolve())
    return paths


def data_fingerprint(spec: SuiteTask, data_dir: Path | None) -> dict[str, Any]:
    """The mirror files' hashes (every CSV for MMLU), or the Hub id; part of the cache key."""
    paths = mirror_paths(spec, data_dir)
    if paths is None:
        return {"hub": spec.hub_id}
    files = [f for p in paths for f in (sorted(p.glob("*.csv")) if p.is_dir() else [p])]
    return {"data": hash_json({f.name: hash_file(f) for f in files})}


def evaluate_suite_task(spec: SuiteTask, lm, *, data_dir: Path | None, limit: int | None, subset_seed: int,
                        chat_template: bool, mmlu_form: str = "continuation") -> BenchmarkResult:
    """One benchmark of the suite on `lm` (an lm-eval LM): its stock task(s) on the seeded subset."""
    from lm_eval.tasks import TaskManager

    started = time.monotonic()
    paths = mirror_paths(spec, data_dir)
    yamls = {name: _task_yaml(spec, name, stock, paths) for name, stock in task_names(spec.benchmark, mmlu_form).items()}
    manager = TaskManager(include_defaults=False)
    # ERROR: lm-eval warns, for every task with a custom loader, that loaders can take `--metadata`
    with runner.quiet_lm_eval(logging.ERROR):
        try:
            loaded = manager.load([str(path) for path in yamls.values()])["tasks"]
        except DataError:
            raise
        except Exception as exc:  # offline without the mirror, a renamed Hub set: one line for the user
            where = "the mirror" if paths else f"the Hub ({spec.hub_id})"
            raise DataError(f"{spec.benchmark}: lm-eval could not load its data from {where} ({first_line(exc)}); "
                            f"with no network, point --data-dir or FORGETBENCH_DATA_DIR at the data mirror") from None
    tasks = {name: runner.keep_docs(loaded[name]) for name in yamls}
    chosen, keys = _draw(spec, tasks, limit, subset_seed)
    chosen = {name: indices for name, indices in chosen.items() if indices}
    sizes = {name: len(task_keys) for name, task_keys in keys.items()}
    log.info("%s: %d of %d documents (%s), chat template %s", spec.benchmark, sum(map(len, chosen.values())),
             sum(sizes.values()), "mirror" if paths else spec.hub_id, "on" if chat_template else "off")
    output = runner.run_tasks(lm, manager, {n: tasks[n] for n in chosen}, chosen, sizes, chat_template=chat_template)
    parts = {name: runner.task_result(spec.benchmark, name, output, primary=PRIMARY[spec.benchmark], generative=False,
                                      chosen=indices, keys=keys[name])
             for name, indices in chosen.items()}
    result = parts[spec.benchmark] if spec.benchmark in parts else pool(spec.benchmark, parts)
    from lm_eval import __version__ as lm_eval_version

    result.settings.update(
        tasks=sorted(chosen) if spec.benchmark == "mmlu" else None, task=None if spec.benchmark == "mmlu" else spec.benchmark,
        mmlu_form=mmlu_form if spec.benchmark == "mmlu" else None, limit=limit, subset_seed=subset_seed,
        chat_template=chat_template, num_fewshot=0, output_type="multiple_choice", **runner.generation_settings(lm),
        data_source="mirror " + ", ".join(spec.mirror) if paths else f"hub:{spec.hub_id}",
        data_note=spec.departure if paths else None,
        docs_sha256=hash_json({name: [keys[name][i] for i in indices] for name, indices in chosen.items()}),
        lm_eval_version=lm_eval_version, seconds=round(time.monotonic() - started, 1),
    )
    primary = result.scores[0]
    log.info("%s: %s = %.3f over %d in %.0f s", spec.benchmark, primary.metric, primary.value, primary.n,
             time.monotonic() - started)
    return result


PRIMARY = {"arc_easy": "acc_norm", "arc_challenge": "acc_norm", "hellaswag": "acc_norm", "piqa": "acc_norm",
           "winogrande": "acc", "boolq": "acc", "mmlu": "acc"}  # the Open LLM Leaderboard v1's metrics


def _draw(spec: SuiteTask, tasks: dict[str, Any], limit: int | None, seed: int):
    """The chosen document positions per task and every document's key per task: one draw of `limit`
    over all the benchmark's documents (MMLU: `subject/position` over the 57 subjects)."""
    keys = {}
    for name, task in tasks.items():
        docs = task.eval_docs
        if spec.key is not None:
            keys[name] = [spec.key(doc) for doc in docs]
        elif len(tasks) > 1:
            keys[name] = [f"{_subject(name)}/{i}" for i in range(len(docs))]
        else:
            keys[name] = [str(i) for i in range(len(docs))]
    every = [(name, i, key) for name, ks in keys.items() for i, key in enumerate(ks)]
    picked = paired_subset(every, limit, seed, keys=[key for _, _, key in every])
    chosen: dict[str, list[int]] = {name: [] for name in tasks}
    for name, i, _ in picked:
        chosen[name].append(i)
    return chosen, keys


def _subject(task_name: str) -> str:
    return task_name.removeprefix("mmlu_").removesuffix("_continuation")


def pool(label: str, parts: dict[str, BenchmarkResult]) -> BenchmarkResult:
    """Several tasks' results as one, every document weighted alike (lm-eval's `weight_by_size`
    aggregation): each metric the mean over all examples; stderr that of the pooled mean."""
    first = next(iter(parts.values()))
    examples = [e for result in parts.values() for e in result.examples]
    scores = []
    for name in (s.metric for s in first.scores):
        values = [e.value for e in examples if e.metric == name]
        mean = sum(values) / len(values)
        stderr = ((sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)) ** 0.5
                  if len(values) > 1 else None)
        scores.append(Score(name, mean, stderr, len(values)))
    return BenchmarkResult(benchmark=label, primary_metric=first.primary_metric, scores=scores,
                           examples=[ExampleResult(e.example_id, e.metric, e.value, e.prediction, e.target)
                                     for e in examples])


def _task_yaml(spec: SuiteTask, name: str, stock: str, paths: list[Path] | None) -> Path:
    """The stock YAML itself for the Hub; with the mirror, one that includes it and swaps the data."""
    if paths is None:
        return runner.stock_yaml(stock)
    kwargs: dict[str, Any] = {"files": [str(p) for p in paths], "split": spec.split}
    if spec.benchmark == "mmlu":
        kwargs["subject"] = _subject(name)
    body = {"include": str(runner.stock_yaml(stock)), "task": name, "dataset_kwargs": kwargs,
            **{key: None for key in _SPLIT_KEYS}}
    body["test_split" if spec.split == "test" else "validation_split"] = spec.split
    if spec.benchmark == "mmlu":
        body["fewshot_split"] = "dev"
    return runner.local_task_yaml(name, f"{name}.yaml", body, functions={"custom_dataset": spec.loader},
                                  shim=f"from harness.evaluation.general_suite import {spec.loader}\n")


# Loaders: the mirror's files -> the Hub set's fields, as lm-eval's stock task reads them. lm-eval calls
# them with the YAML's `dataset_kwargs` (and its `metadata`, ignored).

def _dataset(split: str, rows: list[dict], **more: list[dict]):
    import datasets

    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows),
                                 **{name: datasets.Dataset.from_list(r) for name, r in more.items()}})


def _jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _labels(path: str, count: int, what: str) -> list[str]:
    labels = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(labels) != count:
        raise DataError(f"{path}: {len(labels)} labels for {count} {what} rows (the files must align line by line)")
    return labels


def load_arc(files: list[str], split: str, **_: Any):
    """ARC's AI2 file (question{stem, choices[{text, label}]}) -> allenai/ai2_arc's fields."""
    rows = [{"id": r["id"], "question": r["question"]["stem"],
             "choices": {"text": [c["text"] for c in r["question"]["choices"]],
                         "label": [c["label"] for c in r["question"]["choices"]]},
             "answerKey": r["answerKey"]} for r in _jsonl(files[0])]
    return _dataset(split, rows)


def load_piqa(files: list[str], split: str, **_: Any):
    """PIQA's valid.jsonl + valid-labels.lst -> baber/piqa's fields (goal, sol1, sol2, label)."""
    rows = _jsonl(files[0])
    labels = _labels(files[1], len(rows), "PIQA")
    return _dataset(split, [{"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": int(label)}
                            for r, label in zip(rows, labels)])


def load_winogrande(files: list[str], split: str, **_: Any):
    """WinoGrande 1.1 dev -> allenai/winogrande's fields (sentence, option1, option2, answer "1"/"2")."""
    return _dataset(split, [{"qID": r["qID"], "sentence": r["sentence"], "option1": r["option1"],
                             "option2": r["option2"], "answer": str(r["answer"])} for r in _jsonl(files[0])])


def load_boolq(files: list[str], split: str, **_: Any):
    """BoolQ dev (answer true/false) -> super_glue boolq's fields (question, passage, idx, label 1 = yes)."""
    return _dataset(split, [{"question": r["question"], "passage": r["passage"], "idx": i, "label": int(bool(r["answer"]))}
                            for i, r in enumerate(_jsonl(files[0]))])


def load_hellaswag(files: list[str], split: str, **_: Any):
    """The llama.cpp text form (6 lines a task: `activity_label: ctx`, gold label, 4 endings) ->
    Rowan/hellaswag's fields; the context goes to `ctx_a` whole (`ctx_b` empty), so lm-eval's own
    `process_docs` builds `activity_label: ctx` as its query."""
    with bz2.open(files[0], "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) % 6:
        raise DataError(f"{files[0]}: {len(lines)} lines, not a multiple of 6 (context, label, 4 endings per task)")
    rows = []
    for i in range(0, len(lines), 6):
        label, _, context = lines[i].partition(": ")
        rows.append({"ind": i // 6, "activity_label": label, "ctx_a": context, "ctx_b": "", "ctx": context,
                     "endings": lines[i + 2:i + 6], "label": lines[i + 1].strip()})
    return _dataset(split, rows)


def load_mmlu(files: list[str], split: str, subject: str, **_: Any):
    """One subject's hendrycks CSVs (question, A, B, C, D, answer letter) -> cais/mmlu's fields
    (question, subject, choices, answer index), test and dev (the few-shot split)."""
    def read(folder: str, part: str) -> list[dict]:
        path = Path(folder) / f"{subject}_{part}.csv"
        if not path.is_file():
            raise DataError(f"{path}: MMLU {part} file of {subject} not found")
        with path.open(encoding="utf-8", newline="") as handle:
            return [{"question": r[0], "subject": subject, "choices": r[1:5], "answer": "ABCD".index(r[5].strip())}
                    for r in csv.reader(handle)]

    return _dataset(split, read(files[0], "test"), dev=read(files[1], "dev"))
