from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mekit.errors import MekitError
from mekit.train.losses import FocalLoss, balanced_class_weights, make_loss


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
