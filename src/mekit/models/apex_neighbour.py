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

# Conv widths of both stream CNNs, and the feature sizes: apex CNN, flow CNN (per frame), LSTM
# (hidden size, layers), fusion layer.
WIDTHS: tuple[int, ...] = (16, 32, 64, 64)
SIZE = 64  # px, input side
APEX_DIM, FLOW_DIM, LSTM_HIDDEN, LSTM_LAYERS, FUSION_DIM = 128, 64, 64, 2, 128


class ApexNeighbourFusion(nn.Module):
    """(B, 4, T, 64, 64) apex + dx/dy/magnitude flow sequence -> (B, num_classes) logits."""

    def __init__(self, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.apex_cnn = image_encoder(1, WIDTHS, APEX_DIM, SIZE)
        self.flow_cnn = image_encoder(3, WIDTHS, FLOW_DIM, SIZE)  # dx, dy, magnitude
        self.lstm = nn.LSTM(FLOW_DIM, LSTM_HIDDEN, num_layers=LSTM_LAYERS, batch_first=True)
        self.fusion = dense_relu(APEX_DIM + LSTM_HIDDEN, FUSION_DIM, dropout)
        self.classifier = nn.Linear(FUSION_DIM, num_classes)

    def apex_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> apex-stream features (B, APEX_DIM) from x[:, 0, 0] only."""
        return self.apex_cnn(x[:, 0:1, 0])

    def flow_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> the LSTM's top-layer last hidden state (B, LSTM_HIDDEN)."""
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
        size=SIZE,
        frames=8,
        channel_names=("apex", "dx", "dy", "magnitude"),
        description="Apex + neighbour frames (seed 001 d): CNN on the 64x64 apex image, 2-layer "
        "LSTM over CNN features of 8 dx/dy/magnitude flows, fused by concatenation + FC",
        features="apex_flow_clip",
        channels_last=True,  # 1.31x per step on one CPU thread
    )
)
def apex_neighbour_fusion(num_classes: int, dropout: float = 0.5) -> nn.Module:
    """Apex CNN + 2-layer flow LSTM on (B, 4, 8, 64, 64) apex/dx/dy/magnitude."""
    return ApexNeighbourFusion(num_classes, dropout=dropout)
