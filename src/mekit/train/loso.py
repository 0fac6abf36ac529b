"""Leave-one-subject-out evaluation: one model per test subject, predictions joined by id.

Fold i trains with seed `config.seed + i`, so a run gives identical predictions whether its
folds run one after another or in parallel worker processes.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mekit.errors import MekitError
from mekit.train.loop import TrainConfig, fit, predict_proba
from mekit.train.metrics import ClassificationMetrics, classification_metrics
from mekit.train.splits import Fold, loso_folds, validation_subjects

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LosoResult:
    """Predictions of every sample from the fold that held out its subject.

    `predictions`: one row per sample in input order, columns id, subject, fold, true, pred
    (label strings) and prob_<label> per label. `histories[test_subject]` is that fold's
    per-epoch history (see `FitResult`); `best_epochs[test_subject]` the epoch kept.
    `oracle` is True when epochs were selected on the test subject ("test-oracle"): such
    figures are not valid estimates.
    """

    predictions: pd.DataFrame
    histories: dict[str, list[dict[str, float]]]
    best_epochs: dict[str, int]
    labels: tuple[str, ...]
    model_name: str
    config: TrainConfig
    oracle: bool

    def metrics(self) -> ClassificationMetrics:
        """Metrics over all folds' predictions concatenated (MEGC definitions)."""
        return classification_metrics(
            self.predictions["true"], self.predictions["pred"], self.labels
        )


@dataclass(frozen=True)
class _FoldOutput:
    index: int
    test_subject: str
    probs: np.ndarray
    history: list[dict[str, float]]
    best_epoch: int


def _run_fold(
    X: np.ndarray,
    y: np.ndarray,
    subjects: np.ndarray,
    fold: Fold,
    model_name: str,
    num_classes: int,
    config: TrainConfig,
    model_kwargs: Mapping[str, Any] | None,
) -> _FoldOutput:
    cfg = dataclasses.replace(config, seed=config.seed + fold.index)
    train = fold.train_idx
    X_val = y_val = None
    if cfg.selection == "val-split":
        held = validation_subjects(subjects[train], cfg.val_fraction, cfg.seed)
        is_val = np.isin(subjects[train], held)
        train, val = train[~is_val], train[is_val]
        X_val, y_val = X[val], y[val]
    elif cfg.selection == "test-oracle":
        X_val, y_val = X[fold.test_idx], y[fold.test_idx]
    result = fit(model_name, num_classes, X[train], y[train], cfg, X_val, y_val, model_kwargs)
    return _FoldOutput(
        index=fold.index,
        test_subject=fold.test_subject,
        probs=predict_proba(result.model, X[fold.test_idx]),
        history=result.history,
        best_epoch=result.best_epoch,
    )


# Worker processes receive the data once, through the pool initializer, not once per fold.
_WORKER_DATA: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def _init_worker(X: np.ndarray, y: np.ndarray, subjects: np.ndarray, threads: int) -> None:
    global _WORKER_DATA
    _WORKER_DATA = (X, y, subjects)
    torch.set_num_threads(threads)


def _run_fold_in_worker(fold: Fold, *args: Any) -> _FoldOutput:
    assert _WORKER_DATA is not None, "worker not initialised"
    return _run_fold(*_WORKER_DATA, fold, *args)


def _validate(
    X: np.ndarray, y: np.ndarray, subjects: Sequence[str], ids: Sequence[str], labels: Sequence[str]
) -> None:
    n = len(X)
    if not (len(y) == len(subjects) == len(ids) == n):
        raise MekitError(
            f"X, y, subjects and ids must have one entry per sample; got lengths "
            f"{n}, {len(y)}, {len(subjects)}, {len(ids)}"
        )
    dupes = pd.Series(list(ids)).duplicated()
    if dupes.any():
        raise MekitError(
            f"sample ids must be unique; repeated: {sorted(set(pd.Series(list(ids))[dupes]))[:5]}"
        )
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise MekitError(f"labels must be at least 2 distinct class names, got {list(labels)}")
    if n and (y.min() < 0 or y.max() >= len(labels)):
        raise MekitError(f"y must hold class indices 0..{len(labels) - 1} into labels")


def run_loso(
    X: np.ndarray,
    y: np.ndarray,
    subjects: Sequence[str],
    ids: Sequence[str],
    labels: Sequence[str],
    model_name: str,
    config: TrainConfig,
    workers: int = 1,
    progress: bool = True,
    model_kwargs: Mapping[str, Any] | None = None,
) -> LosoResult:
    """Leave-one-subject-out train and predict.

    X: (N, C, H, W) float32 (or (N, C, T, H, W) for temporal models) matching the model's
    spec; y: (N,) class indices into `labels`; subjects, ids: one string per sample (ids
    unique). `workers` > 1 runs folds in that many processes (spawned; each uses
    `config.num_threads` threads), with results identical to a sequential run.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    _validate(X, y, subjects, ids, labels)
    if workers < 1:
        raise MekitError(f"workers must be at least 1, got {workers}")
    subj = np.asarray([str(s) for s in subjects])
    folds = loso_folds(subj)
    args = (model_name, len(labels), config, dict(model_kwargs or {}))
    log.info(
        "LOSO %s: %d samples, %d folds, selection=%s, workers=%d",
        model_name,
        len(y),
        len(folds),
        config.selection,
        workers,
    )
    outputs: list[_FoldOutput] = []
    bar = tqdm(total=len(folds), desc=f"LOSO {model_name}", unit="fold", disable=not progress)
    try:
        if workers == 1:
            for fold in folds:
                outputs.append(_run_fold(X, y, subj, fold, *args))
                bar.update()
        else:
            # spawn, not fork: forking a process whose OpenMP pool is live can hang the child.
            with ProcessPoolExecutor(
                max_workers=min(workers, len(folds)),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(X, y, subj, config.num_threads),
            ) as pool:
                futures = [pool.submit(_run_fold_in_worker, fold, *args) for fold in folds]
                for future in as_completed(futures):
                    outputs.append(future.result())
                    bar.update()
    finally:
        bar.close()
    return _assemble(outputs, folds, y, subj, ids, labels, model_name, config)


def _assemble(
    outputs: list[_FoldOutput],
    folds: list[Fold],
    y: np.ndarray,
    subjects: np.ndarray,
    ids: Sequence[str],
    labels: Sequence[str],
    model_name: str,
    config: TrainConfig,
) -> LosoResult:
    outputs = sorted(outputs, key=lambda o: o.index)
    probs = np.zeros((len(y), len(labels)), dtype=np.float32)
    fold_of = np.zeros(len(y), dtype=np.int64)
    for out, fold in zip(outputs, folds, strict=True):
        probs[fold.test_idx] = out.probs
        fold_of[fold.test_idx] = fold.index
    names = np.asarray([str(lab) for lab in labels], dtype=object)
    frame = pd.DataFrame(
        {
            "id": [str(i) for i in ids],
            "subject": subjects,
            "fold": fold_of,
            "true": names[y],
            "pred": names[probs.argmax(axis=1)],
        }
    )
    for k, name in enumerate(names):
        frame[f"prob_{name}"] = probs[:, k]
    return LosoResult(
        predictions=frame,
        histories={o.test_subject: o.history for o in outputs},
        best_epochs={o.test_subject: o.best_epoch for o in outputs},
        labels=tuple(str(lab) for lab in labels),
        model_name=model_name,
        config=config,
        oracle=config.selection == "test-oracle",
    )
