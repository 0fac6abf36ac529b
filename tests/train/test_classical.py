import numpy as np
from sklearn.base import clone

from mekit.train import TrainConfig
from mekit.train.classical import LbpTopSVM, SVMTrainer
from mekit.train.loso import cross_validate


def blobs(n_per_class=12, n_subjects=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (3, 20))
    X, y, subjects = [], [], []
    for c in range(3):
        for i in range(n_per_class):
            X.append(centres[c] + rng.normal(0, 1, 20))
            y.append(c)
            subjects.append(f"s{i % n_subjects}")
    return np.array(X, np.float32), np.array(y), subjects


def test_svm_is_a_proper_sklearn_estimator():
    X, y, _ = blobs()
    model = LbpTopSVM(C=0.5)
    assert clone(model).get_params()["C"] == 0.5  # __init__ only stores parameters
    assert model.fit(X, y) is model and (model.predict(X) == y).mean() > 0.95
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(1), 1.0)


def test_loso_classical_predicts_every_sample_from_its_held_out_fold():
    X, y, subjects = blobs()
    ids = [f"id{i}" for i in range(len(y))]
    svm = SVMTrainer(TrainConfig())
    result = cross_validate(X, y, subjects, ids, ["a", "b", "c"], svm, progress=False)
    preds = result.predictions
    assert list(preds["id"]) == ids and set(preds["fold"]) == {0, 1, 2, 3}
    assert result.metrics().uf1 > 0.9
    # a class missing from one fold's training subjects still gets a probability column
    y2 = y.copy()
    y2[(y == 2) & (np.array(subjects) != "s0")] = 1
    result2 = cross_validate(X, y2, subjects, ids, ["a", "b", "c"], svm, progress=False)
    assert result2.predictions.loc[np.array(subjects) == "s0", "prob_c"].eq(0).all()
