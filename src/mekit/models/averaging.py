"""Several networks as one: per-sample input normalisation and averaged class probabilities.

A recipe may train several copies of a network (seeds) and average their probabilities. The
result is one `nn.Module` whose logits are the log of the mean probability, so
`softmax(model(x))` is exactly the members' mean probability and everything that reads a
model's logits (prediction, Grad-CAM, a model file) works unchanged.

`input_norm` is applied to each sample before the members see it, inside the model, so the
same normalisation travels with a model file and runs on mekit's own flow at analysis time:
- "none": the input as given;
- "standardize": each channel of each sample to mean 0, standard deviation 1;
- "median": each channel of each sample minus its median pixel, divided by its standard
  deviation (most of a face does not move, so the median marks "no motion" even in a flow
  image whose zero was moved by min-max scaling);
- "minmax": each channel of each sample to [-1, 1] (what a flow image made by min-max
  scaling per image holds, whatever scale the flow had, read back as `read_flow` reads u and
  v). Centred on the span's middle, so a mirrored sample's u (negated by `hflip`) is exactly
  the normalised mirror image, as for the other modes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from mekit.models.mobilevitv3 import CONFIGS as MOBILEVIT_CONFIGS
from mekit.models.mobilevitv3 import FLOW_SPEC as MOBILEVIT_SPEC
from mekit.models.mobilevitv3 import MobileViTv3
from mekit.models.off_apexnet import SPEC as OFF_APEXNET_SPEC
from mekit.models.off_apexnet import STRAIN_SPEC as OFF_APEXNET_STRAIN_SPEC
from mekit.models.off_apexnet import OffApexNet
from mekit.models.registry import register_model
from mekit.models.ststnet import SPEC as STSTNET_SPEC
from mekit.models.ststnet import STREAM_WIDTHS, STSTNet

INPUT_NORMS: tuple[str, ...] = ("none", "standardize", "median", "minmax")
_EPS = 1e-6


def normalise_per_sample(x: torch.Tensor, mode: str) -> torch.Tensor:
    """`x` (B, C, H, W) with each sample's channels normalised by `mode` (see module doc).

    A constant channel becomes 0 under every mode but "none".
    """
    if mode == "none":
        return x
    if mode not in INPUT_NORMS:
        raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {mode!r}")
    dims = tuple(range(2, x.dim()))
    if mode in ("standardize", "median"):
        std = x.std(dim=dims, keepdim=True, unbiased=False)
        if mode == "standardize":
            centre = x.mean(dim=dims, keepdim=True)
        else:  # the lower median of the flattened pixels, as torch.median gives it
            centre = x.flatten(2).median(dim=2).values.reshape(*x.shape[:2], *[1] * len(dims))
        return (x - centre) / (std + _EPS)
    low = x.amin(dim=dims, keepdim=True)
    span = x.amax(dim=dims, keepdim=True) - low
    return torch.where(span > 0, 2 * (x - low) / span.clamp_min(_EPS) - 1, 0.0)


class ProbabilityAverage(nn.Module):
    """Members (each (B, *input) -> (B, K) logits) -> (B, K) log of their mean probability,
    divided by `temperature` (1: the mean itself; fitted on held-out predictions, it
    calibrates the probabilities without changing which class wins)."""

    def __init__(
        self, members: list[nn.Module], input_norm: str = "none", temperature: float = 1.0
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("ProbabilityAverage needs at least one member")
        if input_norm not in INPUT_NORMS:
            raise ValueError(
                f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {input_norm!r}"
            )
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.members = nn.ModuleList(members)
        self.input_norm = input_norm
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = normalise_per_sample(x, self.input_norm)
        log_probs = torch.stack([torch.log_softmax(m(x), dim=1) for m in self.members])
        mean = torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))
        return mean if self.temperature == 1.0 else mean / self.temperature


def _members(
    make: Callable[[], nn.Module], members: int, input_norm: str, temperature: float
) -> ProbabilityAverage:
    """`members` networks from `make()` (in order, so the same seed gives the same weights)."""
    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    return ProbabilityAverage([make() for _ in range(members)], input_norm, temperature)


@register_model(
    STSTNET_SPEC.variant(
        "ststnet_average",
        "STSTNet x members (seeds), per-sample input normalisation, probabilities averaged "
        "(the composite recipes' model)",
    )
)
def ststnet_average(
    num_classes: int,
    members: int = 1,
    input_norm: str = "none",
    temperature: float = 1.0,
    dropout: float = 0.5,
    stream_widths: tuple[int, ...] = STREAM_WIDTHS,
) -> nn.Module:
    """`members` STSTNets on (B, 3, 28, 28) u/v/strain behind one `input_norm`."""
    return _members(
        lambda: STSTNet(num_classes, dropout=dropout, stream_widths=tuple(stream_widths)),
        members,
        input_norm,
        temperature,
    )


@register_model(
    MOBILEVIT_SPEC.variant(
        "mobilevitv3_xxs_average",
        "MobileViTv3-XXS x members (seeds), per-sample input normalisation, probabilities averaged",
    )
)
def mobilevitv3_xxs_average(
    num_classes: int,
    members: int = 1,
    input_norm: str = "none",
    temperature: float = 1.0,
    dropout: float = 0.1,
) -> nn.Module:
    """`members` MobileViTv3-XXS on (B, 3, 64, 64) u/v/strain behind one `input_norm`."""
    xxs = MOBILEVIT_CONFIGS["xxs"]
    return _members(
        lambda: MobileViTv3(num_classes, xxs, dropout=dropout), members, input_norm, temperature
    )


@register_model(
    OFF_APEXNET_SPEC.variant(
        "off_apexnet_average",
        "Off-ApexNet x members (seeds), per-sample input normalisation, probabilities averaged",
    )
)
def off_apexnet_average(
    num_classes: int,
    members: int = 1,
    input_norm: str = "none",
    temperature: float = 1.0,
    dropout: float = 0.5,
) -> nn.Module:
    """`members` Off-ApexNets on (B, 2, 28, 28) u/v behind one `input_norm`."""
    return _members(
        lambda: OffApexNet(num_classes, dropout=dropout), members, input_norm, temperature
    )


@register_model(
    OFF_APEXNET_STRAIN_SPEC.variant(
        "off_apexnet_strain_average",
        "Off-ApexNet with a strain stream x members (seeds), per-sample input normalisation, "
        "probabilities averaged",
    )
)
def off_apexnet_strain_average(
    num_classes: int,
    members: int = 1,
    input_norm: str = "none",
    temperature: float = 1.0,
    dropout: float = 0.5,
) -> nn.Module:
    """`members` strain-stream Off-ApexNets on (B, 3, 28, 28) u/v/strain behind one
    `input_norm`."""
    return _members(
        lambda: OffApexNet(num_classes, dropout=dropout, strain=True),
        members,
        input_norm,
        temperature,
    )
