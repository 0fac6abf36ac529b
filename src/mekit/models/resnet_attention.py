"""ResNet18 with spatial + channel dual attention in each residual unit (Xu et al. 2021).

Input: (B, 1, H, W) aligned grey apex frame scaled to [0, 1]. The paper uses H = W = 224;
the registered spec uses 112 to keep CPU training practical. The network is fully
convolutional up to a global average pool, so the module itself works at any size >= 32
(224 included); only the registered spec fixes 112.

In each residual unit the residual branch output F is refined as (paper, eq. 5)

    F'  = S(F) * F          S: sigmoid(7x7 conv over [channel-max; channel-mean])  (B, 1, H, W)
    F'' = C(F') * F'        C: sigmoid(shared 1x1-ReLU-1x1 MLP on global max + avg pools)
    F''' = F + F''

and F''' takes the place of F in the usual `relu(F + shortcut(x))`. Unlike CBAM, the
refined features are added to the unrefined ones, which keeps more of the weak ME detail.
The paper writes C(F) but describes the modules applied in sequence, as CBAM does; the
channel weights are computed from F' here.

`resnet18` is the same network without attention (the paper's baseline in its ablation).
`model.cam_layer` is the last conv stage (B, 512, H/32, W/32), the layer to hook for Grad-CAM.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from mekit.models.layers import ChannelAttention, SpatialAttention, conv_bn_act, resnet_stages
from mekit.models.registry import ModelSpec, register_model

RESNET18_LAYERS: tuple[int, ...] = (2, 2, 2, 2)
STAGE_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)


class DualAttention(nn.Module):
    """Spatial then channel attention with a residual add: (B, C, H, W) -> (B, C, H, W).

    Returns F + C(F') * F' with F' = S(F) * F.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.spatial = SpatialAttention(kernel_size)
        self.channel = ChannelAttention(channels, reduction)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        f1 = self.spatial(f) * f
        return f + self.channel(f1) * f1


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs), with optional dual attention on its residual branch.

    (B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, attention: bool = True
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=False)
        self.attention: nn.Module = DualAttention(out_channels) if attention else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv_bn_act(in_channels, out_channels, 1, stride, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(self.attention(f) + self.shortcut(x))


class AttentionResNet(nn.Module):
    """(B, in_channels, H, W) image -> (B, num_classes) logits; ResNet with basic blocks.

    `layers` gives the blocks per stage ((2, 2, 2, 2) = ResNet18); `attention` puts
    `DualAttention` in every block.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        layers: tuple[int, ...] = RESNET18_LAYERS,
        attention: bool = True,
        widths: tuple[int, ...] = STAGE_WIDTHS,
    ) -> None:
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(f"{len(layers)} stage depths for {len(widths)} stage widths")
        self.stem = nn.Sequential(
            *conv_bn_act(in_channels, widths[0], 7, 2), nn.MaxPool2d(3, stride=2, padding=1)
        )
        block = functools.partial(BasicBlock, attention=attention)
        self.stages, in_ch = resnet_stages(block, layers, widths, widths[0])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        _init_weights(self)

    @property
    def cam_layer(self) -> nn.Module:
        """The last conv stage, output (B, 512, H/32, W/32): hook it for Grad-CAM."""
        return self.stages[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


SPEC = ModelSpec(
    name="resnet18_dual_attention",
    input_kind="apex",
    channels=1,
    size=112,
    channel_names=("apex",),
    features="apex",
    description="ResNet18 + spatial/channel dual attention in each residual unit (Xu et al. 2021) "
    "on the 112x112 grey apex frame (paper: 224); ~11.2M parameters",
    channels_last=True,  # 1.2x per step on one CPU thread, resnet18 too (memory_format.py)
)


@register_model(SPEC)
def resnet18_dual_attention(num_classes: int) -> nn.Module:
    """ResNet18 with dual attention on (B, 1, 112, 112) apex frames."""
    return AttentionResNet(num_classes, layers=RESNET18_LAYERS, attention=True)


@register_model(
    SPEC.variant(
        "resnet18",
        "Plain ResNet18 on the 112x112 grey apex frame (baseline of Xu et al. 2021); "
        "~11.2M parameters",
    )
)
def resnet18(num_classes: int) -> nn.Module:
    """Plain ResNet18 (no attention) on (B, 1, 112, 112) apex frames."""
    return AttentionResNet(num_classes, layers=RESNET18_LAYERS, attention=False)
