"""Spotting metrics with the MEGC definitions, computed exactly.

Intervals are inclusive frame ranges: `Interval(onset=10, offset=19)` covers the 10 frames
10, 11, ..., 19. All counts below are in frames.

- IoU(A, B) = |A ∩ B| / |A ∪ B| (frames in both / frames in either).
- A predicted interval is a true positive when it is matched to a ground-truth interval of the
  same video (and, by default, the same kind) with IoU >= `threshold` (0.5 in MEGC). The
  matching is one-to-one: a truth is matched at most once and a prediction at most once. Among
  all such matchings the one with the most pairs is taken (an optimal assignment, not a
  greedy one; ties are broken by the larger total IoU). Unmatched predictions are false
  positives, unmatched truths false negatives.
- TP, FP and FN are summed over the whole corpus first, then
  precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN).
  Averaging per-video scores gives a different number, which is not the MEGC one.
- Zero denominators: precision is 0.0 when there are no predictions, recall 0.0 when there is
  no truth, F1 0.0 whenever TP = 0 (including nothing predicted and nothing to find). Use
  `n_pred` / `n_truth` of the scores to tell those cases apart.
- Micro and macro expressions are scored separately (predictions of one kind are matched only
  to truths of the same kind); "overall" is the sum of the per-kind counts, as in MEGC.
  `ignore_kind=True` instead matches every prediction with every truth regardless of kind.
- Apex error: |predicted apex - true apex| in frames, over matched pairs (or over annotated
  clips, for apex spotting inside an onset..offset clip).
- Spot-then-recognise (MEGC 2023 STR): spotting F1 x recognition F1, where recognition F1 is
  the UF1 (mean per-class F1 over the classes present in the truth,
  `mekit.train.metrics.classification_metrics`) of the emotion predicted for each TRUE
  POSITIVE interval against the emotion of the truth it matched. Missed and spurious intervals
  are already paid for in the spotting F1 and do not enter the recognition F1.

These definitions fix two errors found in a public MEGC scorer: recall computed with the
precision's denominator, and one prediction counted as a hit for several truths.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from numbers import Integral, Real
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from mekit.data.schema import Event
from mekit.errors import MekitError

KINDS = ("micro", "macro")


@dataclass(frozen=True)
class Interval:
    """A spotted or annotated expression interval of one video, bounds inclusive (frames).

    `kind` is "micro" or "macro" (any non-empty string is accepted and scored as its own kind);
    `apex` is None where unknown and otherwise lies in onset..offset; `score` is the spotter's
    confidence (not used by the MEGC metrics); `video` names the recording (optional: the keys of
    the per-video mappings are what the metrics use; when both are set they must agree);
    `emotion` is the predicted or annotated emotion label ("" when there is none), used only by
    the spot-then-recognise score; `during` says what else was going on ("speech": the person
    was speaking; "" otherwise), not used by the metrics.
    """

    onset: int
    offset: int
    kind: str = "micro"
    apex: int | None = None
    score: float = 1.0
    video: str = ""
    emotion: str = ""
    during: str = ""

    def __post_init__(self) -> None:
        for name in ("onset", "offset", "apex"):
            value = getattr(self, name)
            if value is None and name == "apex":
                continue
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise MekitError(
                    f"interval {name} must be an integer frame index, got {value!r}"
                    " (round the spotter's frame positions first)"
                )
            object.__setattr__(self, name, int(value))
        if self.offset < self.onset:
            raise MekitError(f"interval offset {self.offset} is before its onset {self.onset}")
        if self.apex is not None and not self.onset <= self.apex <= self.offset:
            raise MekitError(
                f"interval apex {self.apex} lies outside its onset..offset "
                f"{self.onset}..{self.offset}"
            )
        if not isinstance(self.kind, str) or not self.kind:
            raise MekitError(f"interval kind must be a non-empty string, got {self.kind!r}")
        if isinstance(self.score, bool) or not isinstance(self.score, Real):
            raise MekitError(f"interval score must be a number, got {self.score!r}")
        object.__setattr__(self, "score", float(self.score))

    @property
    def length(self) -> int:
        """Number of frames covered (offset - onset + 1)."""
        return self.offset - self.onset + 1

    @classmethod
    def from_event(cls, event: Event, video: str = "") -> Interval:
        """The ground-truth interval of an annotated `Event` of a long video."""
        return cls(
            onset=event.onset,
            offset=event.offset,
            kind=event.kind,
            apex=event.apex,
            video=video,
            emotion=event.emotion,
        )


def _bounds(x: Interval | tuple[int, int]) -> tuple[int, int]:
    if isinstance(x, Interval):
        return x.onset, x.offset
    onset, offset = x
    if offset < onset:
        raise MekitError(f"interval offset {offset} is before its onset {onset}")
    return int(onset), int(offset)


def iou(a: Interval | tuple[int, int], b: Interval | tuple[int, int]) -> float:
    """|A ∩ B| / |A ∪ B| in frames, bounds inclusive; 0.0 when they do not overlap.

    Accepts `Interval`s or (onset, offset) pairs.
    """
    (a0, a1), (b0, b1) = _bounds(a), _bounds(b)
    inter = min(a1, b1) - max(a0, b0) + 1
    if inter <= 0:
        return 0.0
    union = (a1 - a0 + 1) + (b1 - b0 + 1) - inter
    return inter / union


@dataclass(frozen=True)
class Matching:
    """The one-to-one matching of one video's predictions with its truths.

    `pairs[i]` is (predicted, truth) with IoU `ious[i]` >= the threshold, ordered by the truth's
    onset; `unmatched_pred` (false positives) and `unmatched_truth` (false negatives) keep the
    order they were given in.
    """

    pairs: tuple[tuple[Interval, Interval], ...]
    ious: tuple[float, ...]
    unmatched_pred: tuple[Interval, ...]
    unmatched_truth: tuple[Interval, ...]

    @property
    def tp(self) -> int:
        return len(self.pairs)

    @property
    def fp(self) -> int:
        return len(self.unmatched_pred)

    @property
    def fn(self) -> int:
        return len(self.unmatched_truth)


def _check_threshold(threshold: float) -> Fraction:
    if isinstance(threshold, bool) or not isinstance(threshold, Real):
        raise MekitError(f"IoU threshold must be a number, got {threshold!r}")
    if not 0 < threshold <= 1:
        raise MekitError(f"IoU threshold must be in (0, 1], got {threshold}")
    # The exact value of the float (0.5 stays 1/2); compared with integers below, so a pair at
    # exactly the threshold (e.g. 5 frames shared of 10) always counts.
    return Fraction(threshold)


def match_intervals(
    predicted: Sequence[Interval], truth: Sequence[Interval], threshold: float = 0.5
) -> Matching:
    """Match one video's predictions with its truths, one to one, IoU >= `threshold`.

    Maximises the number of matched pairs (an optimal assignment: a greedy matching by highest
    IoU can lose pairs, e.g. when the prediction that fits a truth best is also the only one
    that fits another); among matchings of that size it takes one with the largest total IoU.
    Kinds are not looked at here: `spotting_scores` splits by kind before matching.
    """
    frac = _check_threshold(threshold)
    predicted, truth = list(predicted), list(truth)
    if not predicted or not truth:
        return Matching((), (), tuple(predicted), tuple(truth))

    p = np.array([_bounds(x) for x in predicted], dtype=np.int64)
    t = np.array([_bounds(x) for x in truth], dtype=np.int64)
    inter = np.minimum(p[:, None, 1], t[None, :, 1]) - np.maximum(p[:, None, 0], t[None, :, 0]) + 1
    inter = np.maximum(inter, 0)
    union = (p[:, None, 1] - p[:, None, 0] + 1) + (t[None, :, 1] - t[None, :, 0] + 1) - inter
    # inter / union >= num / den, in integers (exact).
    feasible = (inter > 0) & (inter * frac.denominator >= union * frac.numerator)

    rows = np.flatnonzero(feasible.any(axis=1))
    cols = np.flatnonzero(feasible.any(axis=0))
    matched: list[tuple[int, int]] = []
    if rows.size:
        sub = feasible[np.ix_(rows, cols)]
        ious = inter[np.ix_(rows, cols)] / union[np.ix_(rows, cols)]
        # Each feasible pair weighs K + IoU with K larger than any total IoU a matching can
        # reach, so the most pairs win first and the total IoU only breaks ties.
        big = float(min(sub.shape) + 1)
        weight = np.where(sub, big + ious, 0.0)
        r, c = linear_sum_assignment(weight, maximize=True)
        matched = [(int(rows[i]), int(cols[j])) for i, j in zip(r, c, strict=True) if sub[i, j]]

    matched.sort(key=lambda ij: (truth[ij[1]].onset, truth[ij[1]].offset, ij[1]))
    used_p = {i for i, _ in matched}
    used_t = {j for _, j in matched}
    return Matching(
        pairs=tuple((predicted[i], truth[j]) for i, j in matched),
        ious=tuple(float(inter[i, j] / union[i, j]) for i, j in matched),
        unmatched_pred=tuple(x for i, x in enumerate(predicted) if i not in used_p),
        unmatched_truth=tuple(x for j, x in enumerate(truth) if j not in used_t),
    )


@dataclass(frozen=True)
class SpotScores:
    """Corpus-level spotting counts and scores (see the module docstring for the conventions)."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float

    @property
    def n_pred(self) -> int:
        """Predicted intervals scored (TP + FP)."""
        return self.tp + self.fp

    @property
    def n_truth(self) -> int:
        """Ground-truth intervals scored (TP + FN)."""
        return self.tp + self.fn

    @classmethod
    def from_counts(cls, tp: int, fp: int, fn: int) -> SpotScores:
        """Precision TP/(TP+FP), recall TP/(TP+FN), F1 2TP/(2TP+FP+FN); 0.0 where 0/0."""
        if min(tp, fp, fn) < 0:
            raise MekitError(f"negative counts: tp={tp} fp={fp} fn={fn}")
        return cls(
            tp=tp,
            fp=fp,
            fn=fn,
            precision=tp / (tp + fp) if tp + fp else 0.0,
            recall=tp / (tp + fn) if tp + fn else 0.0,
            f1=2 * tp / (2 * tp + fp + fn) if tp else 0.0,
        )

    @classmethod
    def from_matchings(cls, matchings: Iterable[Matching]) -> SpotScores:
        """Scores of the counts summed over `matchings` (e.g. every video of a corpus)."""
        tp = fp = fn = 0
        for m in matchings:
            tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
        return cls.from_counts(tp, fp, fn)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields plus n_pred and n_truth."""
        return {**asdict(self), "n_pred": self.n_pred, "n_truth": self.n_truth}


def group_by_video(intervals: Iterable[Interval]) -> dict[str, list[Interval]]:
    """{video: its intervals} from intervals that carry their `video` name."""
    out: dict[str, list[Interval]] = {}
    for x in intervals:
        if not x.video:
            raise MekitError(f"interval {x.onset}..{x.offset} has no video name to group by")
        out.setdefault(x.video, []).append(x)
    return out


def _checked(by_video: Mapping[str, Sequence[Interval]], what: str) -> dict[str, list[Interval]]:
    out: dict[str, list[Interval]] = {}
    for video, intervals in by_video.items():
        items = list(intervals)
        for x in items:
            if not isinstance(x, Interval):
                raise MekitError(f"{what} of video {video!r}: expected an Interval, got {x!r}")
            if x.video and x.video != video:
                raise MekitError(
                    f"{what} {x.onset}..{x.offset} names video {x.video!r} but is listed"
                    f" under {video!r}"
                )
        out[str(video)] = items
    return out


def match_corpus(
    predicted_by_video: Mapping[str, Sequence[Interval]],
    truth_by_video: Mapping[str, Sequence[Interval]],
    threshold: float = 0.5,
    kind: str | None = None,
    ignore_kind: bool = False,
) -> dict[tuple[str, str], Matching]:
    """The matching of every video (and kind), keyed by (video, kind).

    `truth_by_video` must list every scored video, with an empty list for a video without
    events; a video there but absent from `predicted_by_video` has no predictions (all its
    truths are missed). A predicted video that the truth does not list is an error (most often
    a misspelt name, which would otherwise count silently as misses and false alarms).

    `kind` keeps only the intervals of that kind (both sides). With `kind=None` each kind is
    matched separately, unless `ignore_kind` is set: then all intervals of a video are matched
    together and the key's kind is "all".
    """
    _check_threshold(threshold)
    preds = _checked(predicted_by_video, "prediction")
    truths = _checked(truth_by_video, "truth")
    unknown = sorted(set(preds) - set(truths))
    if unknown:
        shown = ", ".join(repr(v) for v in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise MekitError(
            f"{len(unknown)} predicted video(s) are not in the ground truth: {shown}"
            " (list videos without events in the truth with an empty list)"
        )
    out: dict[tuple[str, str], Matching] = {}
    for video, tr in truths.items():
        pr = preds.get(video, [])
        if kind is not None:
            pr = [x for x in pr if x.kind == kind]
            tr = [x for x in tr if x.kind == kind]
        if ignore_kind and kind is None:
            out[(video, "all")] = match_intervals(pr, tr, threshold)
            continue
        kinds = sorted({x.kind for x in pr} | {x.kind for x in tr}) if kind is None else [kind]
        for k in kinds:
            out[(video, k)] = match_intervals(
                [x for x in pr if x.kind == k], [x for x in tr if x.kind == k], threshold
            )
    return out


def spotting_scores(
    predicted_by_video: Mapping[str, Sequence[Interval]],
    truth_by_video: Mapping[str, Sequence[Interval]],
    threshold: float = 0.5,
    kind: str | None = None,
    ignore_kind: bool = False,
) -> SpotScores:
    """MEGC spotting scores over a corpus: TP/FP/FN summed over every video, then P/R/F1.

    `kind="micro"` or `"macro"` scores that kind alone; `kind=None` gives the overall score
    (the per-kind counts summed; with `ignore_kind=True`, a matching that ignores kinds).
    See `match_corpus` for what the two mappings must hold.
    """
    return SpotScores.from_matchings(
        match_corpus(predicted_by_video, truth_by_video, threshold, kind, ignore_kind).values()
    )


def spotting_report(
    predicted_by_video: Mapping[str, Sequence[Interval]],
    truth_by_video: Mapping[str, Sequence[Interval]],
    threshold: float = 0.5,
) -> dict[str, SpotScores]:
    """{"micro": ..., "macro": ..., other kinds if any ..., "overall": ...}: each kind matched
    separately, "overall" = their counts summed (MEGC)."""
    matchings = match_corpus(predicted_by_video, truth_by_video, threshold)
    kinds = list(KINDS) + sorted({k for _, k in matchings} - set(KINDS))
    report = {
        k: SpotScores.from_matchings(m for (_, kk), m in matchings.items() if kk == k)
        for k in kinds
    }
    report["overall"] = SpotScores.from_matchings(matchings.values())
    return report


def apex_error(predicted_apex: int, true_apex: int) -> int:
    """|predicted_apex - true_apex| in frames."""
    for name, v in (("predicted", predicted_apex), ("true", true_apex)):
        if isinstance(v, bool) or not isinstance(v, Integral):
            raise MekitError(f"{name} apex must be an integer frame index, got {v!r}")
    return abs(int(predicted_apex) - int(true_apex))


@dataclass(frozen=True)
class ApexSummary:
    """Absolute apex errors (frames) over a corpus. `n` pairs scored, `skipped` pairs without an
    apex on one side; mean/median/max are None when n = 0."""

    n: int
    skipped: int
    mean: float | None
    median: float | None
    max: int | None
    errors: tuple[int, ...]

    def within(self, frames: int) -> float:
        """Fraction of the scored pairs with error <= `frames` (0.0 when none were scored)."""
        return sum(e <= frames for e in self.errors) / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields but the errors."""
        return {k: v for k, v in asdict(self).items() if k != "errors"}


