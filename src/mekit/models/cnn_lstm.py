"""CNN + improved LSTM feature fusion for micro-expression clips (METHODS.md, seed 004).

Input: (B, 3, 19, 96, 96), the 19 flow images of a clip normalised to 20 frames, channels
dx, dy (pixels, frame t -> t+1) and magnitude sqrt(dx^2 + dy^2).

- Spatial: an AlexNet-style CNN (5 convs, 3 max-pools, FC6, FC7) runs on every flow image;
  the frames are folded into the batch as (B*T, C, H, W), batch-major. Scaled down for 96 px:
  conv1 5x5 stride 2 (AlexNet: 11x11 stride 4 on 224 px), widths 16/48/64/64/48 (AlexNet:
  96/256/384/384/256), FC6 = FC7 = 256 with dropout. Where AlexNet has local response
  normalisation after ReLU (and pool), a per-channel GroupNorm (each flow image's feature maps
  scaled per sample, as ME pipelines normalise each flow image) keeps every layer's input
  zero-mean; FC6 and FC7 get a LayerNorm after their ReLU for the same reason. Positive,
  un-normalised inputs let Adam's first large steps shift all units of the next layer at once
  (dead ReLUs, features that no longer depend on the input); batch statistics would make a
  clip's output depend on its batch-mates (the B*T frames of a batch come from few clips).
  The spatial feature of a clip is the time-mean of the per-frame FC7 outputs.
- Temporal: the paper calls its LSTM "improved" but its figure is not in the text, so mekit
  implements the classic improvement, peephole connections (Gers & Schmidhuber 2000: the input
  and forget gates see c_{t-1}, the output gate sees c_t), with the forget-gate bias
  initialised to 1 (Jozefowicz et al. 2015). It runs over the per-frame FC7 features; its last
  hidden state is the temporal feature.
- Fusion: a trainable fully connected layer after FC7 takes [spatial; temporal] (the paper's
  best placement: after FC7, trained), then the output layer, so FC6, FC7, fusion and output
  are the paper's "4 FC". `trainable_fusion=False` freezes the fusion layer at its random
  initialisation (the paper's "non-trained" ablation, 5 points worse).

Ablations `cnn_lstm_spatial` and `cnn_lstm_temporal` feed the fusion layer only one of the two
features (paper: fused 60.2 %, temporal-only 43.1 %, spatial-only 42.9 % on CASME II).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mekit.errors import MekitError
from mekit.models.layers import conv_relu, dense_relu, per_frame
from mekit.models.registry import ModelSpec, register_model

Streams = Literal["fused", "spatial", "temporal"]
# AlexNet's conv widths and FC6/FC7 size scaled down for 96 px; the LSTM's hidden size; the
# fusion layer's width; the input side (px).
CONV_WIDTHS: tuple[int, int, int, int, int] = (16, 48, 64, 64, 48)
FC_DIM, LSTM_HIDDEN, FUSION_DIM, SIZE = 256, 128, 256, 96


class FlowAlexNet(nn.Module):
    """AlexNet-style per-image CNN: (N, C, size, size) -> FC7 features (N, fc_dim).

    conv1 5x5/2, pool, conv2 5x5, pool, conv3-5 3x3, pool (3x3, stride 2), FC6, FC7. Each conv
    is followed by ReLU, its pool if any, then a per-channel GroupNorm (where AlexNet has LRN);
    FC6 and FC7 by ReLU, LayerNorm and dropout.
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: tuple[int, ...] = CONV_WIDTHS,
        fc_dim: int = FC_DIM,
        dropout: float = 0.5,
        size: int = SIZE,
    ) -> None:
        super().__init__()
        if len(widths) != 5:
            raise MekitError(f"FlowAlexNet needs 5 conv widths, got {tuple(widths)}")
        w1, w2, w3, w4, w5 = widths

        def conv(
            cin: int, cout: int, k: int, stride: int = 1, pool: bool = False
        ) -> list[nn.Module]:
            maxpool = nn.MaxPool2d(kernel_size=3, stride=2) if pool else None
            return conv_relu(cin, cout, k, stride, maxpool, group_norm=True)

        self.features = nn.Sequential(
            *conv(in_channels, w1, 5, stride=2, pool=True),
            *conv(w1, w2, 5, pool=True),
            *conv(w2, w3, 3),
            *conv(w3, w4, 3),
            *conv(w4, w5, 3, pool=True),
        )
        side = (size + 1) // 2  # conv1, stride 2, padding 2
        for _ in range(3):
            side = (side - 3) // 2 + 1
        if side < 1:
            raise MekitError(f"FlowAlexNet needs images of at least 16 px, got {size}")
        self.fc6 = _fc(w5 * side * side, fc_dim, dropout)
        self.fc7 = _fc(fc_dim, fc_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc7(self.fc6(torch.flatten(self.features(x), 1)))


def _fc(in_features: int, out_features: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, out_features),
        nn.ReLU(inplace=False),
        nn.LayerNorm(out_features),
        nn.Dropout(dropout),
    )


