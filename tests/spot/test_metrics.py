"""MEGC spotting metrics on hand-made interval sets, every figure computed by hand."""

from __future__ import annotations

import pytest

from mekit.data.schema import Event
from mekit.errors import MekitError
from mekit.spot.metrics import (
    Interval,
    SpotScores,
    apex_error,
    apex_summary,
    group_by_video,
    iou,
    match_corpus,
    match_intervals,
    recognition_f1,
    spot_then_recognise,
    spotting_report,
    spotting_scores,
)


def iv(onset, offset, kind="micro", **kw):
    return Interval(onset, offset, kind, **kw)


# --- IoU -------------------------------------------------------------------------------------


def test_iou_counts_frames_inclusively():
    assert iou(iv(0, 9), iv(0, 9)) == 1.0
    assert iou(iv(0, 9), iv(0, 4)) == 0.5  # 5 shared frames of 10
    assert iou(iv(0, 9), iv(5, 14)) == pytest.approx(5 / 15)
    assert iou(iv(3, 3), iv(3, 3)) == 1.0  # a one-frame interval is not empty
    assert iou(iv(0, 9), iv(9, 12)) == pytest.approx(1 / 13)  # touching at frame 9 shares it
    assert iou(iv(0, 9), iv(10, 19)) == 0.0
    assert iou((0, 9), (0, 4)) == 0.5  # plain (onset, offset) pairs work too


def test_iou_is_symmetric():
    a, b = iv(2, 17), iv(11, 30)
    assert iou(a, b) == iou(b, a) == pytest.approx(7 / 29)


# --- matching --------------------------------------------------------------------------------


def test_iou_exactly_half_is_a_match_and_just_below_is_not():
    truth = [iv(0, 4)]
    at = match_intervals([iv(0, 9)], truth)  # 5 / 10
    assert (at.tp, at.fp, at.fn) == (1, 0, 0)
    assert at.ious == (0.5,)
    below = match_intervals([iv(0, 10)], truth)  # 5 / 11
    assert (below.tp, below.fp, below.fn) == (0, 1, 1)


def test_exact_threshold_is_compared_exactly_for_other_thresholds():
    # 3 shared frames of 10: IoU 0.3 exactly; the float 0.3 must not reject it.
    m = match_intervals([iv(0, 9)], [iv(7, 9)], threshold=0.3)
    assert m.tp == 1
    assert match_intervals([iv(0, 9)], [iv(7, 9)], threshold=0.31).tp == 0


def test_one_prediction_overlapping_two_truths_counts_once():
    # [0, 19] has IoU exactly 0.5 with both halves; a scorer that matches one prediction to
    # several truths would report 2 TP.
    t1, t2 = iv(0, 9), iv(10, 19)
    m = match_intervals([iv(0, 19)], [t1, t2])
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    s = spotting_scores({"v": [iv(0, 19)]}, {"v": [t1, t2]})
    assert (s.tp, s.fp, s.fn) == (1, 0, 1)
    assert s.precision == 1.0 and s.recall == 0.5
    assert s.f1 == pytest.approx(2 / 3)


def test_two_predictions_on_one_truth_give_one_tp_and_one_fp():
    truth = [iv(10, 19)]
    better, worse = iv(10, 19), iv(11, 20)  # IoU 1.0 and 9/11
    m = match_intervals([worse, better], truth)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert m.pairs == ((better, truth[0]),)  # the tie on count is broken by the larger IoU
    assert m.unmatched_pred == (worse,)
    s = spotting_scores({"v": [worse, better]}, {"v": truth})
    assert (s.precision, s.recall) == (0.5, 1.0)
    assert s.f1 == pytest.approx(2 / 3)


def test_optimal_matching_beats_greedy_by_iou():
    t1, t2 = iv(0, 9), iv(4, 13)
    p1, p2 = iv(3, 11), iv(6, 15)
    # Hand-computed IoUs: p1-t1 7/12, p1-t2 8/11 (the best pair), p2-t2 8/12, p2-t1 4/16.
    assert iou(p1, t1) == pytest.approx(7 / 12)
    assert iou(p1, t2) == pytest.approx(8 / 11)
    assert iou(p2, t2) == pytest.approx(8 / 12)
    assert iou(p2, t1) == pytest.approx(4 / 16)
    # Greedy by highest IoU takes p1-t2 first, then p2 has nothing left above 0.5: 1 TP.
    # The optimal one-to-one matching finds 2 TP: p1-t1 and p2-t2. We do the optimal one.
    m = match_intervals([p1, p2], [t1, t2])
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert m.pairs == ((p1, t1), (p2, t2))
    assert m.ious == pytest.approx((7 / 12, 8 / 12))


