"""The one rule that draws a seeded subset, so every model (and every run) is scored on the same items."""
from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")


def paired_subset(items: Sequence[T], limit: int | None, seed: int, keys: Sequence[Hashable] | None = None) -> list[T]:
    """`limit` of `items` drawn by `seed`, in their original order (all of them when limit is None or
    covers them). The draw is over the sorted `keys` (default: the items' positions); keys that
    identify items make the subset the same whatever the source's row order (IFEval, lm-eval sets).

    A limit below 1 is refused: lm-eval reads an empty sample list as "every document"."""
    if limit is not None and limit < 1:
        raise ValueError(f"a subset limit must be at least 1, got {limit}")
    if limit is None or limit >= len(items):
        return list(items)
    keys = range(len(items)) if keys is None else keys
    chosen = set(random.Random(seed).sample(sorted(keys), limit))
    return [item for key, item in zip(keys, items) if key in chosen]
