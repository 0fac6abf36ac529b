from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mekit.config import from_mapping, parse_overrides, to_dict
from mekit.errors import MekitError
from mekit.train import TrainConfig, fit
from mekit.train.losses import (
    FocalLoss,
    balanced_class_weights,
    make_loss,
    smoothed_cross_entropy,
)


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 3, generator=g), torch.randint(0, 3, (16,), generator=g)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, y = _data()
    assert FocalLoss(gamma=0.0)(logits, y) == pytest.approx(float(nn.CrossEntropyLoss()(logits, y)))


def test_focal_downweights_easy_samples():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.2, 0.0, 0.0]])
    y = torch.tensor([0, 0])
    ce = nn.functional.cross_entropy(logits, y, reduction="none")
    p = torch.softmax(logits, 1)[:, 0]
    per_sample = [float(FocalLoss(gamma=2.0)(logits[i : i + 1], y[i : i + 1])) for i in range(2)]
    expected = ((1 - p) ** 2 * ce).tolist()
    assert per_sample == pytest.approx(expected)
    assert per_sample[0] / float(ce[0]) < per_sample[1] / float(ce[1])


def test_focal_alpha_weights_classes():
    logits, y = _data()
    alpha = torch.tensor([1.0, 0.0, 0.0])
    loss = FocalLoss(gamma=0.0, alpha=alpha)(logits, y)
    ce = nn.functional.cross_entropy(logits, y, reduction="none")
    assert float(loss) == pytest.approx(float((ce * (y == 0)).mean()))


def test_balanced_class_weights():
    w = balanced_class_weights(np.array([0, 0, 0, 0, 1, 1]), 3)
    assert w.dtype == np.float32
    # n / (K_present * n_c) = 6 / (2 * 4), 6 / (2 * 2); the absent class gets 0
    assert w.tolist() == pytest.approx([0.75, 1.5, 0.0])


def test_make_loss():
    logits, y = _data()
    w = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    ce = make_loss("ce", class_weights=w)
    assert float(ce(logits, y)) == pytest.approx(
        float(nn.functional.cross_entropy(logits, y, weight=torch.from_numpy(w)))
    )
    assert isinstance(make_loss("focal", gamma=1.5), FocalLoss)
    with pytest.raises(MekitError, match="focal"):
        make_loss("hinge")


def test_label_smoothing_matches_a_hand_computed_value():
    # two classes, logits (0, ln 3): p = (1/4, 3/4); eps = 0.2 -> target (0.9, 0.1) for class 0
    logits = torch.tensor([[0.0, math.log(3.0)]])
    target = torch.tensor([0])
    hand = -(0.9 * math.log(0.25) + 0.1 * math.log(0.75))
    assert float(make_loss("ce", label_smoothing=0.2)(logits, target)) == pytest.approx(hand)
    ones = torch.ones(2)
    assert float(smoothed_cross_entropy(logits, target, ones, 0.2)) == pytest.approx(hand)
    assert float(smoothed_cross_entropy(logits, target, ones, 0.0)) == pytest.approx(
        -math.log(0.25)
    )
    with pytest.raises(MekitError, match="cross-entropy"):
        make_loss("focal", label_smoothing=0.1)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_smoothed_cross_entropy_is_torchs_weighted_label_smoothing(eps, weighted):
    logits, y = _data()
    w = torch.tensor([0.5, 2.0, 1.3]) if weighted else torch.ones(3)
    module = nn.CrossEntropyLoss(weight=w if weighted else None, label_smoothing=eps)
    assert float(smoothed_cross_entropy(logits, y, w, eps)) == pytest.approx(
        float(module(logits, y)), rel=1e-6
    )


def test_train_config_label_smoothing(toy_flow):
    assert TrainConfig().label_smoothing == 0.0
    assert TrainConfig(label_smoothing=0.1).label_smoothing == 0.1
    for bad in (-0.1, 1.0):
        with pytest.raises(MekitError, match="label_smoothing"):
            TrainConfig(label_smoothing=bad)
    with pytest.raises(MekitError, match="cross-entropy"):
        TrainConfig(loss="focal", label_smoothing=0.1)
    X, y, _, _ = toy_flow(2, 8)
    base = {"epochs": 2, "batch_size": 8, "lr": 1e-2}
    plain = fit("ststnet", 2, X, y, TrainConfig(**base))
    smoothed = fit("ststnet", 2, X, y, TrainConfig(**base, label_smoothing=0.1))
    again = fit("ststnet", 2, X, y, TrainConfig(**base, label_smoothing=0.1))
    assert smoothed.history == again.history != plain.history


