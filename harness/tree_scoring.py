"""Log-likelihood scoring with every context run once: a question's choices as branches of one row.

A multiple-choice question scored by log-likelihood asks for `log P(choice | context)` once per
choice; lm-eval's HF model runs `context + choice` once per choice, so a HellaSwag context (~80
tokens) runs four times for four ~20-token endings. Here the context and its choices make one row,
`context, choice 1, choice 2, ...`, with an attention mask that lets each choice's tokens see the
context and their own earlier tokens only, and position ids that start every choice where the context
ends. Each token then computes exactly what it computes in `context + choice` alone, and the row costs
the context once plus each choice's own tokens.

- The first token of every choice is predicted from the context's last position (shared);
  token k > 0 from the choice's own token k - 1, so a branch holds the choice without its last token
  (one-token choices add no branch: their whole score is the context's last position).
- Identical (context, choice) requests are scored once; a context with very many choices is split
  over several rows of at most `max_row_tokens` (the mask is rows x width x width).
- Without the tree (`shared=False`: a model whose attention takes no custom mask) each distinct
  input `context + choice[:-1]` is its own row, the plain causal form lm-eval's HF model uses.

The contexts are cut from the left to the model's window as lm-eval's HF model cuts them:
`(context + continuation)[-(window + 1):]` without its last token.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

CONTEXT = 0  # segment id of a row's context; branch k has segment k (1, 2, ...); padding -1
PADDING = -1


@dataclass
class TreeRow:
    """One forward row: its tokens, their position ids and segments, and which positions' logits
    predict each scored pair's continuation tokens."""

    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    scored: dict[int, list[int]] = field(default_factory=dict)  # pair index -> row positions, one per continuation token

    def add(self, tokens: Sequence[int], first_position: int, segment: int) -> int:
        """Append tokens at position ids `first_position`..; returns the row index of the first one."""
        start = len(self.tokens)
        self.tokens += list(tokens)
        self.positions += range(first_position, first_position + len(tokens))
        self.segments += [segment] * len(tokens)
        return start


def cut_pair(context: Sequence[int], continuation: Sequence[int], window: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """lm-eval HF model's cut: (context + continuation)[-(window + 1):], the context losing its first tokens."""
    if len(continuation) > window:
        raise ValueError(f"loglikelihood: a continuation of {len(continuation)} tokens exceeds the model's "
                         f"{window}-token window")
    full = (list(context) + list(continuation))[-(window + 1):]
    return tuple(full[:len(full) - len(continuation)]), tuple(continuation)


def tree_rows(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], window: int, *, shared: bool = True,
              max_row_tokens: int = 2048) -> list[TreeRow]:
    """The rows that score every (context, continuation) pair: one per distinct context with its
    continuations as branches (`shared`), or one per distinct input (not `shared`)."""
    groups: dict[tuple[int, ...], dict[tuple[int, ...], list[int]]] = {}  # row prefix -> continuation -> pairs
    for index, (context, continuation) in enumerate(pairs):
        cut, continuation = cut_pair(context, continuation, window)
        prefix = cut if shared else cut + continuation[:-1]
        groups.setdefault(prefix, {}).setdefault(continuation, []).append(index)
    rows = []
    for prefix, continuations in groups.items():
        row = _new_row(prefix)
        for continuation, members in continuations.items():
            if not shared:  # the continuation is the prefix's tail: its tokens' logits are the last positions
                scored = list(range(len(prefix) - len(continuation), len(prefix)))
            else:
                branch = continuation[:-1]
                if branch and len(row.tokens) + len(branch) > max(max_row_tokens, len(prefix) + len(branch)):
                    rows.append(row)
                    row = _new_row(prefix)
                start = row.add(branch, len(prefix), max(row.segments) + 1) if branch else None
                scored = [len(prefix) - 1] + list(range(start, start + len(branch))) if branch else [len(prefix) - 1]
            for index in members:
                row.scored[index] = scored
        rows.append(row)
    return rows


def _new_row(prefix: Sequence[int]) -> TreeRow:
    row = TreeRow()
    row.add(prefix, 0, CONTEXT)
    return row


def tree_attention_mask(segments, dtype=None):
    """The attention mask [rows, 1, width, width] of right-padded `segments` [rows, width]: a token sees
    earlier-or-equal tokens of the context and of its own segment (padding sees the context, so no row
    of the softmax is empty). Boolean (True: attend; what sdpa takes fastest) when `dtype` is None,
    else additive in `dtype` (0 or its lowest value; what eager attention adds to its scores)."""
    import torch

    width = segments.shape[1]
    index = torch.arange(width, device=segments.device)
    causal = index[None, :] <= index[:, None]
    visible = (segments[:, None, :] == CONTEXT) | (segments[:, None, :] == segments[:, :, None])
    allowed = (causal[None] & visible)[:, None]
    if dtype is None:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=segments.device).masked_fill_(~allowed, torch.finfo(dtype).min)
