from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from mekit.errors import MekitError
from mekit.train import TrainConfig, run_loso

LABELS = ["neg", "pos"]
TINY = TrainConfig(epochs=3, batch_size=4, lr=1e-2)


def test_sequential_and_parallel_runs_are_identical(toy_flow):
    X, y, subjects, ids = toy_flow(3, 4)
    seq = run_loso(X, y, subjects, ids, LABELS, "ststnet", TINY, workers=1, progress=False)
    par = run_loso(X, y, subjects, ids, LABELS, "ststnet", TINY, workers=2, progress=False)
    pd.testing.assert_frame_equal(seq.predictions, par.predictions)
    assert seq.histories == par.histories
    # folds differ in seed (seed + fold index), so their first-epoch losses differ
    first = [h[0]["train_loss"] for h in seq.histories.values()]
    assert len(set(first)) == 3


def test_predictions_are_joined_by_id(toy_flow):
    X, y, subjects, ids = toy_flow(3, 4)
    result = run_loso(X, y, subjects, ids, LABELS, "ststnet", TINY, progress=False)
    p = result.predictions
    assert list(p.columns) == ["id", "subject", "fold", "true", "pred", "prob_neg", "prob_pos"]
    assert p["id"].tolist() == ids and p["subject"].tolist() == subjects
    assert p["true"].tolist() == [LABELS[i] for i in y]
    fold_of_subject = {s: i for i, s in enumerate(sorted(set(subjects)))}
    assert p["fold"].tolist() == [fold_of_subject[s] for s in subjects]
    assert np.allclose(p[["prob_neg", "prob_pos"]].sum(axis=1), 1.0, atol=1e-5)
    assert (p["pred"] == np.where(p["prob_pos"] > p["prob_neg"], "pos", "neg")).all()
    assert set(result.histories) == set(subjects) and not result.oracle
    assert all(len(h) == 3 for h in result.histories.values())


def test_learns_toy_problem(toy_flow):
    # Class = sign of mean u in a central patch. A horizontal flip negates u and so the class:
    # flip augmentation must be off for this problem.
    X, y, subjects, ids = toy_flow(3, 12)
    cfg = TrainConfig(epochs=15, batch_size=8, lr=1e-2, augment_flip=False)
    result = run_loso(X, y, subjects, ids, LABELS, "ststnet", cfg, progress=False)
    assert result.metrics().accuracy >= 0.9
    assert result.metrics().uf1 >= 0.9


def test_val_split_and_oracle(toy_flow):
    X, y, subjects, ids = toy_flow(3, 4)
    val = run_loso(
        X,
        y,
        subjects,
        ids,
        LABELS,
        "ststnet",
        dataclasses.replace(TINY, selection="val-split"),
        progress=False,
    )
    assert not val.oracle
    assert all("val_loss" in h[0] for h in val.histories.values())
    oracle = run_loso(
        X,
        y,
        subjects,
        ids,
        LABELS,
        "ststnet",
        dataclasses.replace(TINY, selection="test-oracle"),
        progress=False,
    )
    assert oracle.oracle
    for subject, history in oracle.histories.items():
        accs = [h["val_acc"] for h in history]  # accuracy on the test subject itself
        assert oracle.best_epochs[subject] == int(np.argmax(accs)) + 1
        rows = oracle.predictions[oracle.predictions["subject"] == subject]
        assert (rows["true"] == rows["pred"]).mean() == pytest.approx(max(accs))


def test_val_split_needs_two_training_subjects(toy_flow):
    X, y, subjects, ids = toy_flow(2, 4)
    with pytest.raises(MekitError, match="selection='fixed'"):
        run_loso(
            X,
            y,
            subjects,
            ids,
            LABELS,
            "ststnet",
            dataclasses.replace(TINY, selection="val-split"),
            progress=False,
        )


def test_input_errors(toy_flow):
    X, y, subjects, ids = toy_flow(2, 2)
    with pytest.raises(MekitError, match="unique"):
        run_loso(X, y, subjects, ["a"] * 4, LABELS, "ststnet", TINY, progress=False)
    with pytest.raises(MekitError, match="one entry per sample"):
        run_loso(X, y, subjects[:-1], ids, LABELS, "ststnet", TINY, progress=False)
    with pytest.raises(MekitError, match="class indices"):
        run_loso(X, y + 1, subjects, ids, LABELS, "ststnet", TINY, progress=False)
    with pytest.raises(MekitError, match="known models"):
        run_loso(X, y, subjects, ids, LABELS, "nonet", TINY, progress=False)
