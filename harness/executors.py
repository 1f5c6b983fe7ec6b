"""Where a study's independent runs execute: one after another here, or as Ray tasks.

Both executors take the same function and the planned runs and hand back each run's outcome in plan
order, to the one process that records results (the study driver, the leaderboard's single writer).
Ray runs tasks side by side and they finish in any order; outcomes that arrive early wait until every
earlier run is handed back, so a study records the same rows in the same order whichever executor runs
it. A run killed before it is recorded costs little on a rerun: its artefacts are in the cache.

The Ray executor imports `ray` only when chosen (`pip install 'forgetbench[ray]'`). It joins an
existing cluster (`address`, e.g. `ray://head:10001` or `auto`) or starts a local instance with
`local_cpus` CPUs, and reserves `cpus_per_run` / `gpus_per_run` for each run. Workers read and write
the same artefact cache (`FORGETBENCH_CACHE`, passed to them): on a cluster that path must be shared
storage and forgetbench must be installed on every node.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from harness.config import ExecutorConfig
from harness.errors import ConfigError, ForgetbenchError, first_line

log = logging.getLogger("forgetbench")

T = TypeVar("T")
R = TypeVar("R")

# Environment a worker needs to find the same cache, data and offline settings as the driver.
FORWARDED_ENV = ("FORGETBENCH_CACHE", "FORGETBENCH_DATA_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME",
                 "TOKENIZERS_PARALLELISM")


@dataclass(frozen=True)
class RunFailed:
    """The outcome of a run that raised on a remote worker: one line for the user."""

    line: str


class LocalExecutor:
    """Today's loop: each run in this process, one after another; the first failure stops the study."""

    name = "local"

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        for index, item in enumerate(items):
            yield index, fn(item)


class RayExecutor:
    """Each run a Ray task with its resource needs; outcomes handed back in plan order."""

    name = "ray"

    def __init__(self, address: str | None = None, local_cpus: int | None = None, cpus_per_run: float = 1.0,
                 gpus_per_run: float = 0.0):
        self.address = address
        self.local_cpus = local_cpus
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R | RunFailed]]:
        ray = import_ray()
        started_here = self._connect(ray)
        pending: list = []
        try:
            task = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run)(_run_logged)
            refs = [task.remote(fn, item) for item in items]
            position = {ref: index for index, ref in enumerate(refs)}
            pending, finished, next_index = list(refs), {}, 0
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    finished[position[ref]] = _outcome(ray, ref)
                while next_index in finished:
                    yield next_index, finished.pop(next_index)
                    next_index += 1
        finally:
            for ref in pending:  # the driver stopped early (error, Ctrl-C): do not leave work behind
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()

    def _connect(self, ray) -> bool:
        """Join the cluster or start a local instance; True when this call started Ray (and must stop it)."""
        if ray.is_initialized():
            return False
        env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
        options: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": True}
        if self.address:
            log.info("ray: joining the cluster at %s", self.address)
            ray.init(address=self.address, **options)
        else:
            log.info("ray: starting a local instance with %s CPUs", self.local_cpus or "all")
            ray.init(num_cpus=self.local_cpus, include_dashboard=False, **options)
        return True


def _run_logged(fn: Callable[[T], R], item: T) -> R:
    """A Ray task's body: the worker logs progress like the driver would (Ray forwards it)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "datasets", "lm_eval", "httpx", "urllib3", "filelock", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return fn(item)


def _outcome(ray, ref) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ForgetbenchError):
            return RunFailed("; ".join(cause.lines))
        return RunFailed(first_line(cause if cause is not None else exc, named=True))
    except ray.exceptions.RayError as exc:  # worker died, task cancelled, node lost
        return RunFailed(first_line(exc, named=True))


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'forgetbench[ray]'") from None
    return ray


def make_executor(config: ExecutorConfig) -> LocalExecutor | RayExecutor:
    if config.kind == "ray":
        if importlib.util.find_spec("ray") is None:  # fail before any work, without importing Ray
            import_ray()
        return RayExecutor(config.address, config.local_cpus, config.cpus_per_run, config.gpus_per_run)
    if config.address:
        raise ConfigError("executor.address: a Ray address needs executor kind ray (--executor ray)")
    return LocalExecutor()
