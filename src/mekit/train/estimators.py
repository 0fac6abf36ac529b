"""The estimator contract the fold runner (`mekit.train.loso.cross_validate`) trains through.

Every model family is trained under cross-validation the same way: a `FoldTrainer` says how.
A per-fold trainer hands out one `Estimator` per fold (scikit-learn's contract: `fit` on the
fold's training samples returns the estimator, `predict_proba` scores samples), and the runner
fits it wherever its executor runs folds (here, worker processes, Ray). An all-folds trainer
(an `AllFoldsNetworks`) fits every fold of a group at once in this process (fold-batched
`vmap`, the fused STSTNet kernel) and returns one fitted estimator per fold. Either way the
runner alone chooses what a fold sees: its training samples, and its test samples only for
prediction (or, for the test-oracle protocol kept for comparison with the literature, for
selection).

Trainers are small frozen dataclasses: picklable (they travel to worker processes) and
fingerprintable (`describe()` enters the checkpoint stamp, so a checkpoint written by one
trainer is never resumed by another).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from mekit.train.group_state import GroupCheckpoints, GroupState
from mekit.train.loop import TrainConfig, fit, predict_proba
from mekit.train.splits import Fold, validation_subjects

# (X, y) of the samples that test-oracle selection scores each epoch on: the test fold.
EvalSet = tuple[np.ndarray, np.ndarray]


@runtime_checkable
class Estimator(Protocol):
    """Fit on one fold's training samples, then give class probabilities (n, K) of others.

    `groups` are the training samples' subjects (what a validation split may draw from);
    `eval_set` is given only to estimators whose trainer has `peeks_at_test` (test-oracle).
    Optional attributes after fitting: `history_` (per-epoch dicts) and `best_epoch_`; an
    estimator that can save its progress while it fits and continue from it has a
    `progress_file` attribute (None, or the `GroupState` the fold runner sets before `fit`).
    """

    def fit(
        self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, eval_set: EvalSet | None = None
    ) -> Estimator: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


class FoldTrainer(Protocol):
    """How one model family is trained under cross-validation (see the module docstring)."""

    model_name: str
    config: TrainConfig
    peeks_at_test: bool

    def estimator(self, fold: Fold) -> Estimator:
        """A fresh, unfitted estimator for `fold` (seeded for it)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Everything besides the data that determines the fold outputs (JSON-able)."""
        ...


def _threads_fixed(threads: int, fn: Any, *args: Any) -> Any:
    """Run fn(*args) on `threads` torch threads: float sums (and so the probabilities) then
    match bit for bit across executors and resumed runs, whatever the caller's count (as
    `mekit.train.loop.fit` does for training)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


@dataclass
class NetworkEstimator:
    """One registered network trained by `mekit.train.loop.fit` with `config` (its seed is the
    fold's). Selection: "fixed" keeps the last epoch; "val-split" holds out whole training
    subjects (drawn from `groups`); "test-oracle" selects on `eval_set` (the test fold).
    With a `progress_file`, `fit` saves its progress there and continues from it."""

    model_name: str
    num_classes: int
    config: TrainConfig
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    progress_file: GroupState | None = None

    def fit(
        self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, eval_set: EvalSet | None = None
    ) -> NetworkEstimator:
        cfg = self.config
        X_val = y_val = None
        if cfg.selection == "val-split":
            held = validation_subjects(groups, cfg.val_fraction, cfg.seed)
            is_val = np.isin(groups, held)
            X, y, X_val, y_val = X[~is_val], y[~is_val], X[is_val], y[is_val]
        elif cfg.selection == "test-oracle":
            if eval_set is None:
                raise ValueError("test-oracle selection needs the test fold as eval_set")
            X_val, y_val = eval_set
        # fit trains on cfg.num_threads threads itself; predict_proba below fixes them too.
        result = fit(
            self.model_name,
            self.num_classes,
            X,
            y,
            cfg,
            X_val,
            y_val,
            dict(self.model_kwargs),
            progress_file=self.progress_file,
        )
        self.model_ = result.model
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return _threads_fixed(self.config.num_threads, predict_proba, self.model_, X)