def _apex_of(x: Interval | int | None) -> int | None:
    return x.apex if isinstance(x, Interval) else x


def apex_summary(
    pairs: Iterable[tuple[Interval | int | None, Interval | int | None]],
) -> ApexSummary:
    """Mean, median and max absolute apex error over (predicted, true) pairs.

    Each side is an `Interval` (its apex is used: pass `Matching.pairs` of matched intervals) or
    a frame index (apex spotting inside an annotated clip); pairs where either apex is None are
    skipped and counted in `skipped`.
    """
    errors: list[int] = []
    skipped = 0
    for pred, true in pairs:
        pa, ta = _apex_of(pred), _apex_of(true)
        if pa is None or ta is None:
            skipped += 1
            continue
        errors.append(apex_error(pa, ta))
    if not errors:
        return ApexSummary(0, skipped, None, None, None, ())
    return ApexSummary(
        n=len(errors),
        skipped=skipped,
        mean=float(statistics.fmean(errors)),
        median=float(statistics.median(errors)),
        max=max(errors),
        errors=tuple(errors),
    )


def recognition_f1(
    pairs: Iterable[tuple[Interval, Interval]], labels: Sequence[str] | None = None
) -> float:
    """UF1 of the emotions of the true-positive intervals: for each matched (predicted, truth)
    pair, the predicted interval's `emotion` against the truth's.

    `labels` are the emotion classes (default: every label seen on either side, sorted); UF1
    averages the per-class F1 over the classes present among the matched truths. Returns 0.0
    when there are no pairs (nothing spotted, nothing recognised). Every interval of a pair must
    carry an emotion.
    """
    from mekit.train.metrics import classification_metrics

    y_true, y_pred = [], []
    for pred, true in pairs:
        for side, x in (("predicted", pred), ("true", true)):
            if not x.emotion:
                raise MekitError(
                    f"{side} interval {x.onset}..{x.offset}"
                    f"{' of ' + repr(x.video) if x.video else ''} has no emotion label"
                )
        y_pred.append(pred.emotion)
        y_true.append(true.emotion)
    if not y_true:
        return 0.0
    if labels is None:
        labels = sorted(set(y_true) | set(y_pred))
    return classification_metrics(y_true, y_pred, labels).uf1


def spot_then_recognise(spot_f1: float, recognition_f1: float) -> float:
    """The MEGC spot-then-recognise score: spotting F1 x recognition F1 (both in [0, 1])."""
    for name, v in (("spotting F1", spot_f1), ("recognition F1", recognition_f1)):
        if isinstance(v, bool) or not isinstance(v, Real) or math.isnan(v) or not 0 <= v <= 1:
            raise MekitError(f"{name} must be a number in [0, 1], got {v!r}")
    return float(spot_f1) * float(recognition_f1)
