"""Off-ApexNet (Gan et al., Signal Processing: Image Communication 2019).

Input: (B, 2, 28, 28) onset-apex optical flow, channel 0 = u (horizontal, px), channel 1 = v
(vertical, px). Each flow component has its own stream of two conv + max-pool stages
(conv 5x5 -> 6 maps, pool 2; conv 5x5 -> 16 maps, pool 2; 'same' padding, ReLU), so a stream
never sees the other component. The two 16 x 7 x 7 maps are flattened, concatenated
(1568 features) and classified by FC 1024 -> FC 1024 -> dropout -> FC num_classes.
About 2.66M parameters for 3 classes, almost all in the first FC layer.
"""

from __future__ import annotations

import torch
from torch import nn

from mekit.models.layers import conv_relu, mlp_head
from mekit.models.registry import ModelSpec, register_model


def flow_stream() -> nn.Sequential:
    """One Off-ApexNet stream: (B, 1, H, W) -> (B, 16, H // 4, W // 4)."""
    return nn.Sequential(
        *conv_relu(1, 6, 5, pool=nn.MaxPool2d(2)), *conv_relu(6, 16, 5, pool=nn.MaxPool2d(2))
    )


class OffApexNet(nn.Module):
    """(B, 2, size, size) u/v flow -> (B, num_classes) logits."""

    def __init__(
        self, num_classes: int, hidden: int = 1024, dropout: float = 0.5, size: int = 28
    ) -> None:
        super().__init__()
        self.stream_u = flow_stream()
        self.stream_v = flow_stream()
        side = size // 4
        self.classifier = nn.Sequential(
            *mlp_head(2 * 16 * side * side, (hidden, hidden), num_classes, dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.flatten(self.stream_u(x[:, 0:1]), 1)
        v = torch.flatten(self.stream_v(x[:, 1:2]), 1)
        return self.classifier(torch.cat([u, v], dim=1))


SPEC = ModelSpec(
    name="off_apexnet",
    input_kind="flow",
    channels=2,
    size=28,
    channel_names=("u", "v"),
    description="Off-ApexNet (Gan et al. 2019): separate 2-conv streams on 28x28 "
    "onset-apex u and v, FC 1024-1024; ~2.66M parameters",
    features="onset_apex",
)


@register_model(SPEC)
def off_apexnet(num_classes: int, dropout: float = 0.5) -> nn.Module:
    """Off-ApexNet on (B, 2, 28, 28) u/v flow."""
    return OffApexNet(num_classes, dropout=dropout)
