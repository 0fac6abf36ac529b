from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mekit.errors import MekitError
from mekit.train import TrainConfig, loso_folds, run_loso
from mekit.train import loso as loso_mod
from mekit.train.executors import (
    ProcessExecutor,
    RayExecutor,
    SequentialExecutor,
    make_executor,
)
from mekit.train.loso import run_folds
from mekit.train.splits import Fold

from .conftest import assert_same_run, make_toy_flow

LABELS = ["neg", "pos"]
TINY = TrainConfig(epochs=2, batch_size=4, lr=1e-2)
_RUN_FOLD = loso_mod._run_fold


class Interrupted(Exception):
    """Stands for a run stopped midway (a crash, a killed job)."""


@pytest.fixture(scope="module")
def problem():
    return make_toy_flow(4, 3)


@pytest.fixture(scope="module")
def reference(problem):
    """The uninterrupted sequential run everything else must reproduce."""
    X, y, subjects, ids = problem
    return run_loso(X, y, subjects, ids, LABELS, "ststnet", TINY, progress=False)


def counting_run_fold(monkeypatch, fail_at: int | None = None) -> list[int]:
    """Replace the fold function (sequential runs only) by one recording the folds it trains,
    and raising on fold `fail_at` (an interruption)."""
    trained: list[int] = []
    real = _RUN_FOLD

    def wrapped(X, y, subjects, fold, *args):
        if fold.index == fail_at:
            raise Interrupted
        trained.append(fold.index)
        return real(X, y, subjects, fold, *args)

    monkeypatch.setattr(loso_mod, "_run_fold", wrapped)
    return trained


def test_process_executor_matches_sequential(problem, reference):
    X, y, subjects, ids = problem
    par = run_loso(
        X, y, subjects, ids, LABELS, "ststnet", TINY, progress=False, executor=ProcessExecutor(2)
    )
    assert_same_run(reference, par)


# Ray's core has aborted the whole process on an internal check ("Tried to complete task that
# was not pending", a Ray bug: ray-project/ray#54527) once in many runs, killed by a signal or
# exiting with 1 after printing its "bug in Ray" banner. So each Ray check runs in a child
# process (tests/train/ray_checks.py): its assertions fail the test as usual, and only a child
# that Ray's core aborted is run again (twice at most) before the test fails.
RAY_CHECKS = Path(__file__).with_name("ray_checks.py")
RAY_CORE_ABORT = "You have likely discovered a bug in Ray"


def _aborted_by_ray(done: subprocess.CompletedProcess) -> bool:
    output = done.stdout + done.stderr
    return done.returncode < 0 or (done.returncode != 0 and RAY_CORE_ABORT in output)


