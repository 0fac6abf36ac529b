"""Recognition metrics with the MEGC definitions, over one set of predictions.

Pass the predictions of ALL LOSO folds concatenated: UF1 and UAR averaged per fold give a
different (lower, and not comparable) number.

- per-class F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)
- UF1 = mean of F1_c over the classes present in `y_true`
- UAR = mean of TP_c / N_c over the classes present in `y_true` (N_c = true samples of c)

A class in the truth but never predicted has F1 0 and recall 0. A class absent from the truth
is listed in `per_class` (support 0) but does not enter UF1 or UAR. Undefined ratios (0 / 0)
are reported as 0.0.

Action units (multi-label): `parse_au_code` / `parse_aus` read FACS code strings ("4+L10"),
`au_metrics` gives per-AU F1 and their macro mean for any samples that carry `aus`.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
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


# --- Action units (multi-label) -------------------------------------------------------------

# [side] number [intensity], maybe in parentheses (a doubtful AU): sides L, R; B, U and A
# (SAMM's asymmetric, side not given) count as both.
_AU_TOKEN = re.compile(r"^\(?(?:AU)?\s*([LRBUA]?)\s*(\d+)\s*([A-E]?)\)?$", re.IGNORECASE)


def parse_au_code(code: str | None) -> dict[int, str]:
    """AU number -> side ("L", "R" or "" for both) of a FACS code string.

    CASME II, SAMM and CAS(ME)^3 sheets write AUs joined by "+" (or ","), with an optional side
    prefix and intensity suffix: "4+L10" -> {4: "", 10: "L"}, "R12" -> {12: "R"},
    "AU1+AU2" -> {1: "", 2: ""}, "12B" -> {12: ""}, SAMM's "A1" and "(R14)" -> {1: ""},
    {14: "R"}. Blank, "-", "?", "none" give {}. A token
    that is not an AU raises `MekitError`. An AU given on both sides separately is both ("").
    """
    if code is None:
        return {}
    text = str(code).strip()
    if text.lower() in ("", "-", "?", "none", "nan", "n/a"):
        return {}
    out: dict[int, str] = {}
    for token in re.split(r"[+,;/\s]+", text):
        if not token:
            continue
        match = _AU_TOKEN.match(token)
        if match is None:
            raise MekitError(f"'{token}' in AU code '{text}' is not an action unit (e.g. 4, L12)")
        side = match.group(1).upper()
        side = "" if side in ("A", "B", "U") else side
        au = int(match.group(2))
        if au in out and out[au] != side:
            side = ""
        out[au] = side
    return out


def parse_aus(code: str | None) -> frozenset[int]:
    """The AU numbers of a FACS code string, sides dropped: "4+L10" -> {4, 10}."""
    return frozenset(parse_au_code(code))


@dataclass(frozen=True)
class AUMetrics:
    """Per-AU F1 / precision / recall / support over a set of samples, and their macro F1.

    `macro_f1` averages F1 over `aus` that have at least one true sample (support > 0).
    """

    aus: tuple[int, ...]
    per_au: dict[int, dict[str, float]]
    macro_f1: float
    n: int

    def macro_over(self, aus: Sequence[int]) -> float:
        """Mean F1 over `aus` (each must be among `self.aus`)."""
        missing = [a for a in aus if a not in self.per_au]
        if missing:
            raise MekitError(f"AUs {missing} were not scored; scored: {list(self.aus)}")
        return float(np.mean([self.per_au[a]["f1"] for a in aus])) if aus else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "aus": list(self.aus),
            "per_au": {str(a): dict(v) for a, v in self.per_au.items()},
            "macro_f1": self.macro_f1,
            "n": self.n,
        }


def present_aus(
    scores: Iterable[Sequence[float]], aus: Sequence[int], threshold: float = 0.5
) -> list[frozenset[int]]:
    """Per sample, the AUs of `aus` whose score (probability, or 0/1 label) is at least
    `threshold`; `scores` holds one row per sample, one column per AU in `aus` order."""
    return [frozenset(a for a, s in zip(aus, row, strict=True) if s >= threshold) for row in scores]


def _au_set(value: str | Iterable[int] | None) -> frozenset[int]:
    if value is None or isinstance(value, str):
        return parse_aus(value)
    return frozenset(int(a) for a in value)


def au_metrics(
    y_true: Sequence[str | Iterable[int] | None],
    y_pred: Sequence[str | Iterable[int] | None],
    aus: Sequence[int] | None = None,
) -> AUMetrics:
    """Per-AU F1 and macro F1 of multi-label AU predictions, one set (or code string) per sample.

    F1_a = 2 TP_a / (2 TP_a + FP_a + FN_a) over the samples; `aus` fixes which AUs are scored
    (default: every AU in the truth). AUs outside `aus` are ignored in both truth and
    prediction. Undefined ratios are 0.0.
    """
    truth = [_au_set(t) for t in y_true]
    pred = [_au_set(p) for p in y_pred]
    if len(truth) != len(pred):
        raise MekitError(f"{len(truth)} true AU sets but {len(pred)} predictions")
    if not truth:
        raise MekitError("no AU predictions to score")
    scored = tuple(sorted(set(aus) if aus is not None else set().union(*truth)))
    per_au: dict[int, dict[str, float]] = {}
    for a in scored:
        tp = sum(a in t and a in p for t, p in zip(truth, pred, strict=True))
        fp = sum(a not in t and a in p for t, p in zip(truth, pred, strict=True))
        fn = sum(a in t and a not in p for t, p in zip(truth, pred, strict=True))
        per_au[a] = {
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "support": int(tp + fn),
        }
    present = [a for a in scored if per_au[a]["support"] > 0]
    macro = float(np.mean([per_au[a]["f1"] for a in present])) if present else 0.0
    return AUMetrics(aus=scored, per_au=per_au, macro_f1=macro, n=len(truth))
