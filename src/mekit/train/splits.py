"""Leave-one-subject-out folds and subject-wise validation splits.

Splitting is its own step, separate from training: `loso_folds` is sklearn's
`LeaveOneGroupOut` with groups = subject, in sorted subject order, so fold i always tests the
same subject.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mekit.errors import MekitError


@dataclass(frozen=True, eq=False)
class Fold:
    """One LOSO fold: sample positions (int64 arrays) for training and for testing."""

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
