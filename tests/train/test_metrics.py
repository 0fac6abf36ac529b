from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from mekit.errors import MekitError
from mekit.train import classification_metrics


def test_hand_computed_case():
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    # a: TP 2 FP 0 FN 1 -> F1 4/5; b: TP 1 FP 1 FN 1 -> 2/4; c: TP 1 FP 1 FN 0 -> 2/3
    assert m.per_class["a"]["f1"] == pytest.approx(0.8)
    assert m.per_class["b"]["f1"] == pytest.approx(0.5)
    assert m.per_class["c"]["f1"] == pytest.approx(2 / 3)
    assert m.uf1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m.uar == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m.per_class["b"]["precision"] == pytest.approx(0.5)
    assert m.per_class["a"]["support"] == 3
    assert m.n == 6


def test_class_never_predicted_has_f1_zero_and_counts_in_averages():
    m = classification_metrics(["a", "a", "b", "b"], ["a", "a", "a", "a"], ["a", "b"])
    assert m.per_class["b"] == {"f1": 0.0, "recall": 0.0, "precision": 0.0, "support": 2}
    assert m.per_class["a"]["f1"] == pytest.approx(4 / 6)  # TP 2, FP 2
    assert m.uf1 == pytest.approx((4 / 6 + 0) / 2)
    assert m.uar == pytest.approx(0.5)


def test_class_absent_from_truth_is_listed_but_not_averaged():
    m = classification_metrics(["a", "a", "b", "b"], ["a", "c", "b", "b"], ["a", "b", "c"])
    assert m.per_class["c"]["support"] == 0
    assert m.per_class["c"]["f1"] == 0.0
    # UF1 over {a, b} only: a = 2/3 (TP 1, FN 1), b = 1
    assert m.uf1 == pytest.approx((2 / 3 + 1) / 2)
    assert m.uar == pytest.approx((0.5 + 1) / 2)
    assert m.confusion[0] == [1, 0, 1]


def test_agrees_with_sklearn_macro_over_present_classes():
    rng = np.random.default_rng(3)
    labels = ["neg", "pos", "sur", "oth"]
    y_true = rng.choice(labels[:3], 200)  # "oth" never true
    y_pred = rng.choice(labels, 200)
    m = classification_metrics(y_true, y_pred, labels)
    present = ["neg", "pos", "sur"]
    assert m.uf1 == pytest.approx(f1_score(y_true, y_pred, labels=present, average="macro"))
    assert m.uar == pytest.approx(recall_score(y_true, y_pred, labels=present, average="macro"))
    assert sum(map(sum, m.confusion)) == 200


def test_integer_labels_and_to_dict_is_json_ready():
    m = classification_metrics([0, 1, 1], [0, 1, 0], [0, 1])
    d = json.loads(json.dumps(m.to_dict()))
    assert d["labels"] == ["0", "1"]
    assert d["accuracy"] == pytest.approx(2 / 3)
    assert d["per_class"]["1"]["recall"] == pytest.approx(0.5)
    assert d["confusion"] == [[1, 0], [1, 1]]


@pytest.mark.parametrize(
    ("y_true", "y_pred", "match"),
    [(["a"], ["a", "b"], "predictions"), ([], [], "no predictions"), (["a"], ["z"], "z")],
)
def test_bad_input_raises(y_true, y_pred, match):
    with pytest.raises(MekitError, match=match):
        classification_metrics(y_true, y_pred, ["a", "b"])
