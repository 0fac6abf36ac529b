from __future__ import annotations

import pytest
import torch
from torch import nn

from mekit.models import count_params, create_model, get_spec
from mekit.models.me_resnet import Bottleneck3D, CBAM3d, MEResNet


def test_me_resnet_specs():
    for name in ("me_resnet", "me_resnet_small"):
        spec = get_spec(name)
        assert spec.input_kind == "flow_sequence"
        assert spec.input_shape == (3, 10, 64, 64)  # 10 flows between 11 keyframes
        assert spec.channel_names == ("u", "v", "strain") and spec.u_channel == 0


def test_parameter_counts_at_base_width_16():
    assert count_params(create_model("me_resnet", 3)) == 3_063_763
    assert count_params(create_model("me_resnet_small", 3)) == 949_003
    assert count_params(create_model("me_resnet_small", 3, base_width=8)) < 949_003 / 3


@pytest.mark.parametrize(("depth", "blocks"), [(50, 16), (26, 8), (14, 4)])
def test_depth_sets_the_number_of_bottlenecks(depth, blocks):
    model = MEResNet(3, depth=depth, base_width=4)
    assert sum(isinstance(m, Bottleneck3D) for m in model.modules()) == blocks
    assert sum(isinstance(m, CBAM3d) for m in model.modules()) == blocks


def test_unknown_depth_raises():
    with pytest.raises(ValueError, match="depth"):
        MEResNet(3, depth=18)


def test_bottleneck3d_convs_and_cbam():
    block = Bottleneck3D(32, 16, stride=2)
    convs = [block.conv1[0], block.conv2[0], block.conv3[0]]
    assert [c.kernel_size for c in convs] == [(1, 1, 1), (3, 3, 3), (1, 1, 1)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(32, 16), (16, 16), (16, 64)]
    assert convs[1].stride == (2, 2, 2)
    for seq in (block.conv1, block.conv2, block.conv3):
        assert isinstance(seq[1], nn.BatchNorm3d) and isinstance(seq[2], nn.ReLU)
    assert isinstance(block.cbam, CBAM3d)
    assert block.shortcut[0].kernel_size == (1, 1, 1) and block.shortcut[0].stride == (2, 2, 2)
    assert isinstance(Bottleneck3D(64, 16).shortcut, nn.Identity)  # same shape: identity


def test_bottleneck3d_is_cbam_on_the_branch_plus_shortcut():
    torch.manual_seed(0)
    block = Bottleneck3D(32, 16, stride=2).eval()
    with torch.no_grad():  # both attention sigmoids give 0.5: CBAM scales by 0.25
        block.cbam.channel.mlp[-1].weight.zero_()
        block.cbam.spatial.conv.weight.zero_()
    x = torch.randn(2, 32, 5, 8, 8)
    branch = block.conv3(block.conv2(block.conv1(x)))
    torch.testing.assert_close(block(x), torch.relu(0.25 * branch + block.shortcut(x)))
    assert block(x).shape == (2, 64, 3, 4, 4)


def test_cbam3d_is_channel_then_spatial():
    torch.manual_seed(0)
    cbam = CBAM3d(32)
    x = torch.randn(2, 32, 3, 6, 6)
    c = cbam.channel(x)
    assert c.shape == (2, 32, 1, 1, 1)
    x1 = c * x
    s = cbam.spatial(x1)
    assert s.shape == (2, 1, 3, 6, 6) and cbam.spatial.conv.kernel_size == (3, 7, 7)
    torch.testing.assert_close(cbam(x), s * x1)
    assert not torch.allclose(cbam(x), cbam.spatial(x) * x1)


def test_time_is_downsampled_gently():
    torch.manual_seed(0)
    model = create_model("me_resnet_small", 3).eval()
    shapes = []
    for stage in (model.stem, *model.stages):
        stage.register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape[2:])))
    with torch.no_grad():
        model(torch.randn(1, 3, 10, 64, 64))
    assert shapes == [(10, 16, 16), (10, 16, 16), (5, 8, 8), (3, 4, 4), (2, 2, 2)]
    assert model.fc.in_features == 16 * 8 * 4
    assert model.cam_layer is model.stages[-1]
    assert not any(k.startswith("cam_layer") for k in model.state_dict())


def test_single_flow_input_keeps_working():
    model = MEResNet(2, depth=14, base_width=4).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 1, 32, 32)).shape == (2, 2)
