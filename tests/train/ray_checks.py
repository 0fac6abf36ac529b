"""The Ray executor's checks, run by tests/train/test_executors.py in a child process:

    python tests/train/ray_checks.py NAME WORK_DIR    # prints "NAME ok" when every check holds

(Ray's core can abort the process that drives it; see the test module.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import ray

sys.path.insert(0, str(Path(__file__).parent))
from conftest import assert_same_run, make_toy_flow  # noqa: E402
from mekit.errors import MekitError  # noqa: E402
from mekit.train import TrainConfig, loso_folds, run_loso  # noqa: E402
from mekit.train.executors import RayExecutor  # noqa: E402
from mekit.train.loso import run_folds  # noqa: E402

LABELS = ["neg", "pos"]
TINY = TrainConfig(epochs=2, batch_size=4, lr=1e-2)
# A small local Ray: the whole test machine may have 2 cores and little shared memory.
RAY_INIT = {"num_cpus": 2, "object_store_memory": 200 * 1024**2, "log_to_driver": False}


def matches_sequential(work: Path, problem, reference) -> None:
    X, y, subjects, ids = problem
    assert not ray.is_initialized()
    ray.init(include_dashboard=False, **RAY_INIT)
    try:
        # A Ray this process is connected to already is used, and left running.
        folds = loso_folds(subjects)
        part = run_folds(
            X, y, subjects, ids, LABELS, "ststnet", TINY, folds[:2], RayExecutor(),
            checkpoint_dir=work, progress=False,
        )  # fmt: skip
        assert ray.is_initialized()
        rows = reference.predictions["fold"] < 2
        expected = reference.predictions[rows].reset_index(drop=True)
        pd.testing.assert_frame_equal(part.predictions, expected, check_exact=True)
        # the rest, resumed from the partial run's checkpoints
        full = run_loso(
            X, y, subjects, ids, LABELS, "ststnet", TINY, progress=False,
            executor=RayExecutor(), checkpoint_dir=work,
        )  # fmt: skip
        assert_same_run(reference, full)
        # everything on Ray, no checkpoints
        full = run_loso(
            X, y, subjects, ids, LABELS, "ststnet", TINY, progress=False, executor=RayExecutor()
        )
        assert_same_run(reference, full)
        # An error in a fold reaches the caller as that error.
        with pytest.raises(MekitError, match="known models"):
            run_folds(
                X, y, subjects, ids, LABELS, "nonet", TINY, folds, RayExecutor(), progress=False
            )
    finally:
        ray.shutdown()


def starts_and_stops_its_own_ray(work: Path, problem, reference) -> None:
    X, y, subjects, ids = problem
    assert not ray.is_initialized()
    kwargs = {k: v for k, v in RAY_INIT.items() if k != "num_cpus"}
    own = RayExecutor(num_cpus=RAY_INIT["num_cpus"], init_kwargs=kwargs)
    result = run_loso(X, y, subjects, ids, LABELS, "ststnet", TINY, progress=False, executor=own)
    assert_same_run(reference, result)
    assert not ray.is_initialized()
    # An error in a fold reaches the caller, and the Ray this executor started is stopped.
    folds = loso_folds(subjects)
    with pytest.raises(MekitError, match="known models"):
        run_folds(X, y, subjects, ids, LABELS, "nonet", TINY, folds, own, progress=False)
    assert not ray.is_initialized()


CHECKS = {f.__name__: f for f in (matches_sequential, starts_and_stops_its_own_ray)}


if __name__ == "__main__":
    name, work = sys.argv[1], Path(sys.argv[2])
    problem = make_toy_flow(4, 3)
    X, y, subjects, ids = problem
    # The uninterrupted sequential run everything on Ray must reproduce.
    reference = run_loso(X, y, subjects, ids, LABELS, "ststnet", TINY, progress=False)
    CHECKS[name](work, problem, reference)
    print(f"{name} ok")
