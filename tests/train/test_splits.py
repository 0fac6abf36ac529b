from __future__ import annotations

import numpy as np
import pytest

from mekit.errors import MekitError
from mekit.train import loso_folds, validation_subjects

SUBJECTS = ["s3", "s1", "s2", "s1", "s3", "s3", "s10", "s2"]


def test_each_sample_tested_exactly_once_and_never_trained_on_with_its_subject():
    folds = loso_folds(SUBJECTS)
    subj = np.asarray(SUBJECTS)
    tested = np.concatenate([f.test_idx for f in folds])
    assert sorted(tested.tolist()) == list(range(len(SUBJECTS)))
    for f in folds:
        assert set(subj[f.test_idx]) == {f.test_subject}
        assert f.test_subject not in set(subj[f.train_idx])
        assert len(f.train_idx) + len(f.test_idx) == len(SUBJECTS)
        assert f.train_idx.dtype == np.int64


def test_folds_in_sorted_subject_order():
    folds = loso_folds(SUBJECTS)
    assert [f.test_subject for f in folds] == ["s1", "s10", "s2", "s3"]
    assert [f.index for f in folds] == [0, 1, 2, 3]


def test_one_subject_is_an_error():
    with pytest.raises(MekitError, match="at least 2 subjects"):
        loso_folds(["s1", "s1"])


def test_validation_subjects_are_whole_training_subjects():
    train = [f"s{i}" for i in range(10) for _ in range(3)]
    held = validation_subjects(train, 0.2, seed=0)
    assert len(held) == 2 and set(held) <= set(train)
    assert list(held) == sorted(held)
    assert validation_subjects(train, 0.2, seed=0) == held  # deterministic
    draws = {validation_subjects(train, 0.2, seed=s) for s in range(10)}
    assert len(draws) > 1  # the seed matters


def test_validation_leaves_a_training_subject_and_takes_at_least_one():
    assert len(validation_subjects(["a", "b"], 0.9, seed=0)) == 1
    assert len(validation_subjects(["a", "b", "c"], 0.01, seed=0)) == 1


def test_validation_never_draws_the_test_subject():
    for fold in loso_folds(SUBJECTS):
        train_subjects = np.asarray(SUBJECTS)[fold.train_idx]
        for seed in range(5):
            assert fold.test_subject not in validation_subjects(train_subjects, 0.5, seed)


@pytest.mark.parametrize(
    ("subjects", "fraction"), [(["a"], 0.5), (["a", "b"], 0.0), (["a", "b"], 1)]
)
def test_validation_bad_input(subjects, fraction):
    with pytest.raises(MekitError):
        validation_subjects(subjects, fraction, seed=0)
