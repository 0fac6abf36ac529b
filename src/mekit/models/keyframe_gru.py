"""Keyframe mining + GRU, end-to-end from raw frames (METHODS.md, seed 001 (e)).

Input: (B, 1, 16, 64, 64) aligned grey face frames in [0, 1]; no optical flow.

1. Per-frame CNN: four 3x3 conv / ReLU / 2x2 max-pool / per-channel GroupNorm stages
   (64 -> 4 px), flattened into a linear layer: one feature vector per frame. The frames are
   folded into the batch as (B*T, C, H, W), batch-major. GroupNorm rather than BatchNorm: the
   B*T frames of a batch come from a few near-identical clips, so batch statistics would make
   a clip's output depend on its batch-mates and differ between training and evaluation.
2. Local self-attention: single-head scaled dot-product attention in which frame t attends only
   to frames t-w..t+w, added back residually and layer-normalised.
3. Global comparison: each frame's attended feature minus the clip mean, scored by a small MLP:
   one informativeness score per frame (a frame that moves away from the clip's average face
   carries the expression).
4. Sparse selection: the n top-scoring frames, kept in temporal order. The hard top-n choice
   has no gradient, so the selected features are multiplied by sigmoid(score): the scorer
   learns through the frames it picks.
5. A GRU over the n selected frames; its last hidden state goes to the classifier.

After each forward, `selected_indices_` (B, n) and `frame_scores_` (B, T) hold the choice that
was made (detached), for explanations.
"""

from __future__ import annotations

import torch
from torch import nn

from mekit.errors import MekitError
from mekit.models.layers import image_encoder, per_frame
from mekit.models.registry import ModelSpec, register_model

# The per-frame CNN's conv widths and feature size, the GRU's hidden size, the input side (px).
ENCODER_WIDTHS: tuple[int, ...] = (16, 32, 64, 64)
FEATURE_DIM, GRU_HIDDEN, SIZE = 64, 64, 64


class LocalSelfAttention(nn.Module):
    """(B, T, D) -> (B, T, D): each frame attends to the frames within +-`window` of it."""

    def __init__(self, dim: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, d = x.shape[1], x.shape[2]
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        logits = q @ k.transpose(1, 2) / d**0.5  # (B, T, T)
        steps = torch.arange(t, device=x.device)
        outside = (steps[:, None] - steps[None, :]).abs() > self.window
        attention = logits.masked_fill(outside, float("-inf")).softmax(dim=-1)
        return self.norm(x + self.out(attention @ v))


class KeyframeGRU(nn.Module):
    """(B, 1, T, 64, 64) grey frames -> (B, num_classes) logits via n selected keyframes."""

    def __init__(
        self, num_classes: int, num_selected: int = 6, window: int = 2, dropout: float = 0.3
    ) -> None:
        super().__init__()
        if num_selected < 1:
            raise MekitError(f"num_selected must be at least 1, got {num_selected}")
        if window < 0:
            raise MekitError(f"window must be >= 0 frames, got {window}")
        self.num_selected = num_selected
        self.encoder = image_encoder(1, ENCODER_WIDTHS, FEATURE_DIM, SIZE)  # grey frames
        self.attention = LocalSelfAttention(FEATURE_DIM, window)
        self.scorer = nn.Sequential(
            nn.Linear(FEATURE_DIM, FEATURE_DIM // 2), nn.Tanh(), nn.Linear(FEATURE_DIM // 2, 1)
        )
        self.gru = nn.GRU(FEATURE_DIM, GRU_HIDDEN, batch_first=True)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(GRU_HIDDEN, num_classes))
        self.selected_indices_: torch.Tensor | None = None
        self.frame_scores_: torch.Tensor | None = None

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, H, W) -> locally attended per-frame features (B, T, FEATURE_DIM)."""
        return self.attention(per_frame(self.encoder, x))

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> informativeness (B, T): the MLP on each frame minus the clip mean."""
        return self.scorer(features - features.mean(dim=1, keepdim=True)).squeeze(-1)

    def select(
        self, features: torch.Tensor, scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-n frames in temporal order: (indices (B, n), features * sigmoid(score) (B, n, D))."""
        if self.num_selected > scores.shape[1]:
            raise MekitError(
                f"cannot select {self.num_selected} keyframes from {scores.shape[1]} frames; "
                "lower num_selected"
            )
        indices = scores.topk(self.num_selected, dim=1).indices.sort(dim=1).values
        gate = torch.sigmoid(scores.gather(1, indices)).unsqueeze(-1)
        picked = features.gather(1, indices.unsqueeze(-1).expand(-1, -1, features.shape[-1]))
        return indices, picked * gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.frame_features(x)
        scores = self.score(features)
        indices, selected = self.select(features, scores)
        self.selected_indices_, self.frame_scores_ = indices.detach(), scores.detach()
        _, last = self.gru(selected)
        return self.classifier(last[-1])


@register_model(
    ModelSpec(
        name="keyframe_gru",
        input_kind="frames",
        channels=1,
        size=SIZE,
        frames=16,
        channel_names=("grey",),
        description="Keyframe mining (seed 001 e): per-frame CNN, local self-attention (+-2), "
        "global comparison scores, top-6 frames in temporal order, GRU; raw 64x64 grey frames",
        features="frames",
        channels_last=True,  # 1.46-1.48x per step on one CPU thread
    )
)
def keyframe_gru(
    num_classes: int, num_selected: int = 6, window: int = 2, dropout: float = 0.3
) -> nn.Module:
    """Keyframe-mining GRU on (B, 1, 16, 64, 64) grey frames in [0, 1]."""
    return KeyframeGRU(num_classes, num_selected=num_selected, window=window, dropout=dropout)
