"""Where cross-validation folds run: in this process, in local worker processes, or on Ray.

An executor calls a fold function `fn(*data, fold, *args)` once per fold and yields the
results as they complete (in completion order, not fold order). `data` is a tuple of arrays
shared by every fold (X, y, subjects): each executor ships it to its workers once, not once per
fold. `fn` and `args` must be picklable (a module-level function; for Ray, cloudpickle-able).

Every worker uses `threads` torch threads, so a fold computes the same floats wherever it runs:
with folds seeded per fold, results do not depend on the executor.

    executor = make_executor("ray", workers=1, address="ray://head:10001")
    for result in executor.map(fn, folds, (X, y, subjects), args, threads=1):
        ...
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mekit.errors import MekitError
from mekit.procs import die_with_parent
from mekit.train.splits import Fold

log = logging.getLogger(__name__)

FoldFn = Callable[..., Any]
EXECUTORS: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class FoldJob:
    """What an executor runs per fold: `fn(*data, fold, *args)` on `threads` torch threads."""

    fn: FoldFn
    data: tuple[np.ndarray, ...]
    args: tuple[Any, ...] = ()
    threads: int = 1


class FoldExecutor(ABC):
    """Runs a fold function over folds; see the module docstring."""

    def map(
        self,
        fn: FoldFn,
        folds: Sequence[Fold],
        data: tuple[np.ndarray, ...],
        args: tuple[Any, ...] = (),
        threads: int = 1,
    ) -> Iterator[Any]:
        """Yield `fn(*data, fold, *args)` for each fold, as each completes.

        Closing the iterator early (or an exception from a fold) cancels the folds not yet
        started.
        """
        if folds:
            yield from self._map(FoldJob(fn, data, args, threads), folds)

    @abstractmethod
    def _map(self, job: FoldJob, folds: Sequence[Fold]) -> Iterator[Any]:
        """`map` for at least one fold."""

    def describe(self) -> str:
        """A short description for logs."""
        return type(self).__name__


class SequentialExecutor(FoldExecutor):
    """One fold after another, in this process (no worker startup cost; easiest to debug)."""

    def _map(self, job: FoldJob, folds: Sequence[Fold]) -> Iterator[Any]:
        # The caller's torch thread count is left alone: the fold function fixes its own.
        for fold in folds:
            yield job.fn(*job.data, fold, *job.args)

    def describe(self) -> str:
        return "sequential"


# Worker processes receive the data once, through the pool initializer, not once per fold.
_WORKER_DATA: tuple[np.ndarray, ...] | None = None


def _init_worker(data: tuple[np.ndarray, ...], threads: int, parent: int) -> None:
    global _WORKER_DATA
    die_with_parent(parent)
    _WORKER_DATA = data
    torch.set_num_threads(threads)


def _run_in_worker(fn: FoldFn, fold: Fold, args: tuple[Any, ...]) -> Any:
    assert _WORKER_DATA is not None, "worker not initialised"
    return fn(*_WORKER_DATA, fold, *args)


class ProcessExecutor(FoldExecutor):
    """Folds in up to `workers` local processes (spawned, each with `threads` torch threads).

    Spawn, not fork: forking a process whose OpenMP pool is live can hang the child. Each worker
    pays a fresh interpreter and torch import (a few seconds), so this pays off for folds that
    take longer than that.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise MekitError(f"workers must be at least 1, got {workers}")
        self.workers = workers

    def _map(self, job: FoldJob, folds: Sequence[Fold]) -> Iterator[Any]:
        pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(folds)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(job.data, job.threads, os.getpid()),
        )
        try:
            pending = {pool.submit(_run_in_worker, job.fn, fold, job.args) for fold in folds}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            # On an error or an early close, drop the folds not started yet.
            pool.shutdown(wait=True, cancel_futures=True)

    def describe(self) -> str:
        return f"{self.workers} processes"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MekitError(
            "the Ray executor needs Ray, which is not installed: pip install 'mekit[ray]'"
        ) from None
    return ray


def _ray_fold_task(fn: FoldFn, threads: int, fold: Fold, args: tuple[Any, ...], *data: Any) -> Any:
    torch.set_num_threads(threads)
    return fn(*data, fold, *args)


