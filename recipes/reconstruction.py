"""Shared machinery of the reconstruction recipes (seed 000 §3.1), kept apart from the recipe classes:

- `pre_query_template`: the Magpie pre-query template and end-of-user-turn marker, derived from the
  tokenizer's chat template with a sentinel (no per-family hard-coding);
- `InstructionSampler`: draws instructions from the seed model with that template (temperature 1,
  top_p 1, stop at the end of the user turn) and cleans them (strip, drop empty, degenerate,
  over-long, exact and near duplicates);
- `Member` / `resolve_members`: committee members (the seed model with its own sampler seed, another
  model spec, or an OpenAI-compatible endpoint URL), all behind the cached generation path;
- `JUDGE_PROMPT`, `parse_score`, `select`: Table 3 judging, robust "Score: <n>" parsing, mean over
  judges and a deterministic argmax.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError, DataError
from harness.generation import EndpointBackend, Sampling, is_endpoint

SENTINEL = "\x00FORGETBENCH_USER_CONTENT\x00"
# instructions sampled per sampler seed; fixed so that the rows drawn never depend on batching
DRAW_CHUNK = 8


def pre_query_template(tokenizer) -> tuple[str, str]:
    """(pre-query template, end-of-user-turn marker): what the chat template emits for one user turn
    before and after its content. A default system prompt the template adds (SmolLM2 adds one) is
    kept: the model is sampled under the template exactly as it sees it in a real chat."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": SENTINEL}], tokenize=False)
    if rendered.count(SENTINEL) != 1:
        raise ConfigError("the seed model's chat template does not render a user turn's content verbatim")
    before, after = rendered.split(SENTINEL)
    return before, after.strip()


# ---------------------------------------------------------------- instructions

