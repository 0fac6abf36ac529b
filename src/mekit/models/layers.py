"""Reusable blocks for mekit's models. A leaf: imports torch only, nothing from mekit.

Shapes use B = batch, C = channels, T = time steps, H, W = height and width in pixels. Blocks
that exist in 2D and 3D take `dims` (2: (B, C, H, W), 3: (B, C, T, H, W)). Every builder creates
its layers in the order they run, so a model built from these blocks draws the same initial
weights from torch's RNG as one that spelled the layers out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

Kernel = int | tuple[int, ...]

_CONV: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
_BATCH_NORM: dict[int, type[nn.Module]] = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _same_padding(kernel_size: Kernel) -> Kernel:
    """Padding that keeps the size at stride 1 for an odd kernel, per axis."""
    if isinstance(kernel_size, int):
        return kernel_size // 2
    return tuple(k // 2 for k in kernel_size)


def _check_dims(dims: int) -> None:
    if dims not in _CONV:
        raise ValueError(f"dims must be 2 (images) or 3 (clips), got {dims}")


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


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: Kernel = 1,
    stride: Kernel = 1,
    *,
    groups: int = 1,
    dims: int = 2,
    act: Callable[[], nn.Module] | None = nn.ReLU,
    momentum: float = 0.1,
) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BatchNorm -> `act()` (left out when None).

    (B, C_in, [T,] H, W) -> (B, C_out, [T',] H', W'). The ResNet stem, bottleneck and
    projection-shortcut unit; `act=None` gives the shortcut's conv + BN.
    """
    _check_dims(dims)
    layers = [
        _CONV[dims](
            in_channels,
            out_channels,
            kernel_size,
            stride,
            _same_padding(kernel_size),
            groups=groups,
            bias=False,
        ),
        _BATCH_NORM[dims](out_channels, momentum=momentum),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def conv_relu(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    pool: nn.Module | None = None,
    group_norm: bool = False,
) -> list[nn.Module]:
    """Conv2d ('same' padding, with bias) -> ReLU -> `pool` -> per-channel GroupNorm, the
    last two optional: the AlexNet-style unit of the flow CNNs, as a list to splice into an
    `nn.Sequential`.

    Per-channel GroupNorm stands where AlexNet has local response normalisation: it scales
    each sample's maps on their own, so a clip's output never depends on its batch-mates.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2),
        nn.ReLU(inplace=False),
    ]
    if pool is not None:
        layers.append(pool)
    if group_norm:
        layers.append(nn.GroupNorm(out_channels, out_channels))
    return layers


class ChannelAttention(nn.Module):
    """CBAM channel attention: (B, C, [T,] H, W) -> weights (B, C, 1, [1,] 1) in (0, 1).

    A shared 1x1 -> ReLU -> 1x1 bottleneck on the global max- and average-pooled features,
    summed, then a sigmoid.
    """

    def __init__(self, channels: int, reduction: int = 16, dims: int = 2) -> None:
        super().__init__()
        _check_dims(dims)
        hidden = max(1, channels // reduction)
        conv = _CONV[dims]
        self.mlp = nn.Sequential(
            conv(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=False),
            conv(hidden, channels, 1, bias=False),
        )
        self.pooled = tuple(range(2, 2 + dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(torch.mean(x, dim=self.pooled, keepdim=True))
        mx = self.mlp(torch.amax(x, dim=self.pooled, keepdim=True))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: (B, C, [T,] H, W) -> weights (B, 1, [T,] H, W) in (0, 1).

    A conv of `kernel_size` (an int: k x k, or k x k x k in 3D) over the channel-wise
    [max; mean] maps, then a sigmoid.
    """

    def __init__(self, kernel_size: Kernel = 7, dims: int = 2) -> None:
        super().__init__()
        _check_dims(dims)
        padding = _same_padding(kernel_size)
        self.conv = _CONV[dims](2, 1, kernel_size, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Channel then spatial attention (Woo et al. 2018): (B, C, [T,] H, W) -> same shape."""

    def __init__(
        self, channels: int, reduction: int = 16, kernel_size: Kernel = 7, dims: int = 2
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction, dims)
        self.spatial = SpatialAttention(kernel_size, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        return x * self.spatial(x)


def resnet_stages(
    block: Callable[[int, int, int], nn.Module],
    depths: Sequence[int],
    widths: Sequence[int],
    in_channels: int,
    expansion: int = 1,
) -> tuple[nn.Sequential, int]:
    """ResNet's body: stage i is `depths[i]` blocks of width `widths[i]`, its first block at
    stride 2 (stride 1 in the first stage) and the rest at stride 1.

    `block(in_channels, width, stride)` builds one block with `expansion * width` output
    channels. Returns the stages and the channels they output.
    """
    stages: list[nn.Module] = []
    for i, (blocks, width) in enumerate(zip(depths, widths, strict=True)):
        stage = [block(in_channels, width, 1 if i == 0 else 2)]
        in_channels = width * expansion
        stage += [block(in_channels, width, 1) for _ in range(blocks - 1)]
        stages.append(nn.Sequential(*stage))
    return nn.Sequential(*stages), in_channels


def dense_relu(in_features: int, out_features: int, dropout: float | None = None) -> nn.Sequential:
    """Linear -> ReLU -> Dropout (left out when `dropout` is None): (B, in) -> (B, out).

    The fusion layer of the two-stream models.
    """
    layers: list[nn.Module] = [nn.Linear(in_features, out_features), nn.ReLU(inplace=False)]
    if dropout is not None:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def mlp_head(
    in_features: int, hidden: Sequence[int], out_features: int, dropout: float | None = None
) -> list[nn.Module]:
    """Linear + ReLU per `hidden` width, Dropout (left out when None), then the output Linear:
    (B, in_features) -> (B, out_features), as a list to splice into an `nn.Sequential`."""
    widths = (in_features, *hidden)
    layers: list[nn.Module] = []
    for cin, cout in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(cin, cout), nn.ReLU(inplace=False)]
    if dropout is not None:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(widths[-1], out_features))
    return layers


def per_frame(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`module` ((N, C, H, W) -> (N, D)) on every frame of `x` (B, C, T, H, W) -> (B, T, D).

    The frames are folded into the batch as (B*T, C, H, W), batch-major, so one call runs them
    all.
    """
    b, c, t, h, w = x.shape
    return module(x.transpose(1, 2).reshape(b * t, c, h, w)).reshape(b, t, -1)


def image_encoder(
    in_channels: int, widths: tuple[int, ...], out_features: int, size: int
) -> nn.Sequential:
    """(N, in_channels, size, size) -> (N, out_features).

    Per width: 3x3 conv, ReLU, 2x2 max-pool, per-channel GroupNorm; the final map flattened
    (aligned faces: position says which face region it is) into a linear layer with ReLU.
    """
    layers: list[nn.Module] = []
    for cin, cout in zip((in_channels, *widths[:-1]), widths, strict=True):
        layers += conv_relu(cin, cout, 3, pool=nn.MaxPool2d(2), group_norm=True)
    side = size // 2 ** len(widths)
    if side < 1:
        raise ValueError(
            f"{len(widths)} pooling stages need images of at least {2 ** len(widths)} px"
        )
    layers += [nn.Flatten(), *dense_relu(widths[-1] * side * side, out_features)]
    return nn.Sequential(*layers)
