"""Training-time augmentation on batches of model input."""

from __future__ import annotations

import torch


def hflip(x: torch.Tensor, is_flow: bool) -> torch.Tensor:
    """Mirror samples left-right: (B, C, H, W) or (B, C, T, H, W), flipping the last axis.

    For flow input (`is_flow`, channel 0 = horizontal flow u) the u component also changes
    sign: a motion to the right becomes a motion to the left in the mirror image. v and
    magnitude-like channels (strain) are unchanged.
    """
    out = torch.flip(x, dims=(-1,))
    if is_flow:
        out[:, 0] = -out[:, 0]
    return out


def random_hflip(x: torch.Tensor, is_flow: bool, generator: torch.Generator) -> torch.Tensor:
    """Mirror each sample with probability 0.5, drawing from `generator` (reproducible)."""
    mask = torch.rand(x.shape[0], generator=generator) < 0.5
    if not bool(mask.any()):
        return x
    out = x.clone()
    out[mask] = hflip(x[mask], is_flow)
    return out