def _cancel_unfinished(ray: Any, refs: list[Any]) -> None:
    """Cancel the folds of `refs` that have not finished, on a Ray this executor did not start.

    Ray's core can abort the driving process when a cancel races the task's own completion
    ("Tried to complete task that was not pending", ray-project/ray#54527). The folds already
    finished are therefore left alone, which shrinks that window to the instant between the
    wait and the cancel; a Ray this executor started is shut down instead, with no cancel.
    """
    try:
        _, unfinished = ray.wait(refs, num_returns=len(refs), timeout=0)
    except Exception:  # Ray gone meanwhile: nothing left to cancel, and the fold's error stands
        return
    for ref in unfinished:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # finished or gone meanwhile: nothing to cancel
            pass


class RayExecutor(FoldExecutor):
    """Folds as Ray tasks, on a Ray cluster or on a Ray instance started on this machine.

    address: None starts a local Ray instance (with `num_cpus` CPUs; None = all cores) unless
      this process is already connected to Ray, in which case that connection is used. "auto"
      joins the cluster this machine belongs to; "ray://host:10001" connects through Ray
      Client. The workers must be able to import mekit (install it in the cluster's
      environment, or pass a runtime_env through `init_kwargs`).
    init_kwargs: extra keyword arguments for `ray.init` (e.g. object_store_memory,
      runtime_env).

    The data arrays go into the object store once (`ray.put`); each fold is one task asking for
    `threads` CPUs (at most the cluster's CPU count). Ray is shut down (or disconnected) after
    each `map` only if this executor started the connection.
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        *,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        _import_ray()  # fail now, not after the caller has prepared the data
        if num_cpus is not None and num_cpus < 1:
            raise MekitError(f"num_cpus must be at least 1, got {num_cpus}")
        if num_cpus is not None and address is not None:
            raise MekitError(
                "num_cpus applies only to a local Ray instance (address=None); "
                f"a cluster at {address!r} has its own CPU count"
            )
        self.address = address
        self.num_cpus = num_cpus
        self.init_kwargs = dict(init_kwargs or {})

    def _connect(self, ray: Any) -> bool:
        """Connect or start Ray if needed; True when this call did (and so must shut down)."""
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {}
        if self.address is None:
            kwargs = {"num_cpus": self.num_cpus, "include_dashboard": False}
        else:
            kwargs = {"address": self.address}
        kwargs.update(self.init_kwargs)
        try:
            ray.init(**kwargs)
        except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError...
            where = f"at {self.address!r}" if self.address else "locally"
            raise MekitError(f"could not start or reach Ray {where}: {e}") from e
        return True

    def _map(self, job: FoldJob, folds: Sequence[Fold]) -> Iterator[Any]:
        ray = _import_ray()
        started = self._connect(ray)
        pending: list[Any] = []
        try:
            cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
            cpus = max(1, min(job.threads, cluster_cpus))
            task = ray.remote(num_cpus=cpus)(_ray_fold_task)
            refs = [ray.put(array) for array in job.data]
            pending = [task.remote(job.fn, job.threads, fold, job.args, *refs) for fold in folds]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    # A failed fold raises an exception that is also an instance of the
                    # fold's own error class (e.g. MekitError).
                    yield ray.get(ref)
        finally:
            if started:
                ray.shutdown()  # ends the folds still running with the Ray this call started
            elif pending:
                _cancel_unfinished(ray, pending)

    def describe(self) -> str:
        where = self.address or (f"local, {self.num_cpus} CPUs" if self.num_cpus else "local")
        return f"ray ({where})"


def make_executor(name: str, workers: int = 1, address: str | None = None) -> FoldExecutor:
    """The executor named `name`.

    "local": `SequentialExecutor` when workers == 1, else `ProcessExecutor(workers)`.
    "ray": `RayExecutor(address)`; when starting a local Ray (address None), workers > 1 sets
      its CPU count (workers == 1: all cores). A cluster's own resources decide how many folds
      run at once.
    """
    if workers < 1:
        raise MekitError(f"workers must be at least 1, got {workers}")
    if name == "local":
        if address is not None:
            raise MekitError("an address applies only to the 'ray' executor")
        return SequentialExecutor() if workers == 1 else ProcessExecutor(workers)
    if name == "ray":
        num_cpus = workers if address is None and workers > 1 else None
        return RayExecutor(address=address, num_cpus=num_cpus)
    raise MekitError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
