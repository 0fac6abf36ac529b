"""ME-ResNet: 3D-conv ResNet with CBAM in every bottleneck (Jiang & Zhu, Computer Science 2024).

Input: (B, 3, T, H, W) flow sequence, channels u, v (px) and optical strain; the paper samples
N = 11 keyframes from onset to apex, giving T = 10 consecutive flows, here at 64 x 64 px.

`Bottleneck3D` (paper, fig. 5): 1x1x1 -> 3x3x3 -> 1x1x1 convs, each followed by BatchNorm and
ReLU, then CBAM (channel attention over global (T, H, W) max/avg pools, then spatial attention
from a 3x7x7 conv over the channel-wise [max; mean] maps), then the shortcut is added (identity,
or 1x1x1 conv + BN when the shape changes) and a final ReLU, as in ResNet.

Depth 50 / 26 / 14 use (3, 4, 6, 3) / (2, 2, 2, 2) / (1, 1, 1, 1) bottlenecks per stage.
Stage widths are base_width * (1, 2, 4, 8) with expansion 4; ResNet50 proper has
base_width 64 (48.7M parameters with the 3D kernels). The registered models use base_width 16 (~3M
parameters at depth 50) so that LOSO training on a CPU is possible.

Time is downsampled gently: the stem has stride (1, 2, 2) and its max-pool (1, 2, 2); stages
2-4 have stride (2, 2, 2) (T = 10 -> 10, 10, 5, 3, 2); a time axis of 1 stays 1.
`model.cam_layer` is the last stage, the layer to hook for Grad-CAM.
"""

from __future__ import annotations

import torch
from torch import nn

from mekit.models.layers import CBAM, conv_bn_act, resnet_stages
from mekit.models.registry import UV_STRAIN, register_model, uv_strain_spec

DEPTHS: dict[int, tuple[int, ...]] = {50: (3, 4, 6, 3), 26: (2, 2, 2, 2), 14: (1, 1, 1, 1)}
EXPANSION = 4


class CBAM3d(CBAM):
    """CBAM on (B, C, T, H, W): channel attention over global (T, H, W) pools, spatial attention
    from a 3x7x7 conv (the paper's kernel)."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        kernel_size: tuple[int, int, int] = (3, 7, 7),
    ) -> None:
        super().__init__(channels, reduction, kernel_size, dims=3)


class Bottleneck3D(nn.Module):
    """(B, in_channels, T, H, W) -> (B, 4 * planes, T', H', W'), T' = ceil(T / stride).

    1x1x1 (in -> planes), 3x3x3 (planes -> planes, stride), 1x1x1 (planes -> 4 * planes),
    each conv + BN + ReLU, then CBAM, plus the shortcut, then ReLU.
    """

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * EXPANSION
        self.conv1 = conv_bn_act(in_channels, planes, 1, dims=3)
        self.conv2 = conv_bn_act(planes, planes, 3, stride, dims=3)
        self.conv3 = conv_bn_act(planes, out_channels, 1, dims=3)
        self.cbam = CBAM3d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv_bn_act(in_channels, out_channels, 1, stride, dims=3, act=None)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.cbam(self.conv3(self.conv2(self.conv1(x))))
        return self.relu(f + self.shortcut(x))


class MEResNet(nn.Module):
    """(B, 3, T, H, W) u/v/strain flow sequence -> (B, num_classes) logits."""

    def __init__(self, num_classes: int, depth: int = 50, base_width: int = 16) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
        self.stem = nn.Sequential(
            *conv_bn_act(len(UV_STRAIN), base_width, (3, 7, 7), (1, 2, 2), dims=3),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        planes = [base_width * 2**i for i in range(len(DEPTHS[depth]))]
        self.stages, in_ch = resnet_stages(
            Bottleneck3D, DEPTHS[depth], planes, base_width, expansion=EXPANSION
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def cam_layer(self) -> nn.Module:
        """The last stage, output (B, 32 * base_width, T', H / 32, W / 32): hook it for Grad-CAM."""
        return self.stages[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


SPEC = uv_strain_spec(
    "me_resnet",
    size=64,
    frames=10,
    description="ME-ResNet (Jiang & Zhu 2024): 3D ResNet50 with CBAM bottlenecks, base width 16, "
    "on 10 consecutive 64x64 u/v/strain flows between 11 onset-apex keyframes",
    channels_last=True,  # NDHWC: 1.36x per step on one CPU thread, the small one 1.48x
)


@register_model(SPEC)
def me_resnet(num_classes: int, base_width: int = 16) -> nn.Module:
    """ME-ResNet depth 50 on (B, 3, 10, 64, 64) u/v/strain flow sequences."""
    return MEResNet(num_classes, depth=50, base_width=base_width)


@register_model(
    SPEC.variant(
        "me_resnet_small",
        "ME-ResNet with one CBAM bottleneck per stage (depth 14), base width 16, on 10 "
        "consecutive 64x64 u/v/strain flows",
    )
)
def me_resnet_small(num_classes: int, base_width: int = 16) -> nn.Module:
    """ME-ResNet depth 14 on (B, 3, 10, 64, 64) u/v/strain flow sequences."""
    return MEResNet(num_classes, depth=14, base_width=base_width)
