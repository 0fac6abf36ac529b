"""Apex frame + neighbouring-frame flow fusion (METHODS.md, seed 001 (d)).

Input: (B, 4, T, 64, 64), T = 8, kind "apex_flow_sequence": channel 0 is the apex grey image
repeated over T (only `x[:, 0, 0]` is read), channels 1-3 are the dx, dy (pixels) and
magnitude flows between the T consecutive neighbouring frames around the apex.

- Spatial stream: a CNN (four 3x3 conv / ReLU / 2x2 max-pool / per-channel GroupNorm stages,
  64 -> 4 px, flattened into a linear layer) on the apex image: 128 features.
- Temporal stream: a CNN of the same shape turns each flow image into 64 features (frames
  folded into the batch as (B*T, 3, H, W), batch-major); a 2-layer LSTM runs over them and its
  top layer's last hidden state is the temporal feature. GroupNorm rather than BatchNorm keeps
  a clip's output independent of its batch-mates (the B*T flows of a batch come from few clips).
- Fusion: the two features concatenated, a fully connected layer, then the classifier.

The lecture reports the temporal stream as the one that carries across corpora; the apex
alone loses most of the accuracy. `grad_cam`'s default layer (the last conv) is the flow CNN's;
pass `target_layer` from `model.apex_cnn` for a map of the apex stream.
"""

from __future__ import annotations

import torch
from torch import nn

from mekit.models.layers import dense_relu, image_encoder, per_frame
from mekit.models.registry import ModelSpec, register_model

WIDTHS: tuple[int, ...] = (16, 32, 64, 64)


class ApexNeighbourFusion(nn.Module):
    """(B, 1 + flow_channels, T, H, W) apex + flow sequence -> (B, num_classes) logits."""

    def __init__(
        self,
        num_classes: int,
        flow_channels: int = 3,
        size: int = 64,
        apex_widths: tuple[int, ...] = WIDTHS,
        flow_widths: tuple[int, ...] = WIDTHS,
        apex_dim: int = 128,
        flow_dim: int = 64,
        lstm_hidden: int = 64,
        lstm_layers: int = 2,
        fusion_dim: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.apex_cnn = image_encoder(1, tuple(apex_widths), apex_dim, size)
        self.flow_cnn = image_encoder(flow_channels, tuple(flow_widths), flow_dim, size)
        self.lstm = nn.LSTM(flow_dim, lstm_hidden, num_layers=lstm_layers, batch_first=True)
        self.fusion = dense_relu(apex_dim + lstm_hidden, fusion_dim, dropout)
        self.classifier = nn.Linear(fusion_dim, num_classes)

    def apex_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> apex-stream features (B, apex_dim) from x[:, 0, 0] only."""
        return self.apex_cnn(x[:, 0:1, 0])

    def flow_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> the LSTM's top-layer last hidden state (B, lstm_hidden)."""
        _, (hidden, _) = self.lstm(per_frame(self.flow_cnn, x[:, 1:]))
        return hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = torch.cat([self.apex_features(x), self.flow_features(x)], dim=1)
        return self.classifier(self.fusion(fused))


@register_model(
    ModelSpec(
        name="apex_neighbour_fusion",
        input_kind="apex_flow_sequence",
        channels=4,
        size=64,
        frames=8,
        channel_names=("apex", "dx", "dy", "magnitude"),
        description="Apex + neighbour frames (seed 001 d): CNN on the 64x64 apex image, 2-layer "
        "LSTM over CNN features of 8 dx/dy/magnitude flows, fused by concatenation + FC",
        features="apex_flow_clip",
    )
)
def apex_neighbour_fusion(num_classes: int, dropout: float = 0.5) -> nn.Module:
    """Apex CNN + 2-layer flow LSTM on (B, 4, 8, 64, 64) apex/dx/dy/magnitude."""
    return ApexNeighbourFusion(num_classes, dropout=dropout)
