"""STSTNet: Shallow Triple Stream Three-dimensional CNN (Liong et al., FG 2019).

Input: (B, 3, 28, 28) onset-apex optical flow images with channels u, v (pixels) and optical
strain. Three parallel shallow streams of 3, 5 and 8 3x3 convolutions, each over all three
input channels; their pooled maps are concatenated ("three-dimensional" refers to the stacked
u/v/strain input) and classified by one linear layer. About 1.7k parameters for 3 classes.

Layer details follow the authors' PyTorch port: padding 2 (28 -> 30 px), ReLU before
BatchNorm, MaxPool(3, stride 3, padding 1) (30 -> 10), dropout 0.5 per stream, AvgPool(2)
after concatenation (10 -> 5), so the classifier sees 16 x 5 x 5 = 400 features.
"""

from __future__ import annotations

import torch
from torch import nn

from mekit.models.layers import ConvReluBn
from mekit.models.registry import UV_STRAIN, register_model, uv_strain_spec

STREAM_WIDTHS: tuple[int, ...] = (3, 5, 8)
SIZE = 28  # px, input side


class STSTNet(nn.Module):
    """(B, 3, 28, 28) u/v/strain flow images -> (B, num_classes) logits."""

    def __init__(
        self, num_classes: int, stream_widths: tuple[int, ...] = STREAM_WIDTHS, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.streams = nn.ModuleList(
            nn.Sequential(
                ConvReluBn(len(UV_STRAIN), width, kernel_size=3, padding=2),
                nn.MaxPool2d(kernel_size=3, stride=3, padding=1),
                nn.Dropout(dropout),
            )
            for width in stream_widths
        )
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)
        side = ((SIZE + 2 * 2 - 2) + 2 - 3) // 3 + 1  # conv (pad 2), then max-pool 3/3/1
        side //= 2  # avg-pool 2/2
        self.classifier = nn.Linear(sum(stream_widths) * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.cat([stream(x) for stream in self.streams], dim=1)
        return self.classifier(torch.flatten(self.pool(features), 1))


SPEC = uv_strain_spec(
    "ststnet",
    size=SIZE,
    description="STSTNet (Liong et al. 2019): 3 shallow streams (3/5/8 convs) on 28x28 "
    "onset-apex u/v/strain; ~1.7k parameters",
)


@register_model(SPEC)
def ststnet(
    num_classes: int, dropout: float = 0.5, stream_widths: tuple[int, ...] = STREAM_WIDTHS
) -> nn.Module:
    """STSTNet on (B, 3, 28, 28) u/v/strain."""
    return STSTNet(num_classes, dropout=dropout, stream_widths=tuple(stream_widths))
