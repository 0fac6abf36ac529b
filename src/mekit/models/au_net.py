"""AUNet: facial action units (multi-label) from one onset -> apex flow image.

Input: (B, 3, 28, 28) u, v, strain, each channel min-max normalised per sample as the shared
flow images of the MEGC composite are (u, v in [-1, 1], strain in [0, 1]; see
`mekit.motion.normalise.minmax_flow`), so absolute motion does not matter, only its pattern.
Output: (B, len(AU_LABELS)) logits, one independent sigmoid per AU.

Four 3x3 conv -> BatchNorm -> ReLU layers (28 -> 14 -> 7 px by max-pooling) keep where on the
face the motion is; a linear layer over the flattened 7x7 map gives each AU's logit.
110k parameters at width 32 (443 kB as float32); 39k at width 16. `members` > 1 makes an
ensemble in one module (`AUEnsemble`): that many AUNets, trained apart, whose probabilities
are averaged (the packaged model averages two).
"""

from __future__ import annotations

import torch
from torch import nn

from mekit.models.layers import conv_bn_act
from mekit.models.registry import Task, register_model, uv_strain_spec

# The AUs mekit's synthetic generator renders (45 = blink), in output order.
AU_LABELS: tuple[str, ...] = tuple(
    f"AU{a}" for a in (1, 2, 4, 6, 7, 9, 10, 12, 14, 15, 17, 20, 25, 45)
)


class AUNet(nn.Module):
    """(B, 3, 28, 28) normalised flow -> (B, num_classes) AU logits."""

    def __init__(self, num_classes: int, width: int = 24, dropout: float = 0.2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_act(3, width, 3),
            conv_bn_act(width, width, 3),
            nn.MaxPool2d(2),
            conv_bn_act(width, 2 * width, 3),
            nn.MaxPool2d(2),
            conv_bn_act(2 * width, 2 * width, 3),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * width * 7 * 7, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.flatten(self.features(x), 1)))


class AUEnsemble(nn.Module):
    """AUNets over the same input; the logit of the mean of their probabilities."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(0)
        return torch.logit(p, eps=1e-6)


@register_model(
    uv_strain_spec(
        "aunet",
        size=28,
        description="AUNet: action units (multi-label, sigmoid) from 28x28 onset-apex "
        "u/v/strain, min-max normalised per sample; ~110k parameters at width 32",
        task=Task.AU,
    )
)
def aunet(num_classes: int, width: int = 24, dropout: float = 0.2, members: int = 1) -> nn.Module:
    """AUNet on (B, 3, 28, 28) normalised u/v/strain; an `AUEnsemble` of `members` of them."""
    if members == 1:
        return AUNet(num_classes, width=width, dropout=dropout)
    return AUEnsemble([AUNet(num_classes, width, dropout) for _ in range(members)])
