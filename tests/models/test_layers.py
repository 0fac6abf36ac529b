from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import mekit.models.layers as layers
from mekit.models.layers import (
    CBAM,
    ChannelAttention,
    ConvReluBn,
    SpatialAttention,
    conv_bn_act,
    mlp_head,
    per_frame,
    resnet_stages,
)


def test_conv_relu_bn_shape_and_order():
    block = ConvReluBn(3, 5, kernel_size=3, padding=2)
    assert block(torch.randn(2, 3, 28, 28)).shape == (2, 5, 30, 30)
    assert [type(m).__name__ for m in block] == ["Conv2d", "ReLU", "BatchNorm2d"]


def test_attention_weights_are_in_unit_interval_with_right_shapes():
    x = torch.randn(2, 32, 9, 9)
    ca, sa = ChannelAttention(32, reduction=8)(x), SpatialAttention(7)(x)
    assert ca.shape == (2, 32, 1, 1) and sa.shape == (2, 1, 9, 9)
    assert ((ca > 0) & (ca < 1)).all() and ((sa > 0) & (sa < 1)).all()


def test_cbam_keeps_shape_and_rescales():
    x = torch.randn(2, 16, 7, 7)
    y = CBAM(16, reduction=4)(x)
    assert y.shape == x.shape
    assert (y.abs() <= x.abs() + 1e-6).all()  # weights in (0, 1) can only shrink


def test_cbam_in_3d_pools_over_time_too():
    x = torch.randn(2, 16, 3, 6, 6)
    cbam = CBAM(16, reduction=4, kernel_size=(3, 7, 7), dims=3)
    assert cbam.channel(x).shape == (2, 16, 1, 1, 1) and cbam.spatial(x).shape == (2, 1, 3, 6, 6)
    assert cbam.spatial.conv.padding == (1, 3, 3)
    torch.testing.assert_close(cbam(x), cbam.spatial(cbam.channel(x) * x) * cbam.channel(x) * x)
    with pytest.raises(ValueError, match="dims"):
        CBAM(16, dims=1)


def test_conv_bn_act_keeps_size_at_stride_one_and_can_drop_the_activation():
    block = conv_bn_act(3, 8, (3, 7, 7), dims=3)
    assert [type(m) for m in block] == [nn.Conv3d, nn.BatchNorm3d, nn.ReLU]
    assert block(torch.randn(2, 3, 4, 9, 9)).shape == (2, 8, 4, 9, 9)
    assert block[0].bias is None
    shortcut = conv_bn_act(3, 8, 1, 2, act=None, momentum=0.3)
    assert [type(m) for m in shortcut] == [nn.Conv2d, nn.BatchNorm2d]
    assert shortcut[1].momentum == 0.3 and shortcut(torch.randn(1, 3, 8, 8)).shape == (1, 8, 4, 4)


def test_mlp_head_puts_dropout_before_the_output_layer_only():
    head = nn.Sequential(*mlp_head(10, (6, 4), 3, dropout=0.5))
    assert [type(m) for m in head] == [
        nn.Linear,
        nn.ReLU,
        nn.Linear,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
    ]
    assert head(torch.randn(2, 10)).shape == (2, 3)
    assert [type(m) for m in mlp_head(10, (), 3)] == [nn.Linear]


def test_per_frame_runs_the_module_on_each_frame_in_order():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten())
    x = torch.randn(2, 2, 4, 5, 5)  # (B, C, T, H, W)
    out = per_frame(encoder, x)
    assert out.shape == (2, 4, 3 * 3 * 3)
    looped = torch.stack([encoder(x[:, :, t]) for t in range(4)], dim=1)
    torch.testing.assert_close(out, looped)


def test_resnet_stages_downsample_once_per_later_stage_and_expand_widths():
    calls = []

    def block(cin: int, width: int, stride: int) -> nn.Module:
        calls.append((cin, width, stride))
        return nn.Conv2d(cin, 2 * width, 1, stride)

    stages, out_channels = resnet_stages(block, (2, 1, 2), (4, 8, 16), 3, expansion=2)
    assert calls == [(3, 4, 1), (8, 4, 1), (8, 8, 2), (16, 16, 2), (32, 16, 1)]
    assert out_channels == 32 and [len(s) for s in stages] == [2, 1, 2]
    assert stages(torch.randn(1, 3, 8, 8)).shape == (1, 32, 2, 2)


def test_layers_is_a_leaf_module():
    tree = ast.parse(Path(layers.__file__).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name and name.startswith("mekit") for name in imported)