def test_each_truth_and_each_prediction_used_at_most_once_in_a_crowd():
    truth = [iv(0, 9), iv(5, 14), iv(30, 39)]
    pred = [iv(0, 9), iv(1, 10), iv(4, 13), iv(5, 14), iv(6, 15), iv(100, 110)]
    m = match_intervals(pred, truth)
    assert m.tp == 2 and m.fp == 4 and m.fn == 1
    assert len({id(p) for p, _ in m.pairs}) == len({id(t) for _, t in m.pairs}) == 2
    assert all(x >= 0.5 for x in m.ious)
    assert m.tp + m.fp == len(pred) and m.tp + m.fn == len(truth)


def test_empty_sides_of_a_matching():
    m = match_intervals([], [iv(0, 9)])
    assert (m.tp, m.fp, m.fn) == (0, 0, 1)
    m = match_intervals([iv(0, 9)], [])
    assert (m.tp, m.fp, m.fn) == (0, 1, 0)
    m = match_intervals([], [])
    assert (m.tp, m.fp, m.fn) == (0, 0, 0)


def test_bad_threshold_is_refused():
    for bad in (0, -0.1, 1.5, True):
        with pytest.raises(MekitError):
            match_intervals([iv(0, 9)], [iv(0, 9)], threshold=bad)


# --- corpus scores ---------------------------------------------------------------------------


def test_empty_predictions_score_zero():
    s = spotting_scores({}, {"a": [iv(0, 9)], "b": [iv(5, 9), iv(50, 80, "macro")]})
    assert (s.tp, s.fp, s.fn) == (0, 0, 3)
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)
    s = spotting_scores({"a": []}, {"a": [iv(0, 9)]})
    assert (s.tp, s.fp, s.fn, s.precision, s.recall, s.f1) == (0, 0, 1, 0.0, 0.0, 0.0)


def test_empty_truth_scores_zero_with_the_false_positives_counted():
    s = spotting_scores({"a": [iv(0, 9), iv(20, 29)]}, {"a": []})
    assert (s.tp, s.fp, s.fn) == (0, 2, 0)
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)
    assert s.n_pred == 2 and s.n_truth == 0
    nothing = spotting_scores({}, {"a": []})
    assert (nothing.tp, nothing.fp, nothing.fn, nothing.f1) == (0, 0, 0, 0.0)


def test_recall_is_tp_over_tp_plus_fn_not_the_precision():
    # 1 TP, 0 FP, 3 FN: precision 1, recall 1/4. A scorer using the precision's denominator
    # for recall would report recall 1.
    s = spotting_scores(
        {"a": [iv(0, 9)], "b": []},
        {"a": [iv(0, 9)], "b": [iv(0, 9), iv(20, 29), iv(40, 49)]},
    )
    assert (s.tp, s.fp, s.fn) == (1, 0, 3)
    assert s.precision == 1.0
    assert s.recall == 0.25
    assert s.recall == s.tp / (s.tp + s.fn) != s.tp / (s.tp + s.fp)
    assert s.f1 == pytest.approx(2 * 1 / (2 * 1 + 0 + 3))  # 0.4


def test_corpus_summing_differs_from_per_video_averaging():
    pred = {"a": [iv(0, 9)], "b": []}
    truth = {"a": [iv(0, 9)], "b": [iv(0, 9), iv(20, 29), iv(40, 49)]}
    per_video = [spotting_scores({v: pred[v]}, {v: truth[v]}).f1 for v in truth]
    assert per_video == [1.0, 0.0]
    assert sum(per_video) / 2 == 0.5  # per-video averaging (not MEGC)
    assert spotting_scores(pred, truth).f1 == pytest.approx(0.4)  # corpus counts (MEGC)


def test_matching_stays_within_a_video():
    s = spotting_scores({"a": [iv(0, 9)], "b": []}, {"a": [], "b": [iv(0, 9)]})
    assert (s.tp, s.fp, s.fn) == (0, 1, 1)