class PeepholeLSTM(nn.Module):
    """One-layer LSTM with peephole connections: (B, T, input_size) -> (B, T, H), (B, H).

    i = s(W_i x + U_i h + p_i * c_prev + b_i), f = s(W_f x + U_f h + p_f * c_prev + b_f),
    c = f * c_prev + i * tanh(W_g x + U_g h + b_g), o = s(W_o x + U_o h + p_o * c + b_o),
    h = o * tanh(c). Returns all hidden states and the last one.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.input_map = nn.Linear(input_size, 4 * hidden_size)
        self.hidden_map = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.peephole = nn.Parameter(torch.zeros(3, hidden_size))  # input, forget, output
        with torch.no_grad():
            self.input_map.bias[hidden_size : 2 * hidden_size].fill_(1.0)  # forget gate

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        h = x.new_zeros(b, self.hidden_size)
        c = x.new_zeros(b, self.hidden_size)
        projected = self.input_map(x)  # all time steps at once
        p_in, p_forget, p_out = self.peephole
        outputs = []
        for step in range(t):
            gi, gf, gg, go = (projected[:, step] + self.hidden_map(h)).chunk(4, dim=1)
            i = torch.sigmoid(gi + p_in * c)
            f = torch.sigmoid(gf + p_forget * c)
            c = f * c + i * torch.tanh(gg)
            h = torch.sigmoid(go + p_out * c) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h


class CNNLSTMFusion(nn.Module):
    """(B, 3, T, 96, 96) dx/dy/magnitude flow sequences -> (B, num_classes) logits.

    `streams` picks what the fusion layer sees: "fused" = [FC7 time-mean; LSTM last state],
    "spatial" = FC7 time-mean only (no LSTM is built), "temporal" = LSTM last state only.
    """

    def __init__(
        self,
        num_classes: int,
        streams: Streams = "fused",
        dropout: float = 0.5,
        trainable_fusion: bool = True,
    ) -> None:
        super().__init__()
        if streams not in ("fused", "spatial", "temporal"):
            raise MekitError(f"streams must be 'fused', 'spatial' or 'temporal', got {streams!r}")
        self.streams = streams
        self.cnn = FlowAlexNet(3, CONV_WIDTHS, FC_DIM, dropout, SIZE)  # dx, dy, magnitude
        self.lstm = PeepholeLSTM(FC_DIM, LSTM_HIDDEN) if streams != "spatial" else None
        fusion_in = (FC_DIM if streams != "temporal" else 0) + (
            LSTM_HIDDEN if streams != "spatial" else 0
        )
        self.fusion = dense_relu(fusion_in, FUSION_DIM, dropout)
        self.fusion.requires_grad_(trainable_fusion)
        self.classifier = nn.Linear(FUSION_DIM, num_classes)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> per-frame FC7 features (B, T, FC_DIM)."""
        return per_frame(self.cnn, x)

    def fusion_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> what the fusion layer sees: [FC7 time-mean; LSTM last state]."""
        per_frame = self.frame_features(x)
        parts = []
        if self.streams != "temporal":
            parts.append(per_frame.mean(dim=1))
        if self.lstm is not None:
            parts.append(self.lstm(per_frame)[1])
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fusion(self.fusion_input(x)))


SPEC = ModelSpec(
    name="cnn_lstm_fusion",
    input_kind="flow_sequence",
    channels=3,
    size=SIZE,
    frames=19,
    channel_names=("dx", "dy", "magnitude"),
    features="flow_clip",  # dx, dy, magnitude of the whole clip, not keyframe u, v, strain
    description="CNN + improved LSTM fusion (seed 004): AlexNet-style CNN on 19 96x96 "
    "dx/dy/magnitude flow images, peephole LSTM over the per-frame FC7 features, trainable "
    "fusion after FC7",
    channels_last=True,  # 1.19-1.21x per step on one CPU thread, its ablations 1.15-1.17x
)


@register_model(SPEC)
def cnn_lstm_fusion(
    num_classes: int, dropout: float = 0.5, trainable_fusion: bool = True
) -> nn.Module:
    """Fused spatial (FC7 time-mean) and temporal (LSTM) features on (B, 3, 19, 96, 96)."""
    return CNNLSTMFusion(num_classes, dropout=dropout, trainable_fusion=trainable_fusion)


def _ablation_spec(streams: Streams, kept: str) -> ModelSpec:
    """The spec of `cnn_lstm_<streams>`, the ablation whose fusion layer sees only `kept`."""
    return SPEC.variant(f"cnn_lstm_{streams}", f"Ablation of cnn_lstm_fusion (seed 004): {kept}")


@register_model(_ablation_spec("spatial", "spatial features (FC7 time-mean) only, no LSTM"))
def cnn_lstm_spatial(num_classes: int, dropout: float = 0.5) -> nn.Module:
    """Spatial-only ablation of cnn_lstm_fusion on (B, 3, 19, 96, 96)."""
    return CNNLSTMFusion(num_classes, streams="spatial", dropout=dropout)


@register_model(_ablation_spec("temporal", "temporal features (LSTM last state) only"))
def cnn_lstm_temporal(num_classes: int, dropout: float = 0.5) -> nn.Module:
    """Temporal-only ablation of cnn_lstm_fusion on (B, 3, 19, 96, 96)."""
    return CNNLSTMFusion(num_classes, streams="temporal", dropout=dropout)
