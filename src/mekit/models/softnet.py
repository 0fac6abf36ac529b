"""SOFTNet: Shallow Optical Flow Three-stream CNN for expression spotting (Liong et al., 2021).

"Shallow optical flow three-stream CNN for macro- and micro-expression spotting from long
videos" (ICIP 2021). Each frame t of a long video is described by the optical flow between
frames t and t + k of the aligned face, as a (3, 42, 42) image with channels |u|, |v| and optical
strain; the network regresses a spotting score per frame (trained on pseudo-labels: 1 where the
window t..t+k overlaps an expression, 0 elsewhere, with a mean squared error loss). The spotting
itself (score smoothing, threshold, peaks -> intervals) lives in `mekit.spot.learned.spotter`, its
input (the flow windows) in `mekit.spot.learned.windows`.

Architecture, as in the authors' Keras code (SoftNet-SpotME, `training.py`): one stream per
input channel (stream i sees channel i only), a 'same'-padded convolution with 3, 5 and 8
filters (5 x 5 kernels in the authors' code; `kernel_size`) and ReLU, a 3 x 3 max-pool of
stride 3 (42 -> 14 px); the 16 maps are concatenated, max-pooled 2 x 2 (14 -> 7), flattened
(16 x 7 x 7 = 784), then Dense(400, ReLU) and Dense(1, linear). About 315k parameters, almost
all in the first dense layer. Weights are initialised like Keras' defaults (Glorot-uniform
kernels, zero biases).

Input scaling travels with the model (`normalize`, applied first by `forward`, or alone by
`prepare`): "minmax" scales each channel of each sample to [0, 1], as the authors' data
generator does before training and prediction alike (it keeps the pattern, drops the size of
the motion); "scale" divides each channel by a constant fitted on training data (`fit_scale`,
kept in the `input_scale` buffer, saved with the weights), which keeps the size of the motion;
"none" passes the flow images through.

Registered with task "spotting": `create_model("softnet")` (no classes: it regresses one
score) or `SoftNet(...)` directly. Its input, features "softnet_windows", comes from
`mekit.spot.learned.windows`, not from the per-sample features of `mekit.motion`.
"""

from __future__ import annotations

import torch
from torch import nn

from mekit.models.layers import conv_relu, mlp_head
from mekit.models.registry import ModelSpec, Task, register_model

STREAM_WIDTHS: tuple[int, ...] = (3, 5, 8)
INPUT_SIZE = 42
CHANNEL_NAMES: tuple[str, ...] = ("|u|", "|v|", "strain")
NORMALIZE: tuple[str, ...] = ("minmax", "scale", "none")


class SoftNet(nn.Module):
    """(B, C, size, size) flow images -> (B,) spotting scores (C = len(stream_widths)).

    size: input side, px (42 in the paper). stream_widths: filters of each stream's convolution;
    stream i reads input channel i. kernel_size: the convolutions' side (odd). hidden: units of
    the dense layer. pool: the streams' max-pool side and stride. normalize: input scaling
    (see the module doc).
    """

    def __init__(
        self,
        size: int = INPUT_SIZE,
        stream_widths: tuple[int, ...] = STREAM_WIDTHS,
        kernel_size: int = 5,
        hidden: int = 400,
        pool: int = 3,
        normalize: str = "minmax",
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        side = (size // pool) // 2
        if side < 1:
            raise ValueError(f"input size {size} is too small for pool {pool} then 2")
        self.size = int(size)
        self.stream_widths = tuple(int(w) for w in stream_widths)
        self.kernel_size = int(kernel_size)
        self.hidden = int(hidden)
        self.pool_size = int(pool)
        self.normalize = normalize
        self.register_buffer("input_scale", torch.ones(len(self.stream_widths)))
        self.streams = nn.ModuleList(
            nn.Sequential(*conv_relu(1, width, kernel_size, pool=nn.MaxPool2d(pool, stride=pool)))
            for width in self.stream_widths
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.head = nn.Sequential(
            nn.Flatten(), *mlp_head(sum(self.stream_widths) * side * side, (hidden,), 1)
        )
        self.reset_parameters()

    @property
    def in_channels(self) -> int:
        return len(self.stream_widths)

    def options(self) -> dict[str, object]:
        """The constructor's arguments (to rebuild the model from a saved file)."""
        return {
            "size": self.size,
            "stream_widths": list(self.stream_widths),
            "kernel_size": self.kernel_size,
            "hidden": self.hidden,
            "pool": self.pool_size,
            "normalize": self.normalize,
        }

    @torch.no_grad()
    def fit_scale(self, x: torch.Tensor, quantile: float = 0.99) -> None:
        """Set `input_scale` (normalize="scale") to each channel's `quantile` of |x| over
        (N, C, H, W) training images (a channel that is all zero keeps scale 1)."""
        flat = x.detach().abs().transpose(0, 1).reshape(x.shape[1], -1).float()
        if flat.shape[1] > 2_000_000:  # a strided subsample is plenty for a quantile
            flat = flat[:, :: flat.shape[1] // 2_000_000 + 1]
        scale = torch.quantile(flat, quantile, dim=1)
        self.input_scale.copy_(torch.where(scale > 0, scale, torch.ones_like(scale)))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The input scaling alone: (B, C, H, W) -> (B, C, H, W)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SoftNet takes (B, {self.in_channels}, H, W) flow images, got {tuple(x.shape)}"
            )
        if self.normalize == "minmax":
            low = x.amin(dim=(2, 3), keepdim=True)
            span = x.amax(dim=(2, 3), keepdim=True) - low
            return (x - low) / torch.where(span > 0, span, torch.ones_like(span))
        if self.normalize == "scale":
            return x / self.input_scale.view(1, -1, 1, 1)
        return x

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The network on already scaled input (see `prepare`): (B, C, H, W) -> (B,)."""
        maps = [stream(x[:, i : i + 1]) for i, stream in enumerate(self.streams)]
        return self.head(self.pool(torch.cat(maps, dim=1))).squeeze(1)

    def reset_parameters(self) -> None:
        """Keras' default initialisation: Glorot-uniform weights, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) raw flow images -> (B,) scores."""
        return self.body(self.prepare(x))


@register_model(
    ModelSpec(
        name="softnet",
        input_kind="flow",
        channels=len(CHANNEL_NAMES),
        size=INPUT_SIZE,
        channel_names=CHANNEL_NAMES,
        description="SOFTNet (Liong et al. 2021) spotter: 3 one-channel streams on 42x42 "
        "|u|/|v|/strain flow windows, one score per window; ~315k parameters",
        task=Task.SPOTTING,
        features="softnet_windows",
    )
)
def softnet(kernel_size: int = 5, hidden: int = 400, normalize: str = "minmax") -> nn.Module:
    """SOFTNet on (B, 3, 42, 42) |u|/|v|/strain flow windows -> (B,) scores."""
    return SoftNet(kernel_size=kernel_size, hidden=hidden, normalize=normalize)
