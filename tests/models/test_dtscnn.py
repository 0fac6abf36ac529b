from __future__ import annotations

import torch
from torch import nn

from mekit.models import count_params, create_model, get_spec
from mekit.models.dtscnn import DTSCNN


def test_dtscnn_spec():
    spec = get_spec("dtscnn")
    assert spec.input_kind == "flow_sequence" and spec.input_shape == (3, 10, 48, 48)
    assert spec.channel_names == ("u", "v", "strain") and spec.u_channel == 0


def test_dtscnn_parameter_count():
    stream = sum(c_in * c_out * 27 + 2 * c_out for c_in, c_out in ((3, 16), (16, 32), (32, 64)))
    head = (128 * 128 + 128) + (128 * 3 + 3)
    assert count_params(create_model("dtscnn", 3)) == 2 * stream + head == 158_179


def test_dtscnn_streams_are_shallow_3x3x3_convs():
    model = create_model("dtscnn", 3)
    for stream in (model.stream_full, model.stream_half):
        convs = [m for m in stream if isinstance(m, nn.Conv3d)]
        assert [c.out_channels for c in convs] == [16, 32, 64]
        assert all(c.kernel_size == (3, 3, 3) for c in convs)
        assert isinstance(stream[-2], nn.AdaptiveMaxPool3d)  # global max over (T, H, W)


def test_stream_b_sees_every_second_frame():
    torch.manual_seed(0)
    model = create_model("dtscnn", 3).eval()
    seen: dict[str, torch.Tensor] = {}
    model.stream_full.register_forward_pre_hook(lambda m, a: seen.__setitem__("a", a[0]))
    model.stream_half.register_forward_pre_hook(lambda m, a: seen.__setitem__("b", a[0]))
    x = torch.randn(2, 3, 10, 48, 48)
    with torch.no_grad():
        model(x)
    assert seen["a"].shape == (2, 3, 10, 48, 48)
    assert seen["b"].shape == (2, 3, 5, 48, 48)
    assert torch.equal(seen["b"], x[:, :, ::2])


def test_odd_frames_move_only_the_full_rate_stream():
    torch.manual_seed(0)
    model = create_model("dtscnn", 3).eval()
    x = torch.randn(2, 3, 10, 48, 48)
    x2 = x.clone()
    x2[:, :, 1::2] += 1.0
    with torch.no_grad():
        assert torch.equal(model.stream_half(x[:, :, ::2]), model.stream_half(x2[:, :, ::2]))
        assert not torch.allclose(model.stream_full(x), model.stream_full(x2))
        assert not torch.allclose(model(x), model(x2))


def test_time_pooling_adapts_to_the_number_of_frames():
    for frames, kts_full, kts_half in ((10, [1, 2, 2], [1, 2, 2]), (3, [1, 2, 1], [1, 2, 1])):
        model = DTSCNN(2, frames=frames, widths=(4, 4, 4)).eval()
        for stream, kts in ((model.stream_full, kts_full), (model.stream_half, kts_half)):
            pools = [m for m in stream if isinstance(m, nn.MaxPool3d)]
            assert [p.kernel_size[0] for p in pools] == kts
        with torch.no_grad():
            assert model(torch.randn(1, 3, frames, 16, 16)).shape == (1, 2)