def test_micro_and_macro_are_scored_separately_and_overall_sums_them():
    truth = {
        "a": [iv(0, 9), iv(100, 159, "macro"), iv(300, 359, "macro")],
        "b": [iv(50, 59), iv(200, 259, "macro")],
    }
    pred = {
        "a": [
            iv(1, 10),  # micro TP (9/11)
            iv(100, 155, "macro"),  # macro TP (56/60)
            iv(300, 359),  # labelled micro over a macro truth: micro FP, macro FN
        ],
        "b": [iv(200, 250, "macro"), iv(500, 509)],  # macro TP (51/60); micro FP
    }
    micro = spotting_scores(pred, truth, kind="micro")
    macro = spotting_scores(pred, truth, kind="macro")
    overall = spotting_scores(pred, truth)
    assert (micro.tp, micro.fp, micro.fn) == (1, 2, 1)
    assert (macro.tp, macro.fp, macro.fn) == (2, 0, 1)
    assert (overall.tp, overall.fp, overall.fn) == (3, 2, 2)
    assert micro.f1 == pytest.approx(2 / 5)
    assert macro.f1 == pytest.approx(4 / 5)
    assert overall.f1 == pytest.approx(6 / 10)
    assert overall.precision == pytest.approx(3 / 5) and overall.recall == pytest.approx(3 / 5)

    report = spotting_report(pred, truth)
    assert list(report) == ["micro", "macro", "overall"]
    assert report["micro"] == micro and report["macro"] == macro and report["overall"] == overall

    # Ignoring kinds, the micro-labelled [300, 359] now finds the macro truth.
    agnostic = spotting_scores(pred, truth, ignore_kind=True)
    assert (agnostic.tp, agnostic.fp, agnostic.fn) == (4, 1, 1)


def test_report_of_a_corpus_without_macro_has_an_empty_macro_row():
    report = spotting_report({"a": [iv(0, 9)]}, {"a": [iv(0, 9)]})
    assert report["macro"].to_dict() == {
        "tp": 0, "fp": 0, "fn": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0,
        "n_pred": 0, "n_truth": 0,
    }  # fmt: skip
    assert report["overall"].f1 == 1.0


def test_from_counts_conventions():
    assert SpotScores.from_counts(0, 0, 0).f1 == 0.0
    s = SpotScores.from_counts(3, 1, 2)
    assert (s.precision, s.recall) == (0.75, 0.6)
    assert s.f1 == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    assert s.f1 == pytest.approx(2 * s.precision * s.recall / (s.precision + s.recall))


def test_unknown_predicted_video_is_an_error_not_silent_misses():
    with pytest.raises(MekitError, match="not in the ground truth"):
        spotting_scores({"clip_01": [iv(0, 9)]}, {"clip_1": [iv(0, 9)]})


def test_interval_video_name_must_agree_with_its_key():
    with pytest.raises(MekitError, match="names video"):
        spotting_scores({"a": [iv(0, 9, video="b")]}, {"a": [], "b": []})


def test_match_corpus_keys_and_group_by_video():
    pred = group_by_video([iv(0, 9, video="a"), iv(50, 60, "macro", video="a")])
    truth = {"a": [iv(0, 9, video="a")], "b": []}
    keys = set(match_corpus(pred, truth))
    assert keys == {("a", "micro"), ("a", "macro")}
    assert set(match_corpus(pred, truth, ignore_kind=True)) == {("a", "all"), ("b", "all")}
    with pytest.raises(MekitError):
        group_by_video([iv(0, 9)])


# --- intervals -------------------------------------------------------------------------------


def test_interval_validation():
    with pytest.raises(MekitError, match="before its onset"):
        Interval(10, 9)
    with pytest.raises(MekitError, match="integer"):
        Interval(1.5, 9)
    with pytest.raises(MekitError, match="apex"):
        Interval(0, 9, apex=12)
    with pytest.raises(MekitError, match="kind"):
        Interval(0, 9, kind="")
    assert Interval(0, 0).length == 1


def test_interval_from_event():
    x = Interval.from_event(Event(10, 14, 20, "macro", "happiness", "AU12"), video="v")
    assert (x.onset, x.apex, x.offset, x.kind, x.emotion, x.video) == (
        10, 14, 20, "macro", "happiness", "v"
    )  # fmt: skip


