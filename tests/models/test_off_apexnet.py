from __future__ import annotations

import torch
from torch import nn

import mekit.models.off_apexnet  # noqa: F401  (registers the model)
from mekit.models import count_params, create_model, get_spec


def test_off_apexnet_spec():
    spec = get_spec("off_apexnet")
    assert (spec.input_kind, spec.channels, spec.size, spec.frames) == ("flow", 2, 28, None)
    assert spec.channel_names == ("u", "v") and spec.u_channel == 0


def test_off_apexnet_has_about_2_66m_parameters_for_3_classes():
    stream = (6 * 25 + 6) + (16 * 6 * 25 + 16)  # 156 + 2416
    fc = (1568 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 3 + 3)
    assert count_params(create_model("off_apexnet", 3)) == 2 * stream + fc == 2_664_475


def test_off_apexnet_layout_follows_the_paper():
    model = create_model("off_apexnet", 3)
    for stream in (model.stream_u, model.stream_v):
        convs = [m for m in stream if isinstance(m, nn.Conv2d)]
        assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 6), (6, 16)]
        assert all(c.kernel_size == (5, 5) and c.padding == (2, 2) for c in convs)
        assert sum(isinstance(m, nn.MaxPool2d) for m in stream) == 2
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [
        (2 * 16 * 7 * 7, 1024),
        (1024, 1024),
        (1024, 3),
    ]


def test_off_apexnet_streams_see_u_and_v_separately():
    torch.manual_seed(0)
    model = create_model("off_apexnet", 3).eval()
    acts: dict[str, torch.Tensor] = {}
    model.stream_u.register_forward_hook(lambda m, a, out: acts.__setitem__("u", out))
    model.stream_v.register_forward_hook(lambda m, a, out: acts.__setitem__("v", out))
    x = torch.randn(2, 2, 28, 28)
    with torch.no_grad():
        base = model(x)
        u, v = acts["u"].clone(), acts["v"].clone()
        assert u.shape == v.shape == (2, 16, 7, 7)
        no_v = x.clone()
        no_v[:, 1] = 0
        out = model(no_v)
        assert torch.equal(acts["u"], u) and not torch.allclose(acts["v"], v)
        assert not torch.allclose(out, base)
        no_u = x.clone()
        no_u[:, 0] = 0
        model(no_u)
        assert torch.equal(acts["v"], v) and not torch.allclose(acts["u"], u)


def test_off_apexnet_dropout_option():
    model = create_model("off_apexnet", 3, dropout=0.2)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.2]


def test_the_strain_variant_adds_one_stream_for_the_third_channel():
    spec = get_spec("off_apexnet_strain")
    assert (spec.channels, spec.channel_names, spec.u_channel) == (3, ("u", "v", "strain"), 0)
    stream = (6 * 25 + 6) + (16 * 6 * 25 + 16)
    fc = (3 * 784 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 3 + 3)
    model = create_model("off_apexnet_strain", 3).eval()
    assert count_params(model) == 3 * stream + fc == 3_469_863
    assert create_model("off_apexnet", 3).stream_strain is None
    acts: dict[str, torch.Tensor] = {}
    model.stream_strain.register_forward_hook(lambda m, a, out: acts.__setitem__("s", out))
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        base = model(x)
        strain = acts["s"].clone()
        uv_changed = x.clone()
        uv_changed[:, :2] = 0
        model(uv_changed)
        assert torch.equal(acts["s"], strain)  # the strain stream sees channel 2 only
        no_strain = x.clone()
        no_strain[:, 2] = 0
        assert not torch.allclose(model(no_strain), base)