def test_focal_matches_a_hand_computed_value_with_gamma_and_alpha():
    # sample 1: logits (ln 3, 0), true class 0 -> p_t = 3/4, alpha_t = 0.25
    #   0.25 * (1 - 3/4)^2 * -ln(3/4) = 0.25 / 16 * 0.2876820725 = 0.0044950324
    # sample 2: logits (0, 0), true class 1 -> p_t = 1/2, alpha_t = 0.75
    #   0.75 * (1 - 1/2)^2 * -ln(1/2) = 0.1875 * 0.6931471806 = 0.1299650964
    # mean over the 2 samples: 0.0672300644
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])
    loss = FocalLoss(gamma=2.0, alpha=[0.25, 0.75])(logits, y)
    assert float(loss) == pytest.approx(0.0672300644, abs=1e-7)  # float32
    # gradients stay finite for fractional gamma when a sample is fitted almost perfectly
    logits = torch.tensor([[30.0, -30.0], [0.0, 1.0]], requires_grad=True)
    FocalLoss(gamma=0.5)(logits, y).backward()
    assert torch.isfinite(logits.grad).all()


def test_focal_alpha_is_checked():
    for bad in ([[1.0, 2.0]], [1.0, -1.0], [1.0, float("nan")]):
        with pytest.raises(MekitError, match="alpha"):
            FocalLoss(alpha=bad)
    with pytest.raises(MekitError, match="2 values for 3 classes"):
        FocalLoss(alpha=[1.0, 2.0])(*_data())


def test_balanced_class_weights_feed_focal_alpha():
    y = np.array([0, 0, 0, 1])
    loss = make_loss("focal", 2.0, balanced_class_weights(y, 2))
    assert loss.alpha.tolist() == pytest.approx([4 / 6, 2.0])


def test_train_config_focal_alpha():
    assert TrainConfig().focal_alpha is None
    assert TrainConfig(loss="focal", focal_alpha=[1, 2]).focal_alpha == (1.0, 2.0)
    assert TrainConfig(loss="focal", focal_alpha="0.25, 0.75").focal_alpha == (0.25, 0.75)
    for override in ("train.focal_alpha=[0.25, 0.75]", "train.focal_alpha=0.25,0.75"):
        values = parse_overrides([override, "train.loss=focal"])["train"]
        cfg = from_mapping(TrainConfig, values)
        assert cfg.focal_alpha == (0.25, 0.75)
        assert from_mapping(TrainConfig, to_dict(cfg)) == cfg
    for bad in ("a,b", [], [0.0, 0.0], [1.0, -1.0], 3.0):
        with pytest.raises(MekitError, match="focal_alpha"):
            TrainConfig(loss="focal", focal_alpha=bad)
    with pytest.raises(MekitError, match="loss"):
        TrainConfig(focal_alpha=(1.0, 1.0))
    with pytest.raises(MekitError, match="class_weights"):
        TrainConfig(loss="focal", focal_alpha=(1.0, 1.0), class_weights="balanced")
    with pytest.raises(MekitError, match="focal_gamma"):
        TrainConfig(focal_gamma=-1.0)


def test_fit_uses_focal_alpha_and_checks_its_length(toy_flow):
    X, y, _, _ = toy_flow(2, 8)
    base = {"epochs": 1, "batch_size": 8, "loss": "focal"}
    with pytest.raises(MekitError, match="3 values for 2 classes"):
        fit("ststnet", 2, X, y, TrainConfig(**base, focal_alpha=(1.0, 1.0, 1.0)))
    plain = fit("ststnet", 2, X, y, TrainConfig(**base))
    ones = fit("ststnet", 2, X, y, TrainConfig(**base, focal_alpha=(1.0, 1.0)))
    half = fit("ststnet", 2, X, y, TrainConfig(**base, focal_alpha=(0.5, 0.5)))
    assert ones.history == plain.history  # alpha = 1 is no weighting
    assert half.history[0]["train_loss"] == pytest.approx(
        plain.history[0]["train_loss"] / 2, rel=0.05
    )
