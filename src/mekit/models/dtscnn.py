"""DTSCNN: Dual Temporal Scale CNN (Peng et al., Frontiers in Psychology 2017).

Input: (B, 3, T, H, W) flow sequence with channels u, v (px) and optical strain, T = 10 flows
at 48 x 48 px. Two independent shallow 3D-CNN streams see the same sequence at two temporal
scales: stream A all T flows, stream B every second flow (x[:, :, ::2], ceil(T / 2) flows),
standing in for the paper's two frame rates. Each stream is three
conv3d 3x3x3 -> BN -> ReLU -> max-pool stages (pool (1, 2, 2) first, then (2, 2, 2) while the
time axis has at least 2 steps) and a global max pool. The two feature vectors are
concatenated and classified by FC -> ReLU -> dropout -> FC. Shallow on purpose: the paper
keeps each stream small to avoid overfitting the few hundred ME clips.

Global max rather than average pooling: ME motion is local (a few px around one action unit),
and averaging over the whole face dilutes it to the level of flow noise. Average pooling also
trained unstably in eval mode (BatchNorm running statistics lag the fast-moving weights and
the tiny class signal left after averaging is lost).
"""

from __future__ import annotations

import torch
from torch import nn

from mekit.models.layers import conv_bn_act, mlp_head
from mekit.models.registry import UV_STRAIN, register_model, uv_strain_spec

STREAM_WIDTHS: tuple[int, ...] = (16, 32, 64)
HIDDEN = 128  # the classifier's hidden layer


def temporal_stream(in_channels: int, frames: int, widths: tuple[int, ...]) -> nn.Sequential:
    """Shallow 3D-CNN: (B, in_channels, frames, H, W) -> (B, widths[-1]) max-pooled features."""
    layers: list[nn.Module] = []
    t = frames
    for i, width in enumerate(widths):
        kt = 2 if i > 0 and t >= 2 else 1
        t //= kt
        layers += [*conv_bn_act(in_channels, width, 3, dims=3), nn.MaxPool3d((kt, 2, 2))]
        in_channels = width
    layers += [nn.AdaptiveMaxPool3d(1), nn.Flatten(1)]
    return nn.Sequential(*layers)


class DTSCNN(nn.Module):
    """(B, 3, frames, H, W) u/v/strain flow sequence -> (B, num_classes) logits."""

    def __init__(
        self,
        num_classes: int,
        frames: int = 10,
        widths: tuple[int, ...] = STREAM_WIDTHS,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.stream_full = temporal_stream(len(UV_STRAIN), frames, widths)
        self.stream_half = temporal_stream(len(UV_STRAIN), (frames + 1) // 2, widths)
        self.classifier = nn.Sequential(*mlp_head(2 * widths[-1], (HIDDEN,), num_classes, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stream_full(x), self.stream_half(x[:, :, ::2])]
        return self.classifier(torch.cat(features, dim=1))


@register_model(
    uv_strain_spec(
        "dtscnn",
        size=48,
        frames=10,
        description="DTSCNN (Peng et al. 2017): two shallow 3D-CNN streams on 10 48x48 "
        "u/v/strain flows at full and half temporal rate",
        channels_last=True,  # NDHWC: 1.41x per step on one CPU thread
    )
)
def dtscnn(num_classes: int, dropout: float = 0.5) -> nn.Module:
    """DTSCNN on (B, 3, 10, 48, 48) u/v/strain flow sequences."""
    return DTSCNN(num_classes, frames=10, dropout=dropout)
