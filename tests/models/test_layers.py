from __future__ import annotations

import ast
from pathlib import Path

import torch

import mekit.models.layers as layers
from mekit.models.layers import CBAM, ChannelAttention, ConvReluBn, SpatialAttention


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


def test_layers_is_a_leaf_module():
    tree = ast.parse(Path(layers.__file__).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name and name.startswith("mekit") for name in imported)
