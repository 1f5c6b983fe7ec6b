"""AlpacaEval-style pairwise win rate against reference outputs, judged by a configurable model.

- The model under test answers the instructions (seeded subset of the 805; greedy, chat template,
  harness generation backend, cached).
- The judge (any model spec; default the built-in SmolLM2, configurable with EvalConfig.judge_model)
  sees the instruction and two outputs in an order drawn per example by `random.Random(seed)` from
  (subset_seed, example id), and is asked to answer `Output (a)`, `Output (b)` or `Tie`. The verdict is
  mapped back through the order: 1 the model wins, 0 the reference wins, 0.5 a tie.
- A judgment that names neither output is *unparseable*: it is kept as an example with value NaN,
  counted (`unparseable` score, `settings.unparseable`), and left out of the win rates — never dropped
  silently.
- win_rate: mean preference over parseable judgments (ties count half), binomial-style standard error.
- lc_win_rate (our simple length control): a logistic regression of the preference on
  x = tanh((len(model) - len(reference)) / sd), fitted by Newton's method with a small L2 penalty and
  fractional targets (ties 0.5); the LC win rate is its prediction at x = 0, i.e. sigmoid(intercept).
  Standard error by a seeded bootstrap (200 resamples). The official AlpacaEval 2 GLM additionally has
  per-instruction difficulty terms fitted across many models and a model-vs-baseline term; ours uses
  only this one model's judgments, so it is a rougher correction, especially at small n.
"""
from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

from harness.errors import DataError
from harness.evaluation.domain import seeded_subset
from harness.generation import GenerationBackend, Sampling
from harness.hashing import hash_file
from harness.results import BenchmarkResult, ExampleResult, Score

INSTRUCTIONS_FILE = Path("eval/alpaca_eval/instructions.jsonl")
REFERENCES = {"text_davinci_003": Path("eval/alpaca_eval/reference_text_davinci_003.json"),
              "gpt4_1106_preview": Path("eval/alpaca_eval/reference_gpt4_1106_preview.json")}
HUB_ID = "tatsu-lab/alpaca_eval"
DEFAULT_MAX_NEW_TOKENS = 256
JUDGE_MAX_NEW_TOKENS = 16

JUDGE_PROMPT = """You are comparing two AI assistant responses to the same instruction.

Instruction:
{instruction}

Output (a):
{output_a}

Output (b):
{output_b}

Which output is more helpful, accurate and relevant? Answer with exactly one of: "Output (a)", "Output (b)" or "Tie"."""


def reference_file(data_dir: Path | None, reference: str) -> Path:
    if reference not in REFERENCES:
        raise DataError(f"alpaca_eval: unknown reference {reference!r}; choose one of {', '.join(REFERENCES)}")
    if data_dir is None:
        raise DataError(f"alpaca_eval: reads the data mirror ({REFERENCES[reference]}; Hub equivalent {HUB_ID}): "
                        "pass --data-dir or set FORGETBENCH_DATA_DIR")
    path = Path(data_dir) / REFERENCES[reference]
    if not path.is_file():
        raise DataError(f"alpaca_eval: data file {path} not found: put it there (--data-dir or FORGETBENCH_DATA_DIR); "
                        f"Hub equivalent {HUB_ID}")
    return path


def parse_verdict(text: str) -> str | None:
    """'a', 'b', 'tie' or None (unparseable). The first verdict named in the text wins."""
    pattern = re.compile(r"output\s*\(?\s*([ab])\s*\)?(?![a-z])|\(([ab])\)|\b(tie)\b", re.IGNORECASE)
    match = pattern.search(text)
    if match is None:
        stripped = text.strip().lower().strip(".\"' ")
        return stripped if stripped in ("a", "b") else None
    letter = match.group(1) or match.group(2)
    return letter.lower() if letter else "tie"


