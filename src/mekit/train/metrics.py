"""Recognition metrics with the MEGC definitions, over one set of predictions.

Pass the predictions of ALL LOSO folds concatenated: UF1 and UAR averaged per fold give a
different (lower, and not comparable) number.

- per-class F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)
- UF1 = mean of F1_c over the classes present in `y_true`
- UAR = mean of TP_c / N_c over the classes present in `y_true` (N_c = true samples of c)

A class in the truth but never predicted has F1 0 and recall 0. A class absent from the truth
is listed in `per_class` (support 0) but does not enter UF1 or UAR. Undefined ratios (0 / 0)
are reported as 0.0.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mekit.errors import MekitError


@dataclass(frozen=True)
class ClassificationMetrics:
    """Metrics of one prediction set. `confusion[i][j]` = samples of `labels[i]` predicted
    as `labels[j]` (rows true, columns predicted)."""

    labels: tuple[str, ...]
    accuracy: float
    uf1: float
    uar: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    n: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the same keys as the fields."""
        return {
            "labels": list(self.labels),
            "accuracy": self.accuracy,
            "uf1": self.uf1,
            "uar": self.uar,
            "per_class": {k: dict(v) for k, v in self.per_class.items()},
            "confusion": [list(r) for r in self.confusion],
            "n": self.n,
        }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def classification_metrics(
    y_true: Sequence[Hashable], y_pred: Sequence[Hashable], labels: Sequence[Hashable]
) -> ClassificationMetrics:
    """Accuracy, UF1, UAR, per-class F1/recall/precision/support and the confusion matrix.

    `y_true` and `y_pred` hold label values (e.g. "negative") from `labels`, one per sample;
    `labels` fixes the class order of `per_class` and `confusion`.
    """
    y_true, y_pred = list(y_true), list(y_pred)
    labels = list(labels)
    if len(y_true) != len(y_pred):
        raise MekitError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not y_true:
        raise MekitError("no predictions to score")
    if len(set(labels)) != len(labels):
        raise MekitError(f"labels contain duplicates: {labels}")
    index = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted({str(v) for v in [*y_true, *y_pred] if v not in index})
    if unknown:
        raise MekitError(f"labels {unknown} are not among the classes {labels}")

    k = len(labels)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, ([index[t] for t in y_true], [index[p] for p in y_pred]), 1)
    tp = np.diag(confusion)
    support = confusion.sum(axis=1)  # true samples per class
    predicted = confusion.sum(axis=0)
    fp, fn = predicted - tp, support - tp

    per_class: dict[str, dict[str, float]] = {}
    for i, lab in enumerate(labels):
        per_class[str(lab)] = {
            "f1": _ratio(2 * tp[i], 2 * tp[i] + fp[i] + fn[i]),
            "recall": _ratio(tp[i], support[i]),
            "precision": _ratio(tp[i], predicted[i]),
            "support": int(support[i]),
        }
    present = [str(lab) for i, lab in enumerate(labels) if support[i] > 0]
    n = int(confusion.sum())
    return ClassificationMetrics(
        labels=tuple(str(lab) for lab in labels),
        accuracy=float(tp.sum() / n),
        uf1=float(np.mean([per_class[c]["f1"] for c in present])),
        uar=float(np.mean([per_class[c]["recall"] for c in present])),
        per_class=per_class,
        confusion=confusion.tolist(),
        n=n,
    )
