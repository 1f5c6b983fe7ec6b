"""Decoding settings: what a generation request asks for (part of every cache key)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. temperature 0 means greedy; `seed` makes sampling reproducible."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)
    top_k: int = 0  # 0: no top-k cut-off

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def key(self) -> dict:
        """The settings as they enter cache keys. `top_k` appears only when set, so the keys of
        generations made before it existed (all without a top-k cut-off) stay valid."""
        settings = asdict(self)
        if not self.top_k:
            del settings["top_k"]
        return settings


# sail-sg/sdft's generation defaults (its LLaMA-Factory fork's, not overridden by the scripts): sampled,
# temperature 0.95, top_p 0.7, top_k 50, 512 new tokens. Seed 003's SDFT rewrites and its safety
# evaluation both generate this way (recipes/sdft.py, harness/evaluation/safety.py).
SAIL_SG_DECODING = Sampling(max_new_tokens=512, temperature=0.95, top_p=0.7, top_k=50)