def evaluate_alpaca_eval(backend: GenerationBackend, judge: GenerationBackend, *, data_dir: Path | None,
                         reference: str, limit: int | None, subset_seed: int,
                         max_new_tokens: int | None = None) -> BenchmarkResult:
    path = reference_file(data_dir, reference)
    rows = json.loads(path.read_text(encoding="utf-8"))
    items = seeded_subset([(str(i), row) for i, row in enumerate(rows)], limit, subset_seed)
    sampling = Sampling(max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS)
    answers = backend.chat([[{"role": "user", "content": row["instruction"]}] for _, row in items], sampling,
                           desc="alpaca_eval answers")
    flips = [random.Random(f"{subset_seed}/{i}").random() < 0.5 for i, _ in items]  # True: model is (b)
    prompts = []
    for (_, row), answer, flip in zip(items, answers, flips):
        a, b = (row["output"], answer) if flip else (answer, row["output"])
        prompts.append([{"role": "user", "content": JUDGE_PROMPT.format(instruction=row["instruction"],
                                                                         output_a=a, output_b=b)}])
    verdicts = judge.chat(prompts, Sampling(max_new_tokens=JUDGE_MAX_NEW_TOKENS), desc="alpaca_eval judge")

    examples, prefs, lengths = [], [], []
    for (i, row), answer, flip, verdict in zip(items, answers, flips, verdicts):
        parsed = parse_verdict(verdict)
        if parsed is None:
            value = float("nan")
        elif parsed == "tie":
            value = 0.5
        else:
            value = 1.0 if (parsed == "b") == flip else 0.0
        if parsed is not None:
            prefs.append(value)
            lengths.append(len(answer) - len(row["output"]))
        examples.append(ExampleResult(example_id=f"alpaca_eval/{i}", metric="win", value=value, prediction=answer,
                                      target=json.dumps({"judge": verdict, "model_is": "b" if flip else "a"})))
    n, total = len(prefs), len(items)
    win = sum(prefs) / n if n else float("nan")
    win_se = math.sqrt(sum((p - win) ** 2 for p in prefs) / (n - 1) / n) if n > 1 else None
    lc, lc_se = length_controlled(prefs, lengths, seed=subset_seed)
    unparseable = total - n
    scores = [Score("win_rate", win, win_se, n), Score("lc_win_rate", lc, lc_se, n),
              Score("unparseable", unparseable / total if total else float("nan"), None, total)]
    instructions = Path(data_dir) / INSTRUCTIONS_FILE if data_dir else None
    return BenchmarkResult(
        benchmark="alpaca_eval", primary_metric="win_rate", scores=scores, examples=examples,
        settings={"limit": limit, "subset_seed": subset_seed, "max_new_tokens": sampling.max_new_tokens,
                  "decoding": "greedy", "chat_template": True, "reference": reference,
                  "reference_sha256": hash_file(path), "judge_model": judge.model.spec, "judge_sha": judge.model.sha,
                  "judge_max_new_tokens": JUDGE_MAX_NEW_TOKENS, "judge_prompt": JUDGE_PROMPT,
                  "unparseable": unparseable, "judged": total,
                  "instructions_sha256": hash_file(instructions) if instructions and instructions.is_file() else None,
                  "length_control": "logistic regression on tanh(len diff / sd), predicted at 0"},
    )


def length_controlled(prefs: list[float], diffs: list[float], seed: int = 0,
                      bootstrap: int = 200) -> tuple[float, float | None]:
    """LC win rate (sigmoid of the fitted intercept) and its bootstrap standard error."""
    if not prefs:
        return float("nan"), None
    point = _fit_intercept(prefs, diffs)
    if len(prefs) < 2:
        return point, None
    rng = random.Random(seed)
    draws = []
    for _ in range(bootstrap):
        pick = [rng.randrange(len(prefs)) for _ in prefs]
        draws.append(_fit_intercept([prefs[i] for i in pick], [diffs[i] for i in pick]))
    mean = sum(draws) / len(draws)
    return point, math.sqrt(sum((d - mean) ** 2 for d in draws) / (len(draws) - 1))


def _fit_intercept(prefs: list[float], diffs: list[float], l2: float = 1.0, steps: int = 50) -> float:
    n = len(prefs)
    sd = math.sqrt(sum(d * d for d in diffs) / n) or 1.0
    xs = [math.tanh(d / sd) for d in diffs]
    b0 = b1 = 0.0
    for _ in range(steps):  # Newton's method on the L2-penalised log-likelihood (penalty on the slope only)
        g0 = g1 = h00 = h01 = h11 = 0.0
        for x, y in zip(xs, prefs):
            p = 1.0 / (1.0 + math.exp(-(b0 + b1 * x)))
            w = p * (1 - p)
            g0 += y - p
            g1 += (y - p) * x
            h00 += w
            h01 += w * x
            h11 += w * x * x
        g1 -= l2 * b1
        h11 += l2
        h00 += 1e-6
        det = h00 * h11 - h01 * h01
        if det <= 0:
            break
        d0 = (h11 * g0 - h01 * g1) / det
        d1 = (h00 * g1 - h01 * g0) / det
        b0 = max(-30.0, min(30.0, b0 + d0))
        b1 = max(-30.0, min(30.0, b1 + d1))
        if abs(d0) + abs(d1) < 1e-9:
            break
    return 1.0 / (1.0 + math.exp(-b0))