def _normal(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


def _shingles(text: str, n: int = 3) -> set[str]:
    words = _normal(text).split()
    return {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


@dataclass
class InstructionSampler:
    """Draws and cleans instructions; `stats` counts every reason an instruction was dropped."""

    backend: Any
    seed: int
    max_new_tokens: int = 256
    max_words: int = 300
    min_words: int = 3
    near_duplicate: float = 0.7  # word-3-gram Jaccard at or above which an instruction is a near duplicate
    max_draws: int = 1000

    def __post_init__(self):
        self.prefix, self.end = pre_query_template(self.backend.tokenizer)
        tokenizer = self.backend.tokenizer
        # a marker that is the end-of-sequence token already ends generation; a stop string would
        # only cost time (HF stop strings scan the whole vocabulary on every call)
        ends_itself = tokenizer.encode(self.end, add_special_tokens=False) == [tokenizer.eos_token_id]
        self.stop = () if ends_itself or not self.end else (self.end,)
        self.stats: Counter[str] = Counter()
        self._seen: set[str] = set()
        self._kept: list[set[str]] = []
        self._index: dict[str, list[int]] = {}
        self._markers = [t for t in getattr(self.backend.tokenizer, "all_special_tokens", []) if len(t) > 1]

    def stream(self) -> Iterator[str]:
        """Clean instructions, in draw order. Each chunk of DRAW_CHUNK draws gets its own sampler seed,
        so no two chunks repeat each other's samples; the chunk is fixed, not the backend's batch size,
        so the instructions drawn do not depend on how generation is batched."""
        chunk = 0
        while self.stats["drawn"] < self.max_draws:
            sampling = Sampling(max_new_tokens=self.max_new_tokens, temperature=1.0, top_p=1.0,
                                seed=self.seed * 100_003 + chunk, stop=self.stop)
            chunk += 1
            texts = self.backend.generate([self.prefix] * min(DRAW_CHUNK, self.max_draws - self.stats["drawn"]), sampling,
                                          desc="sampling instructions")
            for text in texts:
                self.stats["drawn"] += 1
                reason = self._reject(text)
                self.stats[reason or "kept"] += 1
                if reason is None:
                    yield text.strip()
        raise DataError(f"only {self.stats['kept']} usable instructions in {self.stats['drawn']} draws "
                        f"(dropped: {dict(self.stats)}); raise max_draws_factor or the seed model is unsuitable")

    def _reject(self, text: str) -> str | None:
        text = text.strip()
        if self.end and self.end in text:
            text = text.split(self.end)[0].strip()
        words = text.split()
        if not text:
            return "empty"
        if len(words) < self.min_words or any(m in text for m in self._markers) or _degenerate(words):
            return "degenerate"
        if len(words) > self.max_words:
            return "too_long"
        key = _normal(text)
        if key in self._seen:
            return "duplicate"
        shingles = _shingles(text)
        candidates = {i for s in shingles for i in self._index.get(s, ())}
        if any(len(shingles & self._kept[i]) / len(shingles | self._kept[i]) >= self.near_duplicate for i in candidates):
            return "near_duplicate"
        self._seen.add(key)
        for s in shingles:
            self._index.setdefault(s, []).append(len(self._kept))
        self._kept.append(shingles)
        return None


def _degenerate(words: list[str]) -> bool:
    """Looping output: few distinct words among many, or one word making up most of the text."""
    if len(words) < 8:
        return False
    counts = Counter(w.casefold() for w in words)
    return len(counts) / len(words) < 0.3 or counts.most_common(1)[0][1] / len(words) > 0.5


def take(stream: Iterator[str], n: int) -> list[str]:
    return [next(stream) for _ in range(n)]


# ---------------------------------------------------------------- committee members

@dataclass
class Member:
    spec: str
    backend: Any
    sampler_seed: int
    identity: str = ""  # which model generates: members with equal identities are the same model

    def chat(self, conversations, sampling: Sampling, desc: str = "") -> list[str]:
        return self.backend.chat(conversations, sampling, desc)


def member_model(spec: str) -> str:
    """The model part of a member spec: `seed@2` -> `seed`, `SPEC@N` -> `SPEC`, a URL as is."""
    if is_endpoint(spec):
        return spec
    return spec.rpartition("@")[0] if "@" in spec else spec


def resolve_members(specs: Sequence[str], ctx, base_seed: int) -> list[Member]:
    """`seed` / `seed@N`: the seed model with sampler seed N; `http(s)://host/v1#model`: an endpoint;
    anything else (`SPEC` or `SPEC@N`): a model spec for harness.models.resolve_model."""
    members = []
    for index, spec in enumerate(specs):
        if is_endpoint(spec):
            members.append(Member(spec, EndpointBackend(spec, who="committee member"), base_seed + index,
                                  identity=f"endpoint:{spec}"))
            continue
        name, _, offset = spec.rpartition("@") if "@" in spec else (spec, "", "0")
        if not offset.isdigit():
            raise ConfigError(f"committee member {spec!r}: the part after @ must be a sampler seed (an integer)")
        seed = base_seed + 1000 * index + int(offset)
        if name == "seed":
            backend = ctx.backend()
            members.append(Member(spec, backend, seed, identity=f"{backend.name}:{ctx.seed_model.sha}"))
        else:
            from harness.generation import make_backend
            from harness.models import resolve_model

            seed_backend = ctx.backend()
            model = resolve_model(name)
            backend = make_backend(seed_backend.name, model, batch_size=seed_backend.batch_size)
            members.append(Member(spec, backend, seed, identity=f"{backend.name}:{model.sha}"))
    return members


def distinct_groups(keys: Sequence[Any]) -> list[list[int]]:
    """Indices grouped by equal key, in order of first appearance: [[0, 2], [1]] for keys a, b, a."""
    groups: dict[Any, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def judge_groups(identities: Sequence[str], judge_decoding: str) -> list[list[int]]:
    """Members that are one judge: the same model judging greedily gives the same judgment every time
    (one cache key), so such members count once; sampled judging gives every member its own seed,
    so every member is its own judge."""
    if judge_decoding == "sampled":
        return [[i] for i in range(len(identities))]
    return distinct_groups(identities)


def static_effective_counts(specs: Sequence[str], judge_decoding: str) -> dict[str, int]:
    """Effective numbers of distinct generators and judges of a committee, from its specs alone (no
    model loaded; two specs naming different paths to the same weights are only found out at build
    time, from the model hashes). Every member samples its answers with its own seed, so each is a
    distinct generator."""
    models = [member_model(spec) for spec in specs]
    return {"members": len(specs), "generators": len(specs), "judges": len(judge_groups(models, judge_decoding))}


# ---------------------------------------------------------------- judging

# Seed 000, Table 3, word for word (the paper prints it as one paragraph, the generated instruction and
# the output after it; here each scale point and the closing sentence start a line). Typographic
# apostrophes as printed.
JUDGE_PROMPT = """Below is a user instruction and an AI response. Evaluate the quality of the AI’s response based on how well it fulfills the user’s request. Assign a score based on the following 5-point scale:
1: The response is incomplete, off-topic, or contains irrelevant, vague, or missing information. It may repeat the user’s question, include personal opinions, or be written from a non-AI perspective (e.g., blog-like). It may also have promotional or irrelevant content.
2: The response addresses some of the user’s request but lacks detail or direct relevance. It provides only a general approach instead of a specific solution.
3: The response is helpful but lacks an AI perspective. It covers the user’s request but appears taken from a personal blog, webpage, or similar source. It may include personal opinions, experiences, or mentions of external content.
4: The response is clear, complete, and written from an AI’s perspective. It directly addresses the user’s request, but there may be minor room for improvement, such as clarity or conciseness.
5: The response is excellent, written from an AI’s perspective, with a clear focus on the user’s request. It is thorough, well-organized, and shows expert knowledge without irrelevant content. The response is logical, easy to follow, and engaging.
Provide a brief justification for your score and then write "Score: <rating>" in the last line.

{instruction}

{response}"""

# The harness's own earlier judge prompt (option `judge_prompt: harness`).
HARNESS_JUDGE_PROMPT = """Please act as an impartial judge and evaluate the quality of the response an AI assistant gave to the user instruction below. Consider how helpful, relevant, accurate, detailed and clearly written the response is.

Rate the response on a 5-point scale:
1 - very poor: irrelevant, wrong or harmful
2 - poor: partly relevant but mostly unhelpful or incorrect
3 - acceptable: addresses the instruction with notable flaws
4 - good: helpful and correct with minor flaws
5 - excellent: fully helpful, correct and well written

[Instruction]
{instruction}

[Response]
{response}

Provide a brief justification for your score and then write "Score: <rating>" in the last line."""

JUDGE_PROMPTS = {"table3": JUDGE_PROMPT, "harness": HARNESS_JUDGE_PROMPT}

_NUMBER = r"(\d+(?:\.\d+)?)"
_PATTERNS = [
    rf"score\s*(?:is|of)?\s*[:=\-]?\s*[\*\[\(\"']*\s*{_NUMBER}",
    rf"rating\s*(?:is|of)?\s*[:=\-]?\s*[\*\[\(\"']*\s*{_NUMBER}",
    rf"{_NUMBER}\s*(?:/|out\s+of)\s*5\b",
]


def parse_score(text: str) -> float | None:
    """The 1-5 score of a judgment: "Score: <n>" on the last non-empty line, else the last
    "Score"/"Rating"/"n/5" anywhere, else a last line that is a bare number. None if nothing
    in range is found (the judgment is then excluded from the mean)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    for scope in (lines[-1], text):
        for pattern in _PATTERNS:
            found = [float(m) for m in re.findall(pattern, scope, flags=re.IGNORECASE)]
            found = [v for v in found if 1 <= v <= 5]
            if found:
                return found[-1]
    bare = re.fullmatch(rf"[\*\[\(]*{_NUMBER}[\*\]\)\.]*", lines[-1])
    if bare and 1 <= float(bare.group(1)) <= 5:
        return float(bare.group(1))
    return None


def select(scores: list[list[float | None]]) -> tuple[int, list[float | None]]:
    """(index of the best candidate, mean score per candidate): the mean over the judges that gave a
    parseable score; the highest mean wins, ties go to the earliest candidate (member order, then
    sample order); candidates no judge could score rank last."""
    means = [round(math.fsum(v) / len(v), 6) if (v := [s for s in row if s is not None]) else None for row in scores]
    best = max(range(len(means)), key=lambda i: (means[i] is not None, means[i] or 0.0, -i))
    return best, means
