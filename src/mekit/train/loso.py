"""Cross-validation: one model per fold, predictions joined by id.

`cross_validate` is the one fold runner: it runs any list of `Fold`s (leave-one-subject-out,
k-fold, leave-one-corpus-out...) with any `Trainer` (`mekit.train.estimators`: a network
per fold, all folds at once, the SVM). `run_folds` is the per-fold network loop on top of it
and `run_loso` leave-one-subject-out on top of that. A fold's `test_subject` is the name of
the group it holds out (a subject, a corpus, "fold3"...).

Fold i trains with seed `config.seed + i` and `config.num_threads` torch threads, so a run gives
identical predictions whichever executor (sequential, worker processes, Ray; see
`mekit.train.executors`) runs its folds, and whether or not it was resumed from checkpoints.
An all-folds trainer's groups of folds (fold-batched training) run in the executor's workers
on a CPU, each worker on its share of the cores (`group_threads`); run here (a sequential
executor), a group uses this process's torch threads. Another thread count can change the
floats at rounding level for some models (Off-ApexNet with a strain stream gave identical
predictions on a 442-sample LOSO, 1 thread in each of 2 workers against 2 threads here).

Resume: with `checkpoint_dir`, each finished fold is saved to `fold_{index:03d}.npz` there
(written atomically), stamped with a fingerprint of everything that determines it (data,
labels, the trainer's description: model, settings, engine; the fold's samples). A rerun loads
the folds whose fingerprint matches instead of training them again, and retrains the others.
Folds trained together (an all-folds trainer) also save their group's progress as they train
(`group_FIRST-LAST_N.pt`, `mekit.train.group_state`), and a rerun continues the group from it;
so do folds trained one model at a time by an estimator with a `progress_file`
(`fold_NNN.progress.pt`). Such a file is removed once all its folds are saved.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mekit.errors import MekitError
from mekit.fileio import atomic_open
from mekit.procs import usable_cpus
from mekit.train.estimators import AllFoldsNetworks, Estimator, NetworkTrainer, Trainer
from mekit.train.executors import FoldExecutor, FoldFn, SequentialExecutor, make_executor
from mekit.train.group_state import GroupCheckpoints
from mekit.train.loop import TrainConfig
from mekit.train.metrics import ClassificationMetrics, classification_metrics
from mekit.train.splits import Fold, loso_folds

log = logging.getLogger(__name__)

T = TypeVar("T")

# Bump when the checkpoint contents or the fingerprint recipe change: old files are then
# retrained rather than misread.
_CHECKPOINT_VERSION = 1


@dataclass(frozen=True, eq=False)
class LosoResult:
    """Predictions of every tested sample from the fold that held it out.

    `predictions`: one row per tested sample in input order (every sample, for LOSO and any
    protocol whose test sets cover all samples), columns id, subject, fold, true, pred (label
    strings) and prob_<label> per label. `histories[name]` is the per-epoch history (see
    `FitResult`) of the fold named `name` (its `Fold.test_subject`, the held-out group);
    `best_epochs[name]` the epoch kept. `oracle` is True when epochs were selected on the test
    fold ("test-oracle"): such figures are not valid estimates. `selection`, when given,
    says in words how epochs were chosen where `config` cannot (e.g. a blend's parts).
    """

    predictions: pd.DataFrame
    histories: dict[str, list[dict[str, float]]]
    best_epochs: dict[str, int]
    labels: tuple[str, ...]
    model_name: str
    config: TrainConfig
    oracle: bool
    selection: str = ""

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


def _fold_output(estimator: Estimator, fold: Fold, X: np.ndarray, num_classes: int) -> _FoldOutput:
    """A fitted estimator's probabilities on the fold's test samples, (n_test, num_classes):
    an estimator that saw only some classes (`classes_`, as scikit-learn's) gets zeros for
    the others."""
    probs = np.asarray(estimator.predict_proba(X[fold.test_idx]), dtype=np.float32)
    classes = getattr(estimator, "classes_", None)
    if classes is not None and len(classes) != num_classes:
        full = np.zeros((len(probs), num_classes), np.float32)
        full[:, np.asarray(classes, dtype=np.int64)] = probs
        probs = full
    return _FoldOutput(
        index=fold.index,
        test_subject=fold.test_subject,
        probs=probs,
        history=list(getattr(estimator, "history_", [])),
        best_epoch=int(getattr(estimator, "best_epoch_", 0)),
    )


def _run_group(
    X: np.ndarray,
    y: np.ndarray,
    subjects: np.ndarray,
    group: list[Fold],
    trainer: AllFoldsNetworks,
    num_classes: int,
    progress: bool,
    checkpoints: GroupCheckpoints | None = None,
) -> list[_FoldOutput]:
    """Fit one group of folds together (an all-folds trainer) and score each fold's test
    samples: here, or in a worker when the groups of a CPU run go through an executor. With
    `checkpoints` the group saves its progress as it trains (`mekit.train.group_state`)."""
    fitted = trainer.fit_folds(X, y, subjects, group, progress=progress, checkpoints=checkpoints)
    return [_fold_output(e, f, X, num_classes) for e, f in zip(fitted, group, strict=True)]


def _groups_in_workers(
    trainer: AllFoldsNetworks, groups: list[list[Fold]], executor: FoldExecutor | None
) -> bool:
    """Whether an all-folds trainer's groups go to the executor's workers, several at a time:
    on a CPU, with more than one group and an executor that runs jobs side by side. (On a GPU
    one program trains every fold; worker processes would only share the device.)"""
    from mekit.train.device import resolve_device

    parallel = executor is not None and not isinstance(executor, SequentialExecutor)
    return parallel and len(groups) > 1 and resolve_device(trainer.config.device).type == "cpu"


def group_threads(num_threads: int, executor: FoldExecutor) -> int:
    """Torch threads per worker for groups of folds: `num_threads`, or each local worker's
    share of this machine's CPUs when that is more (a group in one process used every core
    before; 2 workers on 2 cores get 1 thread each, on 16 cores 8)."""
    workers = getattr(executor, "workers", 0)  # local processes; Ray's cluster decides itself
    return max(num_threads, usable_cpus() // workers) if workers else num_threads


def _clear_progress(trainer: Trainer, group: list[Fold], checkpoints: GroupCheckpoints) -> None:
    """Remove the progress files training `group` can leave, its folds' results being saved."""
    together = isinstance(trainer, AllFoldsNetworks)
    for part in trainer.progress_groups(group) if together else [group]:
        checkpoints.for_folds(part).clear()


def _run_fold(
    X: np.ndarray,
    y: np.ndarray,
    subjects: np.ndarray,
    fold: Fold,
    trainer: Any,
    num_classes: int,
    checkpoints: GroupCheckpoints | None = None,
) -> _FoldOutput:
    """Fit the trainer's estimator for `fold` on its training samples; score its test samples.
    Runs wherever the executor puts it (a worker process receives X, y, subjects once). With
    `checkpoints`, an estimator that can (one with a `progress_file`) saves its progress as it
    trains, and continues from it on a rerun."""
    train, test = fold.train_idx, fold.test_idx
    eval_set = (X[test], y[test]) if trainer.peeks_at_test else None
    estimator = trainer.estimator(fold)
    if checkpoints is not None and hasattr(estimator, "progress_file"):
        estimator.progress_file = checkpoints.for_folds([fold])
    estimator.fit(X[train], y[train], subjects[train], eval_set=eval_set)
    return _fold_output(estimator, fold, X, num_classes)


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


def _validate_folds(folds: Sequence[Fold], n: int) -> None:
    if not folds:
        raise MekitError("no folds to run")
    indices = [f.index for f in folds]
    names = [f.test_subject for f in folds]
    if len(set(indices)) != len(indices):
        raise MekitError(f"fold indices must be unique, got {sorted(indices)}")
    if len(set(names)) != len(names):
        raise MekitError(f"fold names (test_subject) must be unique, got {names}")
    tested = np.zeros(n, dtype=bool)
    for f in folds:
        if f.index < 0:
            raise MekitError(f"fold {f.test_subject!r}: index must be >= 0, got {f.index}")
        for what, idx in (("train", f.train_idx), ("test", f.test_idx)):
            idx = np.asarray(idx)
            if len(idx) == 0:
                raise MekitError(f"fold {f.test_subject!r} has no {what} samples")
            if idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= n:
                raise MekitError(
                    f"fold {f.test_subject!r}: {what} indices must be integer positions 0..{n - 1}"
                )
        if np.intersect1d(f.train_idx, f.test_idx).size:
            raise MekitError(f"fold {f.test_subject!r} trains on some of its test samples")
        if tested[f.test_idx].any():
            raise MekitError(
                f"fold {f.test_subject!r} tests samples another fold tests already; "
                "test sets must not overlap"
            )
        tested[f.test_idx] = True


# ---- checkpoints -------------------------------------------------------------------------


def _fingerprints(
    X: np.ndarray,
    y: np.ndarray,
    subjects: np.ndarray,
    labels: Sequence[str],
    trainer: Mapping[str, Any],
    folds: Sequence[Fold],
) -> dict[int, str]:
    """fold index -> hex digest of everything that determines that fold's output: the data, the
    trainer's description and the fold's samples."""
    h = hashlib.sha256()

    def add(tag: str, payload: bytes | memoryview) -> None:
        h.update(tag.encode())
        h.update(len(payload).to_bytes(8, "little"))
        h.update(payload)

    def add_json(tag: str, value: Any) -> None:
        add(tag, json.dumps(value, sort_keys=True, default=repr).encode())

    add_json("version", _CHECKPOINT_VERSION)
    add_json("X.meta", [list(X.shape), X.dtype.str])
    add("X", memoryview(np.ascontiguousarray(X)).cast("B"))
    add("y", np.ascontiguousarray(y, dtype=np.int64).tobytes())
    add_json("subjects", [str(s) for s in subjects])
    add_json("labels", [str(lab) for lab in labels])
    for key, value in trainer.items():  # the trainer's description (FoldTrainer.describe)
        add_json(key, value)
    out = {}
    for fold in folds:
        hf = h.copy()
        for tag, payload in (
            ("fold.index", str(fold.index).encode()),
            ("fold.name", fold.test_subject.encode()),
            ("fold.train", np.asarray(fold.train_idx, dtype=np.int64).tobytes()),
            ("fold.test", np.asarray(fold.test_idx, dtype=np.int64).tobytes()),
        ):
            hf.update(tag.encode())
            hf.update(len(payload).to_bytes(8, "little"))
            hf.update(payload)
        out[fold.index] = hf.hexdigest()
    return out


def _checkpoint_path(directory: Path, index: int) -> Path:
    return directory / f"fold_{index:03d}.npz"


def save_stamped(path: Path, fingerprint: str, **arrays: np.ndarray) -> None:
    """A fold's result file: `arrays` and the `fingerprint` of what produced them, in one .npz
    written atomically (a reader sees the old file or the complete new one, never a part)."""
    with atomic_open(path, "wb", fsync=True) as f:
        np.savez(f, fingerprint=np.array(fingerprint), **arrays)


def load_stamped(path: Path, fingerprint: str, read: Callable[[Any], T]) -> T | None:
    """`read(arrays)` of the file `save_stamped` wrote at `path` when it carries `fingerprint`;
    None when the file is missing, stamped by another run (logged) or unreadable, `read`'s
    KeyError / ValueError included (a warning): the caller then computes that fold again."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != fingerprint:
                log.info("%s is from a different run or data; retraining that fold", path)
                return None
            return read(z)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        log.warning("ignoring unreadable fold file %s (%s); retraining that fold", path, e)
        return None


def _save_checkpoint(path: Path, out: _FoldOutput, fingerprint: str) -> None:
    save_stamped(
        path,
        fingerprint,
        index=np.array(out.index, dtype=np.int64),
        test_subject=np.array(out.test_subject),
        probs=np.asarray(out.probs, dtype=np.float32),
        history=np.array(json.dumps(out.history)),
        best_epoch=np.array(out.best_epoch, dtype=np.int64),
    )


def _read_checkpoint(z: Any) -> _FoldOutput:
    return _FoldOutput(
        index=int(z["index"]),
        test_subject=str(z["test_subject"]),
        probs=np.array(z["probs"], dtype=np.float32),
        history=json.loads(str(z["history"])),
        best_epoch=int(z["best_epoch"]),
    )


def _load_checkpoint(
    path: Path, fold: Fold, fingerprint: str, num_classes: int
) -> _FoldOutput | None:
    """The saved output of `fold`, or None when the file is missing, stale or unreadable."""
    out = load_stamped(path, fingerprint, _read_checkpoint)
    if out is None:
        return None
    if (
        out.index != fold.index
        or out.test_subject != fold.test_subject
        or out.probs.shape != (len(fold.test_idx), num_classes)
    ):
        log.warning("checkpoint %s does not fit fold %s; retraining it", path, fold.test_subject)
        return None
    return out


# ---- runs --------------------------------------------------------------------------------


def cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    subjects: Sequence[str],
    ids: Sequence[str],
    labels: Sequence[str],
    trainer: Trainer,
    folds: Sequence[Fold] | None = None,
    *,
    executor: FoldExecutor | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> LosoResult:
    """The one fold runner: train `trainer`'s estimator per fold on its `train_idx` only and
    predict its `test_idx`; every model family (networks per fold or all folds at once, the
    SVM) goes through here (see `mekit.train.estimators`).

    X: (N, ...) float32 matching the model's input; y: (N,) class indices into `labels`;
    subjects, ids: one string per sample (ids unique; subjects are what "val-split" draws
    validation groups from). folds: any protocol (default leave-one-subject-out), with unique
    indices (fold i trains with seed config.seed + i) and unique names (`test_subject`, the
    held-out group's name, keys of the histories); test sets must not overlap, and samples no
    fold tests get no row in the predictions.

    executor: where per-fold trainers' folds run (`mekit.train.executors`); default one after
    another here. All-folds trainers train each group of folds here, or, on a CPU with more
    than one group, each group in one of the executor's workers (`group_threads` torch
    threads each), as many groups at once as it has workers. checkpoint_dir: save each
    finished fold there
    and, on a rerun, load matching ones instead of training them (see the module docstring).
    `desc` labels the progress bar and logs.
    """
    X, y, subj, folds = prepare_folds(X, y, subjects, ids, labels, folds)
    desc = desc or f"CV {trainer.model_name}"
    saver = None
    saved: dict[int, _FoldOutput] = {}
    if checkpoint_dir is not None:
        saver = _Checkpoints(Path(checkpoint_dir), X, y, subj, labels, trainer, folds)
        saved = saver.load(folds)
    # An all-folds trainer's fold depends on the folds trained with it (shared steps and
    # dropout draws): a group is resumed whole or trained again whole, so a resumed run
    # still equals an uninterrupted one.
    together = isinstance(trainer, AllFoldsNetworks)
    groups = trainer.groups(folds) if together else [[f] for f in folds]
    complete = [all(f.index in saved for f in g) for g in groups]
    outputs = [saved[f.index] for g, ok in zip(groups, complete, strict=True) if ok for f in g]
    todo = [g for g, ok in zip(groups, complete, strict=True) if not ok]
    if saver is not None:
        log.info(
            "%s: resumed %d of %d folds from checkpoints in %s",
            desc,
            len(outputs),
            len(folds),
            saver.directory,
        )
    if together:
        if not _groups_in_workers(trainer, todo, executor):
            executor = None  # the groups train here, one after another
        where = "folds trained together"
        if executor is not None:
            where = f"groups of folds trained together, executor={executor.describe()}"
    else:
        executor = executor if executor is not None else SequentialExecutor()
        where = f"executor={executor.describe()}"
    log.info(
        "%s: %d samples, %d folds (%d to train), selection=%s, %s",
        desc,
        len(y),
        len(folds),
        len(folds) - len(outputs),
        trainer.config.selection,
        where,
    )
    checkpoints = saver.groups() if saver is not None else None
    if checkpoints is not None:  # a rerun after a stop between a group's save and this
        for group, ok in zip(groups, complete, strict=True):
            if ok:
                _clear_progress(trainer, group, checkpoints)
    group_of = {f.index: i for i, g in enumerate(todo) for f in g}
    unsaved = [{f.index for f in g} for g in todo]
    fitting = _fit_folds(
        trainer, todo, X, y, subj, len(labels), executor, progress, desc, checkpoints
    )
    for out in fitting:
        if saver is not None:
            saver.save(out)
            g = group_of[out.index]
            unsaved[g].discard(out.index)
            if not unsaved[g]:  # all its folds saved: the group's progress has done its job
                _clear_progress(trainer, todo[g], checkpoints)
        outputs.append(out)
    return _assemble(outputs, folds, y, subj, ids, labels, trainer.model_name, trainer.config)


def _fit_folds(
    trainer: Trainer,
    groups: list[list[Fold]],
    X: np.ndarray,
    y: np.ndarray,
    subjects: np.ndarray,
    num_classes: int,
    executor: FoldExecutor | None,
    progress: bool,
    desc: str,
    checkpoints: GroupCheckpoints | None = None,
) -> Iterator[_FoldOutput]:
    """Each fold's output as it finishes: all-folds trainers a group of folds at a time,
    here when `executor` is None, else one group per job of the executor's workers; per-fold
    ones through the executor (whose workers are stopped promptly on an error)."""
    if not groups:
        return
    if isinstance(trainer, AllFoldsNetworks):
        if executor is None:
            for group in groups:
                yield from _run_group(
                    X, y, subjects, group, trainer, num_classes, progress, checkpoints
                )
            return
        for outputs in map_folds(
            _run_group,
            groups,  # each group is one job: its folds train together in one worker
            (X, y, subjects),
            (trainer, num_classes, False, checkpoints),
            threads=group_threads(trainer.config.num_threads, executor),
            executor=executor,
            progress=progress,
            desc=f"{desc} ({len(groups)} groups of folds)",
            unit="group",
        ):
            yield from outputs
        return
    folds = [f for g in groups for f in g]
    yield from map_folds(
        _run_fold,
        folds,
        (X, y, subjects),
        (trainer, num_classes, checkpoints),
        threads=trainer.config.num_threads,
        executor=executor,
        progress=progress,
        desc=desc,
    )


def map_folds(
    fn: FoldFn,
    folds: Sequence[Fold],
    data: tuple[Any, ...],
    args: tuple[Any, ...] = (),
    *,
    threads: int = 1,
    executor: FoldExecutor | None = None,
    progress: bool = True,
    desc: str = "folds",
    unit: str = "fold",
) -> Iterator[Any]:
    """`fn(*data, fold, *args)` for every fold, through `executor` (default: here, one after
    another), each result as its fold completes, under a progress bar. The per-fold loop of
    every fold-wise trainer: `cross_validate`'s estimators and the learned spotter
    (`mekit.spot.learned.loso.loso_spotting`), and of the groups of folds an all-folds trainer
    trains on a CPU (a "fold" is then a list of folds; `unit` names it on the bar). Workers
    (`threads` torch threads each) are stopped promptly on an error or an early close."""
    executor = executor if executor is not None else SequentialExecutor()
    bar = tqdm(total=len(folds), desc=desc, unit=unit, disable=not progress)
    results = None
    try:
        results = executor.map(fn, folds, data, args, threads)
        for out in results:
            yield out
            bar.update()
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
        bar.close()


class _Checkpoints:
    """Fold outputs saved as `fold_{index:03d}.npz`, stamped with their fingerprint."""

    def __init__(
        self,
        directory: Path,
        X: np.ndarray,
        y: np.ndarray,
        subjects: np.ndarray,
        labels: Sequence[str],
        trainer: Trainer,
        folds: Sequence[Fold],
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.num_classes = len(labels)
        self.fingerprints = _fingerprints(X, y, subjects, labels, trainer.describe(), folds)

    def load(self, folds: Sequence[Fold]) -> dict[int, _FoldOutput]:
        """{fold index: its saved output}, for the folds whose checkpoint matches."""
        out = {}
        for fold in folds:
            path = _checkpoint_path(self.directory, fold.index)
            saved = _load_checkpoint(path, fold, self.fingerprints[fold.index], self.num_classes)
            if saved is not None:
                out[fold.index] = saved
        return out

    def save(self, out: _FoldOutput) -> None:
        path = _checkpoint_path(self.directory, out.index)
        _save_checkpoint(path, out, self.fingerprints[out.index])

    def groups(self) -> GroupCheckpoints:
        """Where groups of folds trained together keep their progress, stamped alike."""
        return GroupCheckpoints(self.directory, dict(self.fingerprints))


def run_folds(
    X: np.ndarray,
    y: np.ndarray,
    subjects: Sequence[str],
    ids: Sequence[str],
    labels: Sequence[str],
    model_name: str,
    config: TrainConfig,
    folds: Sequence[Fold] | None = None,
    executor: FoldExecutor | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    model_kwargs: Mapping[str, Any] | None = None,
    *,
    workers: int = 1,
    desc: str | None = None,
) -> LosoResult:
    """The per-fold loop for a registered network: `cross_validate` with a `NetworkTrainer`
    (one `mekit.train.loop.fit` per fold, seed config.seed + fold index).

    X: (N, C, H, W) float32 (or (N, C, T, H, W) for temporal models) matching the model's
    spec; y: (N,) class indices into `labels`; subjects, ids: one string per sample (ids
    unique). folds: default leave-one-subject-out. Without an `executor`, `workers` > 1 runs
    folds in that many local processes (spawned; each uses `config.num_threads` threads).
    Results are identical to a sequential run either way. `checkpoint_dir`: see the module
    docstring.
    """
    trainer = NetworkTrainer(model_name, len(labels), config, dict(model_kwargs or {}))
    return cross_validate(
        X,
        y,
        subjects,
        ids,
        labels,
        trainer,
        folds,
        executor=executor if executor is not None else make_executor("local", workers),
        checkpoint_dir=checkpoint_dir,
        progress=progress,
        desc=desc or f"{'LOSO' if folds is None else 'CV'} {model_name}",
    )


# Leave-one-subject-out is run_folds' default protocol.
run_loso = run_folds


def prepare_folds(
    X: np.ndarray,
    y: np.ndarray,
    subjects: Sequence[str],
    ids: Sequence[str],
    labels: Sequence[str],
    folds: Sequence[Fold] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Fold]]:
    """The checked inputs of a cross-validation: (X float32 contiguous, y int64, subjects as
    strings, folds: the given ones or leave-one-subject-out)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    _validate(X, y, subjects, ids, labels)
    subj = np.asarray([str(s) for s in subjects])
    folds = list(folds) if folds is not None else loso_folds(subj)
    _validate_folds(folds, len(y))
    return X, y, subj, folds


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
    by_index = {fold.index: fold for fold in folds}
    if sorted(by_index) != [o.index for o in outputs]:
        raise MekitError("internal: fold outputs do not match the folds")
    probs = np.zeros((len(y), len(labels)), dtype=np.float32)
    fold_of = np.full(len(y), -1, dtype=np.int64)
    for out in outputs:
        fold = by_index[out.index]
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
    tested = fold_of >= 0
    if not tested.all():
        frame = frame[tested].reset_index(drop=True)
    return LosoResult(
        predictions=frame,
        histories={o.test_subject: o.history for o in outputs},
        best_epochs={o.test_subject: o.best_epoch for o in outputs},
        labels=tuple(str(lab) for lab in labels),
        model_name=model_name,
        config=config,
        oracle=config.selection == "test-oracle",
    )