def _run_ray_check(name: str, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    for attempt in range(3):
        work = tmp_path / f"attempt{attempt}"
        work.mkdir()
        done = subprocess.run(
            [sys.executable, str(RAY_CHECKS), name, str(work)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if not _aborted_by_ray(done):
            break
    output = f"{done.stdout}\n{done.stderr}"[-6000:]
    assert done.returncode == 0, f"{name} exited with {done.returncode}:\n{output}"
    assert f"{name} ok" in done.stdout


def test_ray_executor_matches_sequential(tmp_path):
    _run_ray_check("matches_sequential", tmp_path)


def test_ray_executor_starts_and_stops_its_own_ray(tmp_path):
    _run_ray_check("starts_and_stops_its_own_ray", tmp_path)


def test_resume_after_interruption(problem, reference, tmp_path, monkeypatch, caplog):
    X, y, subjects, ids = problem
    trained = counting_run_fold(monkeypatch, fail_at=2)
    with pytest.raises(Interrupted):
        run_loso(
            X, y, subjects, ids, LABELS, "ststnet", TINY, progress=False, checkpoint_dir=tmp_path
        )
    assert trained == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold_000.npz", "fold_001.npz"]

    trained = counting_run_fold(monkeypatch)
    with caplog.at_level(logging.INFO, logger="mekit.train.loso"):
        resumed = run_loso(
            X, y, subjects, ids, LABELS, "ststnet", TINY, progress=False, checkpoint_dir=tmp_path
        )
    assert trained == [2, 3]
    assert "resumed 2 of 4 folds" in caplog.text
    assert_same_run(reference, resumed)
    # checkpoints hold plain arrays: no pickle needed to read them
    with np.load(tmp_path / "fold_003.npz", allow_pickle=False) as z:
        assert str(z["test_subject"]) == "sub03"
    assert len(list(tmp_path.iterdir())) == 4  # no temporary files left behind

    trained = counting_run_fold(monkeypatch)
    again = run_loso(
        X, y, subjects, ids, LABELS, "ststnet", TINY, progress=False, checkpoint_dir=tmp_path
    )
    assert trained == []
    assert_same_run(reference, again)


def test_resume_from_partial_parallel_run(problem, reference, tmp_path):
    X, y, subjects, ids = problem
    folds = loso_folds(subjects)
    run_folds(
        X, y, subjects, ids, LABELS, "ststnet", TINY, [folds[1], folds[3]], ProcessExecutor(2),
        checkpoint_dir=tmp_path, progress=False,
    )  # fmt: skip
    resumed = run_loso(
        X, y, subjects, ids, LABELS, "ststnet", TINY, progress=False, checkpoint_dir=tmp_path
    )
    assert_same_run(reference, resumed)


def test_stale_checkpoints_are_retrained(problem, tmp_path, monkeypatch):
    X, y, subjects, ids = problem
    run_loso(X, y, subjects, ids, LABELS, "ststnet", TINY, progress=False, checkpoint_dir=tmp_path)
    other = dataclasses.replace(TINY, lr=5e-3)
    fresh = run_loso(X, y, subjects, ids, LABELS, "ststnet", other, progress=False)

    trained = counting_run_fold(monkeypatch)
    changed = run_loso(
        X, y, subjects, ids, LABELS, "ststnet", other, progress=False, checkpoint_dir=tmp_path
    )
    assert trained == [0, 1, 2, 3]
    assert_same_run(fresh, changed)

    # other data, other model kwargs: retrained too
    X2 = X.copy()
    X2[0, 0, 0, 0] += 1.0  # a sample of sub00: fold 0 tests it, the others train on it
    trained = counting_run_fold(monkeypatch)
    run_loso(
        X2, y, subjects, ids, LABELS, "ststnet", other, progress=False, checkpoint_dir=tmp_path
    )
    assert trained == [0, 1, 2, 3]
    trained = counting_run_fold(monkeypatch)
    run_loso(
        X2, y, subjects, ids, LABELS, "ststnet", other, progress=False,
        model_kwargs={"dropout": 0.1}, checkpoint_dir=tmp_path,
    )  # fmt: skip
    assert trained == [0, 1, 2, 3]

    # a damaged file: only that fold is retrained
    (tmp_path / "fold_001.npz").write_bytes(b"not a zip")
    trained = counting_run_fold(monkeypatch)
    run_loso(
        X2, y, subjects, ids, LABELS, "ststnet", other, progress=False,
        model_kwargs={"dropout": 0.1}, checkpoint_dir=tmp_path,
    )  # fmt: skip
    assert trained == [1]


def test_run_folds_on_any_protocol(problem):
    X, y, subjects, ids = problem
    n = len(y)
    # leave-two-subjects-out, named by group; fold indices (and so seeds) 0 and 1
    first = np.isin(subjects, ["sub00", "sub01"])
    folds = [
        Fold(0, "A", np.flatnonzero(~first), np.flatnonzero(first)),
        Fold(1, "B", np.flatnonzero(first), np.flatnonzero(~first)),
    ]
    result = run_folds(X, y, subjects, ids, LABELS, "ststnet", TINY, folds, progress=False)
    assert result.predictions["id"].tolist() == ids
    assert result.predictions["fold"].tolist() == [0 if f else 1 for f in first]
    assert set(result.histories) == {"A", "B"}
    # samples no fold tests get no row
    one = run_folds(X, y, subjects, ids, LABELS, "ststnet", TINY, folds[1:], progress=False)
    assert one.predictions["id"].tolist() == [i for i, f in zip(ids, first, strict=True) if not f]
    pd.testing.assert_frame_equal(
        one.predictions, result.predictions[~first].reset_index(drop=True), check_exact=True
    )

    def bad(folds, match):
        with pytest.raises(MekitError, match=match):
            run_folds(X, y, subjects, ids, LABELS, "ststnet", TINY, folds, progress=False)

    everything = np.arange(n)
    bad([], "no folds")
    bad([folds[0], Fold(0, "C", folds[1].train_idx, folds[1].test_idx)], "indices must be unique")
    bad([folds[0], Fold(1, "A", folds[1].train_idx, folds[1].test_idx)], "names")
    bad([Fold(0, "A", everything, folds[0].test_idx)], "trains on some of its test samples")
    bad([folds[0], Fold(1, "B", folds[0].train_idx, everything[:2])], "must not overlap")
    bad([Fold(0, "A", folds[0].train_idx, np.array([n]))], "integer positions")


def test_make_executor():
    assert isinstance(make_executor("local", 1), SequentialExecutor)
    procs = make_executor("local", 3)
    assert isinstance(procs, ProcessExecutor) and procs.workers == 3
    with pytest.raises(MekitError, match="local, ray"):
        make_executor("dask", 1)
    with pytest.raises(MekitError, match="at least 1"):
        make_executor("local", 0)
    with pytest.raises(MekitError, match="only to the 'ray'"):
        make_executor("local", 1, "auto")


def test_make_ray_executor():
    pytest.importorskip("ray")
    ray_ex = make_executor("ray", 4)
    assert isinstance(ray_ex, RayExecutor) and ray_ex.num_cpus == 4
    assert make_executor("ray", 1).num_cpus is None  # all cores
    assert make_executor("ray", 4, "ray://head:10001").num_cpus is None
    with pytest.raises(MekitError, match="local Ray"):
        RayExecutor("auto", num_cpus=2)


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(MekitError, match=r"pip install 'mekit\[ray\]'"):
        RayExecutor()
    with pytest.raises(MekitError, match=r"mekit\[ray\]"):
        make_executor("ray", 2, None)
