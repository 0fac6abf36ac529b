"""Off-ApexNet (Gan et al., Signal Processing: Image Communication 2019).

Input: (B, 2, 28, 28) onset-apex optical flow, channel 0 = u (horizontal, px), channel 1 = v
(vertical, px). Each flow component has its own stream of two conv + max-pool stages
(conv 5x5 -> 6 maps, pool 2; conv 5x5 -> 16 maps, pool 2; 'same' padding, ReLU), so a stream
never sees the other component. The two 16 x 7 x 7 maps are flattened, concatenated
(1568 features) and classified by FC 1024 -> FC 1024 -> dropout -> FC num_classes.
About 2.66M parameters for 3 classes, almost all in the first FC layer.

`off_apexnet_strain` adds a third stream of the same shape for optical strain (input
(B, 3, 28, 28) u, v, strain, the third flow channel STSTNet reads): its 16 x 7 x 7 maps join
the other two (2352 features), about 3.47M parameters.
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
    """(B, 2, size, size) u/v flow -> (B, num_classes) logits; with `strain`, (B, 3, size, size)
    u/v/strain, the third channel through a stream of its own."""

    def __init__(
        self,
        num_classes: int,
        hidden: int = 1024,
        dropout: float = 0.5,
        size: int = 28,
        strain: bool = False,
    ) -> None:
        super().__init__()
        self.stream_u = flow_stream()
        self.stream_v = flow_stream()
        self.stream_strain = flow_stream() if strain else None
        side = size // 4
        streams = 3 if strain else 2
        self.classifier = nn.Sequential(
            *mlp_head(streams * 16 * side * side, (hidden, hidden), num_classes, dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [self.stream_u(x[:, 0:1]), self.stream_v(x[:, 1:2])]
        if self.stream_strain is not None:
            maps.append(self.stream_strain(x[:, 2:3]))
        return self.classifier(torch.cat([torch.flatten(m, 1) for m in maps], dim=1))


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


STRAIN_SPEC = ModelSpec(
    name="off_apexnet_strain",
    input_kind="flow",
    channels=3,
    size=28,
    channel_names=("u", "v", "strain"),
    description="Off-ApexNet with a third stream for optical strain: separate 2-conv streams on "
    "28x28 onset-apex u, v and strain, FC 1024-1024; ~3.47M parameters",
    features="onset_apex",
)


@register_model(STRAIN_SPEC)
def off_apexnet_strain(num_classes: int, dropout: float = 0.5) -> nn.Module:
    """Off-ApexNet on (B, 3, 28, 28) u/v/strain flow, one stream per channel."""
    return OffApexNet(num_classes, dropout=dropout, strain=True)