@dataclass
class FittedNetwork:
    """A network an all-folds trainer has fitted: predicts on `threads` torch threads."""

    model_: nn.Module
    threads: int
    history_: list[dict[str, float]] = field(default_factory=list)
    best_epoch_: int = 0

    def fit(self, *args: Any, **kwargs: Any) -> FittedNetwork:
        raise TypeError("FittedNetwork is already fitted (by an all-folds trainer)")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return _threads_fixed(self.threads, predict_proba, self.model_, X)


def fitted_networks(
    models: Sequence[nn.Module],
    histories: Sequence[list[dict[str, float]]],
    config: TrainConfig,
) -> list[FittedNetwork]:
    """All-folds trainers' models as estimators: every fold keeps its last epoch."""
    return [
        FittedNetwork(m, config.num_threads, list(h), config.epochs)
        for m, h in zip(models, histories, strict=True)
    ]


@dataclass(frozen=True)
class NetworkTrainer:
    """The per-fold loop: fold i trains a `NetworkEstimator` with seed `config.seed + i`."""

    model_name: str
    num_classes: int
    config: TrainConfig
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def peeks_at_test(self) -> bool:
        return self.config.selection == "test-oracle"

    def estimator(self, fold: Fold) -> NetworkEstimator:
        cfg = dataclasses.replace(self.config, seed=self.config.seed + fold.index)
        return NetworkEstimator(self.model_name, self.num_classes, cfg, dict(self.model_kwargs))

    def describe(self) -> dict[str, Any]:
        # The same stamp as before the trainers existed: "plain" checkpoints stay resumable.
        return {
            "model": self.model_name,
            "model_kwargs": dict(self.model_kwargs),
            "config": dataclasses.asdict(self.config),
        }


@dataclass(frozen=True)
class AllFoldsNetworks:
    """Base of the trainers that fit every fold of a group at once, here in one process: a
    subclass implements `_fit` (the fold models and their histories) and names its `engine`;
    every fold keeps its last epoch."""

    model_name: str
    num_classes: int
    config: TrainConfig
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    peeks_at_test = False
    engine = "all-folds"

    def groups(self, folds: Sequence[Fold]) -> list[list[Fold]]:
        """The folds in the groups `fit_folds` trains together (fixed by the whole list)."""
        return [list(folds)]

    def progress_groups(self, group: Sequence[Fold]) -> list[list[Fold]]:
        """The groups of folds whose progress files (`GroupCheckpoints.for_folds`) training
        `group` can leave; the fold runner removes them once the group's folds are saved."""
        return [list(group)]

    def fit_folds(
        self,
        X: np.ndarray,
        y: np.ndarray,
        subjects: np.ndarray,
        folds: Sequence[Fold],
        *,
        progress: bool = False,
        checkpoints: GroupCheckpoints | None = None,
    ) -> list[FittedNetwork]:
        """One fitted network per fold of one group, each on its `train_idx` only; with
        `checkpoints`, the group's progress is saved as it trains and resumed from there."""
        models, histories = self._fit(X, y, list(folds), progress, checkpoints)
        return fitted_networks(models, histories, self.config)

    def _fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        folds: list[Fold],
        progress: bool,
        checkpoints: GroupCheckpoints | None,
    ) -> tuple[list[nn.Module], list[list[dict[str, float]]]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        settings = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("model_name", "num_classes", "config", "model_kwargs")
        }
        return {
            "engine": self.engine,
            "model": self.model_name,
            "model_kwargs": dict(self.model_kwargs),
            "config": dataclasses.asdict(self.config),
            **settings,
        }


# What the fold runner takes: a per-fold trainer or one that fits folds together.
Trainer = FoldTrainer | AllFoldsNetworks
