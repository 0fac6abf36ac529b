from __future__ import annotations

import pytest
import torch
from torch import nn

import mekit.models.cnn_lstm  # noqa: F401  (registers the models)
from mekit.errors import MekitError
from mekit.models.cnn_lstm import CNNLSTMFusion, PeepholeLSTM
from mekit.models.registry import count_params, create_model, get_spec

NAMES = ("cnn_lstm_fusion", "cnn_lstm_spatial", "cnn_lstm_temporal")


def _clips(b: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, 19, 96, 96, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
def test_spec_is_19_flow_images_of_96_px(name):
    spec = get_spec(name)
    assert (spec.input_kind, spec.channels, spec.frames, spec.size) == ("flow_sequence", 3, 19, 96)
    assert spec.channel_names == ("dx", "dy", "magnitude")
    assert spec.u_channel == 0


def test_alexnet_layout_5_convs_3_pools_and_4_fc():
    model = create_model("cnn_lstm_fusion", 3)
    assert sum(isinstance(m, nn.Conv2d) for m in model.cnn.modules()) == 5
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.cnn.modules()) == 3
    fcs = [model.cnn.fc6[0], model.cnn.fc7[0], model.fusion[0], model.classifier]
    assert [f.out_features for f in fcs] == [256, 256, 256, 3]
    linears_outside_lstm = [
        m for n, m in model.named_modules() if isinstance(m, nn.Linear) and "lstm" not in n
    ]
    assert linears_outside_lstm == fcs


def test_fusion_layer_sees_fc7_time_mean_and_lstm_last_state():
    torch.manual_seed(0)
    model = create_model("cnn_lstm_fusion", 3).eval()
    assert model.fusion[0].in_features == model.cnn.fc7[0].out_features + model.lstm.hidden_size
    seen = []
    model.fusion.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    x = _clips()
    with torch.no_grad():
        model(x)
        per_frame = model.frame_features(x)
        assert per_frame.shape == (2, 19, 256)
        _, last = model.lstm(per_frame)
    assert seen[0].shape == (2, 256 + 128)
    torch.testing.assert_close(seen[0][:, :256], per_frame.mean(dim=1))
    torch.testing.assert_close(seen[0][:, 256:], last)


def test_ablations_feed_the_fusion_layer_one_stream_each():
    fused, spatial, temporal = (create_model(n, 3) for n in NAMES)
    assert spatial.lstm is None and temporal.lstm is not None
    assert (fused.fusion[0].in_features, spatial.fusion[0].in_features) == (384, 256)
    assert temporal.fusion[0].in_features == 128
    assert count_params(spatial) < count_params(temporal) < count_params(fused)


def test_spatial_ablation_ignores_frame_order_and_temporal_one_does_not():
    x = _clips(seed=1)
    reversed_x = x.flip(dims=(2,))
    for name, order_matters in (("cnn_lstm_spatial", False), ("cnn_lstm_temporal", True)):
        torch.manual_seed(0)
        model = create_model(name, 3).eval()
        with torch.no_grad():
            same = torch.allclose(model(x), model(reversed_x), atol=1e-5)
        assert same is not order_matters, name


def test_clip_output_does_not_depend_on_its_batch_mates_in_training():
    torch.manual_seed(0)
    model = create_model("cnn_lstm_fusion", 3, dropout=0.0).train()
    x = _clips(b=3, seed=2)
    other = x.clone()
    other[1:] = torch.randn_like(other[1:])
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], model(other)[0])


def test_frozen_fusion_option():
    trained = create_model("cnn_lstm_fusion", 3)
    frozen = create_model("cnn_lstm_fusion", 3, trainable_fusion=False)
    assert not any(p.requires_grad for p in frozen.fusion.parameters())
    assert count_params(trained) - count_params(frozen) == 384 * 256 + 256


def test_peephole_lstm_without_peepholes_is_a_standard_lstm():
    torch.manual_seed(0)
    cell = PeepholeLSTM(5, 4)
    reference = nn.LSTM(5, 4, batch_first=True)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(cell.input_map.weight)
        reference.bias_ih_l0.copy_(cell.input_map.bias)
        reference.weight_hh_l0.copy_(cell.hidden_map.weight)
        reference.bias_hh_l0.zero_()
    x = torch.randn(3, 7, 5)
    outputs, last = cell(x)
    expected, (h_n, _) = reference(x)
    torch.testing.assert_close(outputs, expected)
    torch.testing.assert_close(last, h_n[0])
    assert torch.equal(cell.input_map.bias[4:8], torch.ones(4))  # forget-gate bias 1
    with torch.no_grad():
        cell.peephole.fill_(0.5)
    assert not torch.allclose(cell(x)[0], expected)


def test_bad_streams_option_raises():
    with pytest.raises(MekitError, match="streams"):
        CNNLSTMFusion(3, streams="both")
