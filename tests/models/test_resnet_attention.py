from __future__ import annotations

import pytest
import torch
from torch import nn

from mekit.models import count_params, create_model, get_spec
from mekit.models.resnet_attention import AttentionResNet, BasicBlock, DualAttention


def _zero_attention(att: DualAttention) -> None:
    """Zero the last conv of both attentions, so each sigmoid gives exactly 0.5."""
    with torch.no_grad():
        att.spatial.conv.weight.zero_()
        att.channel.mlp[-1].weight.zero_()


def test_specs():
    for name in ("resnet18_dual_attention", "resnet18"):
        spec = get_spec(name)
        assert (spec.input_kind, spec.channels, spec.size, spec.frames) == ("apex", 1, 112, None)
        assert spec.u_channel is None  # a flip must not negate a grey image


def test_parameter_counts():
    plain = count_params(create_model("resnet18", 3))
    dual = count_params(create_model("resnet18_dual_attention", 3))
    # torchvision resnet18 (11,689,512) with a 1-channel stem and a 3-class head
    assert plain == 11_689_512 - 3 * 64 * 49 + 64 * 49 - 513_000 + 512 * 3 + 3 == 11_171_779
    # per block: spatial 7x7 conv on 2 maps (98) + channel MLP C -> C/16 -> C (2 C^2 / 16)
    attention = sum(2 * (98 + 2 * c * c // 16) for c in (64, 128, 256, 512))
    assert dual - plain == attention == 87_824


def test_dual_attention_with_half_weights_gives_f_plus_quarter_f():
    torch.manual_seed(0)
    att = DualAttention(32)
    _zero_attention(att)
    f = torch.randn(2, 32, 9, 9)
    torch.testing.assert_close(att(f), 1.25 * f)


def test_dual_attention_is_spatial_then_channel_with_residual_add():
    torch.manual_seed(0)
    att = DualAttention(32)
    f = torch.randn(2, 32, 9, 9)
    s = torch.sigmoid(att.spatial.conv(torch.cat([f.amax(1, True), f.mean(1, True)], 1)))
    f1 = s * f
    c = torch.sigmoid(
        att.channel.mlp(f1.mean((2, 3), True)) + att.channel.mlp(f1.amax((2, 3), True))
    )
    torch.testing.assert_close(att(f), f + c * f1)
    # and not the other order (channel weights from F, or CBAM without the residual add)
    c_of_f = att.channel(f)
    assert not torch.allclose(att(f), f + c_of_f * f1)
    assert not torch.allclose(att(f), c * f1)


def test_block_applies_attention_to_residual_branch_before_the_shortcut():
    torch.manual_seed(0)
    block = BasicBlock(16, 32, stride=2).eval()
    _zero_attention(block.attention)
    x = torch.randn(2, 16, 10, 10)
    f = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    expected = torch.relu(1.25 * f + block.shortcut(x))
    torch.testing.assert_close(block(x), expected)
    assert block(x).shape == (2, 32, 5, 5)


def test_plain_variant_has_no_attention_and_both_have_eight_blocks():
    dual = create_model("resnet18_dual_attention", 3)
    plain = create_model("resnet18", 3)
    for model, n_att in ((dual, 8), (plain, 0)):
        assert sum(isinstance(m, BasicBlock) for m in model.modules()) == 8
        assert sum(isinstance(m, DualAttention) for m in model.modules()) == n_att
    assert [len(stage) for stage in dual.stages] == [2, 2, 2, 2]


@pytest.mark.parametrize(("size", "side"), [(112, 4), (224, 7)])
def test_cam_layer_gives_activations_and_gradients_for_grad_cam(size, side):
    torch.manual_seed(0)
    model = AttentionResNet(3).eval()
    saved = {}

    def keep(module: nn.Module, args: object, out: torch.Tensor) -> None:
        out.retain_grad()
        saved["act"] = out

    model.cam_layer.register_forward_hook(keep)
    logits = model(torch.rand(1, 1, size, size))
    assert logits.shape == (1, 3)
    logits[0, 1].backward()
    act = saved["act"]
    assert act.shape == (1, 512, side, side)
    assert act.grad is not None and act.grad.shape == act.shape and act.grad.abs().sum() > 0
    assert model.cam_layer is model.stages[-1]
    assert not any(k.startswith("cam_layer") for k in model.state_dict())


def test_in_channels_option_for_rgb_input():
    model = AttentionResNet(5, in_channels=3).eval()
    assert model.stem[0].in_channels == 3
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 5)
