"""The classical baseline: LBP-TOP histograms + a linear SVM, as a scikit-learn estimator,
evaluated with the same LOSO folds, predictions table and reports as the networks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from tqdm import tqdm

from mekit.train.loop import TrainConfig
from mekit.train.loso import LosoResult, _assemble, _FoldOutput
from mekit.train.splits import Fold, loso_folds

CLASSICAL_MODELS = ("lbptop_svm",)


class LbpTopSVM(ClassifierMixin, BaseEstimator):
    """Linear SVM on standardised LBP-TOP histograms (N, D).

    `predict_proba` is a softmax of the SVM's decision values: a ranking, not a calibrated
    probability.
    """

    def __init__(
        self, C: float = 1.0, class_weight: str | None = "balanced", max_iter: int = 20000
    ):
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: np.ndarray) -> LbpTopSVM:
        svm = LinearSVC(
            C=self.C, class_weight=self.class_weight, max_iter=self.max_iter, random_state=0
        )
        self.pipeline_ = make_pipeline(StandardScaler(), svm).fit(X, y)
        self.classes_ = self.pipeline_.classes_
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        scores = self.pipeline_.decision_function(X)
        return np.stack([-scores, scores], axis=1) if scores.ndim == 1 else scores

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        scores = self.decision_function(X)
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(axis=1)]


def run_loso_classical(
    X: np.ndarray,
    y: np.ndarray,
    subjects: Sequence[str],
    ids: Sequence[str],
    labels: Sequence[str],
    config: TrainConfig,
    progress: bool = True,
    folds: Sequence[Fold] | None = None,
) -> LosoResult:
    """Cross-validation with `LbpTopSVM` (LOSO unless `folds` are given): one fit per fold on
    its training samples only."""
    subjects_arr = np.asarray(subjects)
    folds = list(folds) if folds is not None else loso_folds(subjects)
    outputs = []
    for fold in tqdm(folds, desc="LOSO lbptop_svm", unit="fold", disable=not progress):
        model = LbpTopSVM().fit(X[fold.train_idx], y[fold.train_idx])
        probs = np.zeros((len(fold.test_idx), len(labels)), np.float32)
        probs[:, model.classes_] = model.predict_proba(X[fold.test_idx])
        outputs.append(_FoldOutput(fold.index, fold.test_subject, probs, [], 0))
    return _assemble(outputs, folds, y, subjects_arr, ids, labels, "lbptop_svm", config)
