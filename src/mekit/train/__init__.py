"""Training and leak-free LOSO evaluation: splits, loop, losses, metrics, reports.

The package is also callable: `mekit.train(corpus, ...)` is `mekit.api.train(corpus, ...)`.
"""

import sys

from mekit import ApiPackage
from mekit.train.loop import FitResult, TrainConfig, fit, predict_proba
from mekit.train.loso import LosoResult, run_loso
from mekit.train.metrics import ClassificationMetrics, classification_metrics
from mekit.train.report import ReportPaths, write_report
from mekit.train.splits import Fold, loso_folds, validation_subjects

__all__ = [
    "ClassificationMetrics",
    "FitResult",
    "Fold",
    "LosoResult",
    "ReportPaths",
    "TrainConfig",
    "classification_metrics",
    "fit",
    "loso_folds",
    "predict_proba",
    "run_loso",
    "validation_subjects",
    "write_report",
]

sys.modules[__name__].__class__ = ApiPackage  # mekit.train(...) runs mekit.api.train
