"""The classical baseline: LBP-TOP histograms + a linear SVM, as a scikit-learn estimator,
evaluated with the same LOSO folds, predictions table and reports as the networks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from mekit.train.loop import TrainConfig
from mekit.train.splits import Fold

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

    def fit(
        self, X: np.ndarray, y: np.ndarray, groups: Any = None, eval_set: Any = None
    ) -> LbpTopSVM:
        """Fit on (N, D) histograms; `groups`/`eval_set` (the fold runner's contract) unused."""
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


@dataclass(frozen=True)
class SVMTrainer:
    """The fold runner's trainer for `LbpTopSVM`: a fresh SVM per fold (deterministic, so any
    executor gives the same predictions). `config` only names the run's settings in reports."""

    config: TrainConfig
    model_name: str = "lbptop_svm"
    peeks_at_test = False

    def estimator(self, fold: Fold) -> LbpTopSVM:
        return LbpTopSVM()

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_name, "params": LbpTopSVM().get_params()}
