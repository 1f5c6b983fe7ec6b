"""The built-in model's identity: the hash of its converted checkpoint names it in every cache key and
leaderboard row, so it must not depend on the environment the conversion ran in."""
from __future__ import annotations

from huggingface_hub import constants

from harness.hashing import hash_file
from harness.models import save_gguf_tokenizer, smollm2_gguf_path


def test_the_converted_tokenizer_is_the_same_bytes_online_and_offline(tmp_path, monkeypatch):
    gguf = smollm2_gguf_path()
    saved = {}
    for offline in (True, False):  # HF_HUB_OFFLINE=1 or not, as huggingface_hub read it at import
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
        out = tmp_path / f"offline-{offline}"
        save_gguf_tokenizer(gguf, out)
        saved[offline] = {path.name: hash_file(path) for path in sorted(out.iterdir())}
    assert saved[True] == saved[False] and "tokenizer_config.json" in saved[True]
