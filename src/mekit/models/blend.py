"""Networks of different kinds as one model: a weighted average of their class probabilities.

A blend recipe (`mekit.pipeline.blend`) trains parts that differ in architecture and input
size, e.g. STSTNets on 28 px flow and a MobileViTv3 on 64 px flow. `flow_blend` holds them in
one module that takes u/v/strain flow at `BLEND_SIZE` px and gives each part its own size by
area resampling (`resize_flow`), so one model file serves `mekit analyze`, `evaluate` and
`serve`. Its logits are the log of the weighted mean probability, divided by a temperature,
as `mekit.models.averaging.ProbabilityAverage` does for seeds of one network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mekit.errors import MekitError
from mekit.models.registry import (
    create_model,
    get_spec,
    register_model,
    uv_strain_channels,
    uv_strain_spec,
)

BLEND_SIZE = 64  # the input side; every part takes this size or a smaller one
DEFAULT_PARTS: tuple[dict[str, Any], ...] = ({"model": "ststnet"}, {"model": "mobilevitv3_xxs"})


def resize_flow(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size) by area averaging (H = W >= size); unchanged at
    its own size."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="area")


def check_part(model: str) -> tuple[int, tuple[int, ...]]:
    """(input side, indexes of its channels in u/v/strain) of `model`, which a blend can hold:
    a network on one flow image of u/v/strain channels at most `BLEND_SIZE` px. `MekitError`
    naming the model otherwise."""
    spec = get_spec(model)
    channels = uv_strain_channels(spec)
    if channels is None:
        raise MekitError(
            f"a blend holds networks on one u/v/strain flow image; {model} takes "
            f"{spec.input_kind} {spec.channel_names}"
        )
    if spec.size > BLEND_SIZE:
        raise MekitError(f"a blend takes flow at {BLEND_SIZE} px; {model} needs {spec.size} px")
    return spec.size, channels


class Blend(nn.Module):
    """Parts (each (B, c, s, s) -> (B, K) logits) -> (B, K) log of their `weights`-weighted
    mean probability over `temperature`; part i sees the input (B, 3, BLEND_SIZE, BLEND_SIZE)
    u/v/strain resized to its side `sizes[i]`, channels `channels[i]`."""

    def __init__(
        self,
        parts: Sequence[nn.Module],
        sizes: Sequence[int],
        channels: Sequence[Sequence[int]],
        weights: Sequence[float],
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if not parts or not len(parts) == len(sizes) == len(channels) == len(weights):
            raise ValueError("a blend needs a part, and a size, channels and weight per part")
        if min(weights) < 0 or not sum(weights) > 0:
            raise ValueError(f"blend weights must be >= 0 with a positive sum, got {weights}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.parts = nn.ModuleList(parts)
        self.sizes = [int(s) for s in sizes]
        self.channels = [list(c) for c in channels]
        total = float(sum(weights))
        self.weights = [float(w) / total for w in weights]
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        terms = [
            torch.log_softmax(part(resize_flow(x[:, channels], size)), dim=1) + math.log(w)
            for part, size, channels, w in zip(
                self.parts, self.sizes, self.channels, self.weights, strict=True
            )
            if w > 0
        ]
        mixed = torch.logsumexp(torch.stack(terms), dim=0)
        return mixed if self.temperature == 1.0 else mixed / self.temperature


@register_model(
    uv_strain_spec(
        "flow_blend",
        size=BLEND_SIZE,
        description="networks of different kinds on one u/v/strain flow, each at its own size, "
        "probabilities averaged with weights (the blend recipes' model)",
    )
)
def flow_blend(
    num_classes: int,
    parts: Sequence[Mapping[str, Any]] = DEFAULT_PARTS,
    weights: Sequence[float] = (),
    temperature: float = 1.0,
) -> nn.Module:
    """`parts`: one {"model": registered name, "options": {...}} per part (create_model's;
    default STSTNet and MobileViTv3-XXS); `weights`: one per part (default equal)."""
    if not parts:
        raise MekitError("flow_blend needs parts: [{'model': NAME, 'options': {...}}, ...]")
    weights = list(weights) if weights else [1.0] * len(parts)
    if len(weights) != len(parts):
        raise MekitError(f"flow_blend has {len(parts)} parts and {len(weights)} weights")
    inputs = [check_part(str(p["model"])) for p in parts]
    nets = [create_model(str(p["model"]), num_classes, **dict(p.get("options", {}))) for p in parts]
    return Blend(nets, [s for s, _ in inputs], [c for _, c in inputs], weights, temperature)
