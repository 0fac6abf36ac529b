"""Training-time augmentation on batches of model input."""

from __future__ import annotations

import torch


def hflip(x: torch.Tensor, u_channel: int | None) -> torch.Tensor:
    """Mirror samples left-right: (B, C, H, W) or (B, C, T, H, W), flipping the last axis.

    Where the input has a horizontal flow channel (`u_channel`, e.g. 0 for (u, v, strain)),
    that component also changes sign: a motion to the right becomes a motion to the left in
    the mirror image. v and magnitude-like channels (strain) are unchanged.
    """
    out = torch.flip(x, dims=(-1,))
    if u_channel is not None:
        out[:, u_channel] = -out[:, u_channel]
    return out


def random_hflip(
    x: torch.Tensor, u_channel: int | None, generator: torch.Generator
) -> torch.Tensor:
    """Mirror each sample with probability 0.5, drawing from `generator` (reproducible)."""
    mask = torch.rand(x.shape[0], generator=generator) < 0.5
    if not bool(mask.any()):
        return x
    out = x.clone()
    out[mask] = hflip(x[mask], u_channel)
    return out
