"""Cross-validation folds for every protocol, and subject-wise validation splits.

Splitting is its own step, separate from training. Every protocol holds out whole subjects,
so no subject is ever in both the training and the test side of a fold:
- `loso_folds`: sklearn's `LeaveOneGroupOut` with groups = subject, in sorted subject order,
  so fold i always tests the same subject (also the MEGC composite protocol, over the union of
  corpora with subjects named dataset/subject);
- `corpus_folds`: leave one corpus out (cross-dataset);
- `kfold_folds`: k folds of whole subjects, stratified by class as far as subjects allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mekit.errors import MekitError


@dataclass(frozen=True, eq=False)
class Fold:
    """One fold: sample positions (int64 arrays) for training and for testing.

    `test_subject` names the held-out group: a subject (LOSO), a corpus (cross-dataset) or
    "fold3" (k-fold).
    """

    index: int
    test_subject: str
    train_idx: np.ndarray
    test_idx: np.ndarray


def loso_folds(subjects: Sequence[str]) -> list[Fold]:
    """One fold per subject (sorted by subject name); `subjects[i]` is sample i's subject."""
    # Imported here: scikit-learn takes seconds to import, and LOSO worker processes, which
    # only need `validation_subjects`, would pay that at every start.
    from sklearn.model_selection import LeaveOneGroupOut

    groups = np.asarray([str(s) for s in subjects])
    n_subjects = len(np.unique(groups))
    if n_subjects < 2:
        raise MekitError(
            f"leave-one-subject-out needs at least 2 subjects, got {n_subjects}; "
            "add samples of more subjects"
        )
    placeholder = np.zeros((len(groups), 1))
    folds = []
    # LeaveOneGroupOut iterates np.unique(groups), i.e. subjects in sorted order.
    for i, (train, test) in enumerate(LeaveOneGroupOut().split(placeholder, groups=groups)):
        folds.append(
            Fold(
                index=i,
                test_subject=str(groups[test[0]]),
                train_idx=train.astype(np.int64),
                test_idx=test.astype(np.int64),
            )
        )
    return folds


def validation_subjects(
    train_subjects: Sequence[str], fraction: float, seed: int
) -> tuple[str, ...]:
    """Draw whole subjects from the training subjects to hold out for validation.

    `train_subjects` are the subjects of the training samples (repeats allowed). Returns
    round(fraction * n_subjects) subjects, at least 1 and leaving at least 1 for training,
    sorted. Pass only training subjects: the test subject must never be drawn.
    """
    if not 0.0 < fraction < 1.0:
        raise MekitError(f"val_fraction must be between 0 and 1 (exclusive), got {fraction}")
    unique = sorted({str(s) for s in train_subjects})
    if len(unique) < 2:
        raise MekitError(
            f"a validation split needs at least 2 training subjects, got {len(unique)}; "
            "use selection='fixed' or add subjects"
        )
    n_val = min(max(1, round(fraction * len(unique))), len(unique) - 1)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(unique), size=n_val, replace=False)
    return tuple(sorted(unique[i] for i in chosen))


PROTOCOLS: tuple[str, ...] = ("loso", "composite", "cross-dataset", "kfold")


def protocol_folds(
    protocol: str,
    subjects: Sequence[str],
    datasets: Sequence[str],
    y: Sequence[int],
    k: int = 5,
    seed: int = 0,
) -> list[Fold]:
    """The folds of `protocol` for samples with these subjects, corpora and classes."""
    if protocol in ("loso", "composite"):
        return loso_folds(subjects)
    if protocol == "cross-dataset":
        return corpus_folds(datasets)
    if protocol == "kfold":
        return kfold_folds(subjects, y, k, seed)
    raise MekitError(f"unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}")


def corpus_folds(datasets: Sequence[str]) -> list[Fold]:
    """Leave one corpus out: train on all other corpora, test on the held-out one."""
    names = np.asarray([str(d) for d in datasets])
    unique = sorted(set(names))
    if len(unique) < 2:
        raise MekitError(
            f"the cross-dataset protocol needs at least 2 corpora, got {unique}; "
            "give several --corpus NAME=PATH"
        )
    positions = np.arange(len(names), dtype=np.int64)
    return [
        Fold(i, name, positions[names != name], positions[names == name])
        for i, name in enumerate(unique)
    ]


def kfold_folds(subjects: Sequence[str], y: Sequence[int], k: int, seed: int) -> list[Fold]:
    """k folds of whole subjects (sklearn's StratifiedGroupKFold, shuffled with `seed`)."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.asarray([str(s) for s in subjects])
    n_subjects = len(np.unique(groups))
    if not 2 <= k <= n_subjects:
        raise MekitError(f"k-fold needs 2 <= k <= number of subjects ({n_subjects}), got k={k}")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = []
    for i, (train, test) in enumerate(splitter.split(groups, np.asarray(y), groups=groups)):
        folds.append(Fold(i, f"fold{i + 1}", train.astype(np.int64), test.astype(np.int64)))
    return folds
