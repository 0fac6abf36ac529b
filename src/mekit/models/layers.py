"""Reusable blocks for mekit's models. A leaf: imports torch only, nothing from mekit.

Shapes use B = batch, C = channels, H, W = height and width in pixels.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvReluBn(nn.Sequential):
    """Conv2d -> ReLU -> BatchNorm2d: (B, C_in, H, W) -> (B, C_out, H', W').

    ReLU before BatchNorm is the order of the STSTNet authors' code; kept for fidelity.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding),
            nn.ReLU(inplace=False),
            nn.BatchNorm2d(out_channels),
        )


class ChannelAttention(nn.Module):
    """CBAM channel attention: (B, C, H, W) -> weights (B, C, 1, 1) in (0, 1).

    A shared 1x1 -> ReLU -> 1x1 bottleneck on the global max- and average-pooled features,
    summed, then a sigmoid.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=False),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(torch.mean(x, dim=(2, 3), keepdim=True))
        mx = self.mlp(torch.amax(x, dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: (B, C, H, W) -> weights (B, 1, H, W) in (0, 1).

    A k x k conv over the channel-wise [max; mean] maps, then a sigmoid.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Channel then spatial attention (Woo et al. 2018): (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        return x * self.spatial(x)


def image_encoder(
    in_channels: int, widths: tuple[int, ...], out_features: int, size: int
) -> nn.Sequential:
    """(N, in_channels, size, size) -> (N, out_features).

    Per width: 3x3 conv, ReLU, 2x2 max-pool, per-channel GroupNorm; the final map flattened
    (aligned faces: position says which face region it is) into a linear layer with ReLU.
    """
    layers: list[nn.Module] = []
    for cin, cout in zip((in_channels, *widths[:-1]), widths, strict=True):
        layers += [
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(2),
            nn.GroupNorm(cout, cout),
        ]
    side = size // 2 ** len(widths)
    if side < 1:
        raise ValueError(
            f"{len(widths)} pooling stages need images of at least {2 ** len(widths)} px"
        )
    layers += [
        nn.Flatten(),
        nn.Linear(widths[-1] * side * side, out_features),
        nn.ReLU(inplace=False),
    ]
    return nn.Sequential(*layers)
