from __future__ import annotations

import numpy as np
import pytest

from mekit.errors import MekitError
from mekit.train import loso_folds, validation_subjects
from mekit.train.splits import corpus_folds, kfold_folds, protocol_folds

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


def _random_design(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 60))
    subjects = [f"s{int(v)}" for v in rng.integers(0, 8, n)]
    datasets = [f"d{int(v)}" for v in rng.integers(0, 3, n)]
    y = rng.integers(0, 3, n)
    return subjects, datasets, y


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("protocol", ["loso", "composite", "cross-dataset", "kfold"])
def test_no_group_is_on_both_sides_of_any_fold(seed, protocol):
    subjects, datasets, y = _random_design(seed)
    if len(set(subjects)) < 3 or len(set(datasets)) < 2:
        pytest.skip("degenerate draw")
    folds = protocol_folds(protocol, subjects, datasets, y, k=3, seed=seed)
    held = subjects if protocol != "cross-dataset" else datasets
    held = np.asarray(held)
    tested = np.concatenate([f.test_idx for f in folds])
    # every sample is tested exactly once
    assert sorted(tested.tolist()) == list(range(len(y)))
    for f in folds:
        assert not set(held[f.train_idx]) & set(held[f.test_idx])
        assert len(f.train_idx) + len(f.test_idx) == len(y)


def test_corpus_folds_name_the_corpus():
    folds = corpus_folds(["casme2", "samm", "casme2", "smic"])
    assert [f.test_subject for f in folds] == ["casme2", "samm", "smic"]
    assert folds[0].test_idx.tolist() == [0, 2]


def test_protocol_errors():
    with pytest.raises(MekitError, match="at least 2 corpora"):
        corpus_folds(["a", "a"])
    with pytest.raises(MekitError, match="k-fold needs"):
        kfold_folds(["a", "b"], [0, 1], k=3, seed=0)
    with pytest.raises(MekitError, match="unknown protocol"):
        protocol_folds("holdout", ["a", "b"], ["d", "d"], [0, 1])
