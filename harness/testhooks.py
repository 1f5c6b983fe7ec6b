"""A test hook that holds a study at a named point so a test can SIGKILL the real process there.

The crash-safety tests (tests/test_resume_after_kill.py) kill `forgetbench run` in the middle of
fine-tuning and of evaluation. A tiny model finishes those phases in well under a second, too fast to
hit by timing alone, so the code calls `pause_point(NAME)` at the riskiest spots:

    finetune-save   the checkpoint is being written into its temporary directory, not yet renamed
    generation      one generation batch has just been committed to the generation cache

With `FORGETBENCH_PAUSE_AT=NAME` (or `NAME:K`, the K-th time the point is reached) the process logs
`pause point NAME reached` and sleeps (`FORGETBENCH_PAUSE_SECONDS`, default 300) before going on.
Unset, a pause point costs one environment lookup.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter

PAUSE_ENV = "FORGETBENCH_PAUSE_AT"
SECONDS_ENV = "FORGETBENCH_PAUSE_SECONDS"

log = logging.getLogger("forgetbench")
_reached: Counter[str] = Counter()


def pause_point(name: str) -> None:
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] != int(nth or 1):
        return
    log.warning("pause point %s reached (%s=%s); sleeping", name, PAUSE_ENV, wanted)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    time.sleep(float(os.environ.get(SECONDS_ENV, "300")))
