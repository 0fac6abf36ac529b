from __future__ import annotations

import torch
from torch import nn

from mekit.models import count_params, create_model, get_spec


def test_ststnet_spec():
    spec = get_spec("ststnet")
    assert (spec.input_kind, spec.channels, spec.size) == ("flow", 3, 28)
    assert spec.channel_names == ("u", "v", "strain")
    assert spec.frames is None


def test_ststnet_has_about_1_7k_parameters_for_3_classes():
    # convs 3*(27+1) + 5*(27+1) + 8*(27+1) = 448, BN 2*16 = 32, linear 400*3 + 3 = 1203
    assert count_params(create_model("ststnet", 3)) == 1683


def test_ststnet_layout_follows_the_authors_port():
    model = create_model("ststnet", 3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [3, 5, 8]
    assert all(c.in_channels == 3 and c.kernel_size == (3, 3) for c in convs)
    assert all(c.padding == (2, 2) for c in convs)
    assert model.classifier.in_features == 400


def test_ststnet_streams_see_all_input_channels():
    torch.manual_seed(0)
    model = create_model("ststnet", 2).eval()
    x = torch.zeros(1, 3, 28, 28)
    base = model(x)
    for channel in range(3):  # a change in any single channel moves the output
        x2 = x.clone()
        x2[0, channel] = 1.0
        assert not torch.allclose(model(x2), base)


def test_ststnet_dropout_option():
    model = create_model("ststnet", 3, dropout=0.0)
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, nn.Dropout))
