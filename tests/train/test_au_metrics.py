from __future__ import annotations

import pytest

from mekit.errors import MekitError
from mekit.train.metrics import au_metrics, parse_au_code, parse_aus


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("4+L10", {4: "", 10: "L"}),
        ("R12", {12: "R"}),
        ("12+L14", {12: "", 14: "L"}),
        ("1+2", {1: "", 2: ""}),
        ("AU1+AU2", {1: "", 2: ""}),
        ("l7 + r10", {7: "L", 10: "R"}),
        ("12B", {12: ""}),
        ("B4,5", {4: "", 5: ""}),
        ("L12+R12", {12: ""}),  # both sides coded separately: both
        ("", {}),
        (None, {}),
        ("-", {}),
    ],
)
def test_parse_au_code(code, expected):
    assert parse_au_code(code) == expected
    assert parse_aus(code) == frozenset(expected)


def test_parse_rejects_what_is_not_an_au():
    with pytest.raises(MekitError, match="'smile'"):
        parse_aus("4+smile")


def test_hand_computed_case():
    truth = ["4+L10", "4", "12", "R12+4", "17"]
    pred = [{4}, {4, 10}, {12}, {17}, {17}]
    m = au_metrics(truth, pred, aus=[4, 10, 12, 17])
    # AU4: TP 2 (rows 0, 1) FP 0 FN 1 (row 3) -> 4/5; AU10: TP 0 FP 1 FN 1 -> 0
    # AU12: TP 1 FP 0 FN 1 -> 2/3; AU17: TP 1 FP 1 FN 0 -> 2/3
    assert m.per_au[4]["f1"] == pytest.approx(0.8)
    assert m.per_au[10]["f1"] == 0.0
    assert m.per_au[12]["f1"] == pytest.approx(2 / 3)
    assert m.per_au[17]["f1"] == pytest.approx(2 / 3)
    assert m.per_au[4]["recall"] == pytest.approx(2 / 3) and m.per_au[4]["precision"] == 1.0
    assert m.per_au[4]["support"] == 3
    assert m.macro_f1 == pytest.approx((0.8 + 0 + 2 / 3 + 2 / 3) / 4)
    assert m.macro_over([4, 12]) == pytest.approx((0.8 + 2 / 3) / 2)
    assert m.n == 5
    assert m.to_dict()["per_au"]["4"]["f1"] == pytest.approx(0.8)


def test_absent_aus_are_listed_but_left_out_of_the_macro_mean():
    m = au_metrics(["4", "4"], ["4", "4+9"], aus=[4, 9, 12])
    assert m.per_au[9] == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "support": 0}
    assert m.macro_f1 == pytest.approx(1.0)  # only AU4 has true samples


def test_default_aus_are_those_in_the_truth_and_others_are_ignored():
    m = au_metrics(["1+2", "2"], ["1+2+25", ""])
    assert m.aus == (1, 2)
    assert m.per_au[2]["f1"] == pytest.approx(2 / 3)
    assert m.macro_f1 == pytest.approx((1.0 + 2 / 3) / 2)


def test_mismatched_or_empty_inputs_raise():
    with pytest.raises(MekitError, match="2 true AU sets but 1"):
        au_metrics(["4", "4"], ["4"])
    with pytest.raises(MekitError, match="no AU"):
        au_metrics([], [])
    with pytest.raises(MekitError, match="not scored"):
        au_metrics(["4"], ["4"]).macro_over([12])