# --- apex --------------------------------------------------------------------------------------


def test_apex_error_and_summary():
    assert apex_error(12, 15) == 3 and apex_error(15, 12) == 3
    pairs = [
        (iv(0, 20, apex=10), iv(0, 20, apex=12)),  # 2
        (iv(0, 20, apex=5), iv(0, 20, apex=5)),  # 0
        (iv(0, 20, apex=20), iv(0, 20, apex=13)),  # 7
        (iv(0, 20), iv(0, 20, apex=3)),  # no predicted apex: skipped
        (4, 5),  # plain frame indices (apex spotting inside a clip): 1
    ]
    s = apex_summary(pairs)
    assert s.n == 4 and s.skipped == 1
    assert s.errors == (2, 0, 7, 1)
    assert s.mean == 2.5 and s.median == 1.5 and s.max == 7
    assert s.within(2) == 0.75
    empty = apex_summary([])
    assert empty.n == 0 and empty.mean is None and empty.within(3) == 0.0


def test_apex_summary_of_a_matching():
    m = match_intervals([iv(0, 9, apex=4)], [iv(0, 9, apex=6)])
    assert apex_summary(m.pairs).mean == 2.0


# --- spot then recognise -------------------------------------------------------------------


def test_recognition_f1_on_true_positives_and_str_score():
    truth = {
        "a": [
            iv(0, 9, emotion="positive"),
            iv(20, 29, emotion="negative"),
            iv(40, 49, emotion="negative"),
            iv(60, 69, emotion="surprise"),  # missed: not in the recognition F1
        ]
    }
    pred = {
        "a": [
            iv(0, 9, emotion="positive"),
            iv(20, 29, emotion="negative"),
            iv(40, 49, emotion="positive"),
            iv(80, 89, emotion="negative"),  # false positive: not in the recognition F1
        ]
    }
    matchings = match_corpus(pred, truth)
    spot = SpotScores.from_matchings(matchings.values())
    assert (spot.tp, spot.fp, spot.fn) == (3, 1, 1) and spot.f1 == 0.75
    pairs = [p for m in matchings.values() for p in m.pairs]
    # TPs: positive->positive, negative->negative, negative->positive.
    # positive: TP 1 FP 1 FN 0 -> F1 2/3; negative: TP 1 FP 0 FN 1 -> F1 2/3; UF1 2/3.
    rec = recognition_f1(pairs)
    assert rec == pytest.approx(2 / 3)
    assert recognition_f1(pairs, labels=["negative", "positive", "surprise"]) == pytest.approx(
        2 / 3
    )  # surprise never among the matched truths: not averaged in
    assert spot_then_recognise(spot.f1, rec) == pytest.approx(0.75 * 2 / 3)
    assert recognition_f1([]) == 0.0


def test_recognition_needs_labels_and_str_needs_scores_in_range():
    with pytest.raises(MekitError, match="no emotion"):
        recognition_f1([(iv(0, 9), iv(0, 9, emotion="x"))])
    with pytest.raises(MekitError):
        spot_then_recognise(1.2, 0.5)
    with pytest.raises(MekitError):
        spot_then_recognise(0.5, float("nan"))
    assert spot_then_recognise(0.0, 0.9) == 0.0


def test_matching_size_equals_brute_force_maximum_on_random_sets():
    import itertools
    import random

    rng = random.Random(7)
    for _ in range(200):

        def rand_set(n):
            out = []
            for _ in range(n):
                a = rng.randrange(0, 40)
                out.append(iv(a, a + rng.randrange(0, 12)))
            return out

        pred, truth = rand_set(rng.randrange(0, 6)), rand_set(rng.randrange(0, 5))
        # Every one-to-one assignment: each truth gets a distinct prediction or none (-1).
        best = 0
        choices = [*range(len(pred)), *[-1] * len(truth)]
        for perm in set(itertools.permutations(choices, len(truth))):
            best = max(
                best, sum(i >= 0 and iou(pred[i], truth[j]) >= 0.5 for j, i in enumerate(perm))
            )
        m = match_intervals(pred, truth)
        assert m.tp == best
        assert all(iou(p, t) >= 0.5 for p, t in m.pairs)
        assert m.tp + m.fp == len(pred) and m.tp + m.fn == len(truth)
