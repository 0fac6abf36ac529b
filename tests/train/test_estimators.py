"""The one fold runner (`cross_validate`) and its estimator contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from mekit.train.batched import BatchedTrainer
from mekit.train.classical import SVMTrainer
from mekit.train.estimators import Estimator, NetworkTrainer
from mekit.train.executors import ProcessExecutor, SequentialExecutor
from mekit.train.loop import TrainConfig
from mekit.train.loso import _groups_in_workers, cross_validate, run_folds
from mekit.train.splits import loso_folds

LABELS = ["neg", "pos"]
TINY = TrainConfig(epochs=2, batch_size=4, lr=1e-2)


@dataclass
class MeanOfClass:
    """A toy estimator: class scores from the distance to each class's mean training input.
    It records the groups and the number of samples it was fitted on."""

    seen_groups: list[str] = field(default_factory=list)

    def fit(self, X, y, groups, eval_set=None):
        self.seen_groups = sorted(set(groups))
        self.n_fit = len(y)
        flat = X.reshape(len(X), -1)
        self.means_ = np.stack([flat[y == k].mean(axis=0) for k in (0, 1)])
        self.history_ = [{"epoch": 1, "train_loss": float(len(y))}]
        self.best_epoch_ = 1
        return self

    def predict_proba(self, X):
        d = ((X.reshape(len(X), 1, -1) - self.means_[None]) ** 2).sum(axis=2)
        e = np.exp(-(d - d.min(axis=1, keepdims=True)) / d.shape[1])
        return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class MeanTrainer:
    """Per-fold trainer that keeps every estimator it hands out (sequential runs only)."""

    made: dict[str, Any] = field(default_factory=dict)
    model_name: str = "mean"
    config: TrainConfig = TINY
    peeks_at_test = False

    def estimator(self, fold):
        self.made[fold.test_subject] = MeanOfClass()
        return self.made[fold.test_subject]

    def describe(self):
        return {"model": self.model_name}


def test_a_custom_estimator_runs_through_the_fold_runner(toy_flow):
    X, y, subjects, ids = toy_flow(4, 4)
    trainer = MeanTrainer()
    assert isinstance(MeanOfClass(), Estimator)
    result = cross_validate(X, y, subjects, ids, LABELS, trainer, progress=False)
    assert sorted(trainer.made) == sorted(set(subjects))
    for held_out, estimator in trainer.made.items():
        assert held_out not in estimator.seen_groups  # never fitted on its test subject
        assert estimator.n_fit == 12
    assert len(result.predictions) == 16
    assert result.best_epochs == dict.fromkeys(sorted(set(subjects)), 1)
    assert result.predictions.set_index("id").loc[ids[0], "subject"] == subjects[0]
    # the toy is a good classifier on the toy problem: its means separate the classes
    assert result.metrics().accuracy > 0.9


def test_per_fold_network_trainer_is_run_folds(toy_flow):
    X, y, subjects, ids = toy_flow(3, 4)
    folds = loso_folds(subjects)
    direct = cross_validate(
        X, y, subjects, ids, LABELS, NetworkTrainer("ststnet", 2, TINY), folds, progress=False
    )
    wrapped = run_folds(X, y, subjects, ids, LABELS, "ststnet", TINY, folds, progress=False)
    pd.testing.assert_frame_equal(direct.predictions, wrapped.predictions, check_exact=True)
    assert direct.histories == wrapped.histories


def test_svm_folds_in_worker_processes_match_sequential():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 40)).astype(np.float32)
    y = np.arange(24) % 2
    X[y == 1, :5] += 1.5
    subjects = [f"s{i // 6}" for i in range(24)]
    ids = [f"s{i // 6}/c{i}" for i in range(24)]
    trainer = SVMTrainer(TINY)
    seq = cross_validate(X, y, subjects, ids, LABELS, trainer, progress=False)
    par = cross_validate(
        X, y, subjects, ids, LABELS, trainer, executor=ProcessExecutor(2), progress=False
    )
    pd.testing.assert_frame_equal(seq.predictions, par.predictions, check_exact=True)


def test_groups_of_folds_in_worker_processes_match_training_them_here(
    toy_flow, monkeypatch, tmp_path
):
    from mekit.train import loso

    monkeypatch.setattr(loso, "usable_cpus", lambda: 2)  # 1 thread per worker, on any machine
    X, y, subjects, ids = toy_flow(4, 4)
    trainer = BatchedTrainer("ststnet", 2, TINY, folds_at_once=2)  # two groups of two folds
    folds = loso_folds(subjects)
    workers = ProcessExecutor(2)
    assert _groups_in_workers(trainer, trainer.groups(folds), workers)
    threads = torch.get_num_threads()
    torch.set_num_threads(TINY.num_threads)  # the workers' count, so the floats can be equal
    try:
        here = cross_validate(X, y, subjects, ids, LABELS, trainer, progress=False)
    finally:
        torch.set_num_threads(threads)
    there = cross_validate(
        X, y, subjects, ids, LABELS, trainer, executor=workers, checkpoint_dir=tmp_path,
        progress=False,
    )  # fmt: skip
    pd.testing.assert_frame_equal(here.predictions, there.predictions, check_exact=True)
    # the workers' groups kept their progress beside the fold files, and removed it at the end
    assert len(list(tmp_path.glob("fold_*.npz"))) == 4 and not list(tmp_path.glob("group_*"))


def test_groups_stay_here_with_one_group_a_sequential_executor_or_a_gpu(toy_flow, monkeypatch):
    from mekit.train import device

    _, _, subjects, _ = toy_flow(4, 4)
    folds = loso_folds(subjects)
    two = BatchedTrainer("ststnet", 2, TINY, folds_at_once=2)
    one = BatchedTrainer("ststnet", 2, TINY, folds_at_once=4)
    assert not _groups_in_workers(one, one.groups(folds), ProcessExecutor(2))
    assert not _groups_in_workers(two, two.groups(folds), SequentialExecutor())
    assert not _groups_in_workers(two, two.groups(folds), None)
    monkeypatch.setattr(device, "resolve_device", lambda name: torch.device("cuda"))
    assert not _groups_in_workers(two, two.groups(folds), ProcessExecutor(2))


def test_each_worker_of_groups_gets_its_share_of_the_cpus(monkeypatch):
    from mekit.train import loso

    monkeypatch.setattr(loso, "usable_cpus", lambda: 16)
    assert loso.group_threads(1, ProcessExecutor(2)) == 8
    assert loso.group_threads(1, ProcessExecutor(3)) == 5
    monkeypatch.setattr(loso, "usable_cpus", lambda: 2)
    assert loso.group_threads(1, ProcessExecutor(2)) == 1
    assert loso.group_threads(4, ProcessExecutor(2)) == 4  # train.num_threads is the least
    assert loso.group_threads(3, SequentialExecutor()) == 3  # no workers attribute: as asked


def test_an_svm_that_saw_one_class_scores_zero_for_the_other():
    X = np.arange(16, dtype=np.float32).reshape(8, 2)
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    # subject "a" holds every class-2 sample: its fold trains on classes 0 and 1 only
    subjects = ["b", "b", "c", "c", "b", "c", "a", "a"]
    ids = [f"x{i}" for i in range(8)]
    result = cross_validate(X, y, subjects, ids, ["p", "q", "r"], SVMTrainer(TINY), progress=False)
    held_a = result.predictions[result.predictions.subject == "a"]
    assert (held_a["prob_r"] == 0).all()
    assert np.allclose(held_a[["prob_p", "prob_q", "prob_r"]].sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("folds_at_once", "retrained"), [(0, [["sub00", "sub01", "sub02"]]), (1, [["sub01"]])]
)
def test_all_folds_trainers_resume_whole_groups(
    toy_flow, tmp_path, monkeypatch, folds_at_once, retrained
):
    X, y, subjects, ids = toy_flow(3, 4)
    trainer = BatchedTrainer("ststnet", 2, TINY, folds_at_once=folds_at_once)
    first = cross_validate(
        X, y, subjects, ids, LABELS, trainer, checkpoint_dir=tmp_path, progress=False
    )
    assert len(list(tmp_path.glob("fold_*.npz"))) == 3
    (tmp_path / "fold_001.npz").unlink()  # an interrupted run: one fold missing
    trained: list[list[str]] = []
    real = BatchedTrainer.fit_models

    def counting(self, X, y, folds, *args, **kwargs):
        trained.append([f.test_subject for f in folds])
        return real(self, X, y, folds, *args, **kwargs)

    monkeypatch.setattr(BatchedTrainer, "fit_models", counting)
    again = cross_validate(
        X, y, subjects, ids, LABELS, trainer, checkpoint_dir=tmp_path, progress=False
    )
    # a fold trained with others shares their steps and dropout draws: its whole group is
    # trained again, and the resumed run equals the uninterrupted one exactly
    assert trained == retrained
    pd.testing.assert_frame_equal(first.predictions, again.predictions, check_exact=True)


def test_a_checkpoint_is_never_resumed_by_another_engine(toy_flow, tmp_path, monkeypatch):
    X, y, subjects, ids = toy_flow(3, 4)
    cross_validate(
        X,
        y,
        subjects,
        ids,
        LABELS,
        BatchedTrainer("ststnet", 2, TINY),
        checkpoint_dir=tmp_path,
        progress=False,
    )
    trainer = MeanTrainer()
    cross_validate(X, y, subjects, ids, LABELS, trainer, checkpoint_dir=tmp_path, progress=False)
    assert len(trainer.made) == 3  # every fold retrained


@pytest.mark.parametrize("oracle", [False, True])
def test_only_test_oracle_trainers_are_shown_the_test_fold(toy_flow, oracle):
    X, y, subjects, ids = toy_flow(3, 4)
    shown: list[bool] = []

    @dataclass
    class Recording(MeanOfClass):
        def fit(self, X, y, groups, eval_set=None):
            shown.append(eval_set is not None)
            return super().fit(X, y, groups)

    @dataclass(frozen=True)
    class Trainer(MeanTrainer):
        peeks_at_test: bool = oracle

        def estimator(self, fold):
            return Recording()

    cross_validate(X, y, subjects, ids, LABELS, Trainer(), progress=False)
    assert shown == [oracle] * 3
