"""Training-time augmentation on batches of model input.

Every random draw comes from a CPU `torch.Generator` (the same draws whatever the device);
the batch itself may live on any device, and is transformed there."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F


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


def flip_draws(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) uniforms in [0, 1): sample i is mirrored where its draw is below 0.5."""
    return torch.rand(n, generator=generator)


def hflip_where(x: torch.Tensor, draws: torch.Tensor, u_channel: int | None) -> torch.Tensor:
    """Mirror (`hflip`) the samples whose `flip_draws` are below 0.5."""
    mask = (draws < 0.5).to(x.device).reshape(-1, *([1] * (x.dim() - 1)))
    return torch.where(mask, hflip(x, u_channel), x)


def random_hflip(
    x: torch.Tensor, u_channel: int | None, generator: torch.Generator
) -> torch.Tensor:
    """Mirror each sample with probability 0.5, drawing from `generator` (reproducible)."""
    return hflip_where(x, flip_draws(x.shape[0], generator), u_channel)


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ...) broadcasting against one channel of x, x[:, c]."""
    return values.reshape(-1, *([1] * (x.dim() - 2)))


def affine(
    x: torch.Tensor,
    angle_deg: torch.Tensor,
    scale: torch.Tensor,
    translate: torch.Tensor,
    flow_channels: tuple[int, int] | None = None,
    magnitude_channels: tuple[int, ...] = (),
) -> torch.Tensor:
    """Rotate, zoom and shift each sample about the image centre (bilinear, border padding).

    x: (B, C, H, W) or (B, C, T, H, W); every frame of a temporal sample gets the same
    transform. Per sample: `angle_deg` (B,), `scale` (B,) and `translate` (B, 2) in pixels
    (x right, y down). A point p (pixels from the centre, x right, y down) moves to
    scale * R(angle) p + translate with R = [[cos, -sin], [sin, cos]]; on screen (y down) a
    positive angle turns the content clockwise, e.g. 90 deg carries a point right of the centre
    to below it.

    Flow: the channels `flow_channels` = (u, v) hold displacement vectors (u right, v down).
    They are resampled like the image and each vector is then rotated and scaled with the same
    transform, so the flow still describes the motion of the transformed image (a constant
    rightward flow rotated by 90 deg points down). `magnitude_channels` (e.g. flow magnitude)
    scale with the zoom; other channels (grey, strain) are only resampled.
    """
    if x.dim() not in (4, 5):
        raise ValueError(f"affine takes (B, C, H, W) or (B, C, T, H, W), got {tuple(x.shape)}")
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    rad = torch.deg2rad(angle_deg.to(torch.float64))
    cos, sin = torch.cos(rad), torch.sin(rad)
    s = scale.to(torch.float64)
    t = translate.to(torch.float64)
    # Output pixel q samples input pixel R^T (q - t) / s. With align_corners=False a centred
    # pixel coordinate p has normalised coordinate D p, D = diag(2 / W, 2 / H).
    dx, dy = 2.0 / w, 2.0 / h
    a = torch.empty(b, 2, 2, dtype=torch.float64)
    a[:, 0, 0] = cos / s
    a[:, 0, 1] = sin * dx / (dy * s)
    a[:, 1, 0] = -sin * dy / (dx * s)
    a[:, 1, 1] = cos / s
    shift = torch.stack([t[:, 0] * dx, t[:, 1] * dy], dim=1)
    theta = torch.cat([a, -(a @ shift[:, :, None])], dim=2).to(x.device, x.dtype)

    flat = x.reshape(b, -1, h, w)  # (B, C * T, H, W): one grid for all channels and frames
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = out.reshape(x.shape)

    if flow_channels is not None:
        iu, iv = flow_channels
        c, sn, k = (_per_sample(v.to(x.device, x.dtype), x) for v in (cos, sin, s))
        u, v = out[:, iu].clone(), out[:, iv].clone()
        out[:, iu] = k * (c * u - sn * v)
        out[:, iv] = k * (sn * u + c * v)
    for i in magnitude_channels:
        out[:, i] = out[:, i] * _per_sample(s.to(x.device, x.dtype), x)
    return out


def affine_draws(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 4) uniforms in [-1, 1) (float64): each sample's angle, zoom and x and y shift as
    fractions of their ranges. Always 4 per sample, whatever the ranges."""
    return torch.rand(n, 4, generator=generator, dtype=torch.float64) * 2.0 - 1.0


def affine_from_draws(
    x: torch.Tensor,
    draws: torch.Tensor,
    max_rotation_deg: float = 0.0,
    max_scale: float = 0.0,
    max_translate: float = 0.0,
    flow_channels: tuple[int, int] | None = None,
    magnitude_channels: tuple[int, ...] = (),
) -> torch.Tensor:
    """`affine` with each sample's transform read from its `affine_draws` (see
    `random_affine`)."""
    if max_rotation_deg < 0 or not 0 <= max_scale < 1 or max_translate < 0:
        raise ValueError(
            f"random_affine wants max_rotation_deg >= 0, 0 <= max_scale < 1, max_translate >= 0;"
            f" got {max_rotation_deg}, {max_scale}, {max_translate}"
        )
    h, w = x.shape[-2], x.shape[-1]
    angle = draws[:, 0] * max_rotation_deg
    scale = 1.0 + draws[:, 1] * max_scale
    translate = torch.stack(
        [draws[:, 2] * max_translate * w, draws[:, 3] * max_translate * h], dim=1
    )
    return affine(x, angle, scale, translate, flow_channels, magnitude_channels)


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    max_rotation_deg: float = 0.0,
    max_scale: float = 0.0,
    max_translate: float = 0.0,
    flow_channels: tuple[int, int] | None = None,
    magnitude_channels: tuple[int, ...] = (),
) -> torch.Tensor:
    """A small random similarity transform per sample (see `affine`), drawn from `generator`.

    Per sample, uniformly: angle in [-max_rotation_deg, max_rotation_deg] degrees, zoom in
    [1 - max_scale, 1 + max_scale], shift in [-max_translate, max_translate] times the width
    (x) and height (y). Always draws 4 numbers per sample, so the generator advances the same
    way whatever the ranges. The input is left unchanged.
    """
    ranges = (max_rotation_deg, max_scale, max_translate)
    draws = affine_draws(x.shape[0], generator)
    return affine_from_draws(x, draws, *ranges, flow_channels, magnitude_channels)


def jitter_draws(n: int, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """(n,) frame shifts, uniform in [-max_shift, max_shift]."""
    return torch.randint(-max_shift, max_shift + 1, (n,), generator=generator)


def shift_frames(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Frame t of sample i of the result is frame clamp(t + shift[i], 0, T - 1) of x
    (B, C, T, H, W)."""
    b, _, frames = x.shape[:3]
    shift = shift.to(x.device)
    index = (torch.arange(frames, device=x.device)[None, :] + shift[:, None]).clamp(0, frames - 1)
    rows = torch.arange(b, device=x.device)[:, None]
    # advanced indexing on dims 0 and 2 -> (B, T, C, H, W)
    return x[rows, :, index].permute(0, 2, 1, 3, 4).contiguous()


def temporal_jitter(x: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Shift each sample's frame window by k frames, k uniform in [-max_shift, max_shift].

    x: (B, C, T, H, W); frame t of the result is frame clamp(t + k, 0, T - 1) of the input, so
    the edge frame is repeated where the window runs off the clip. (B, C, H, W) input, which
    has no time axis, and max_shift = 0 are returned unchanged without drawing from
    `generator`.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if x.dim() != 5 or max_shift == 0:
        return x
    return shift_frames(x, jitter_draws(x.shape[0], generator, max_shift))


# Random erasing's ranges (Zhong et al., "Random Erasing Data Augmentation", AAAI 2020):
# the rectangle covers 2-40 % of the image, with aspect ratio (height / width) 0.3 to 1 / 0.3.
ERASE_AREA = (0.02, 0.4)
ERASE_ASPECT = (0.3, 1 / 0.3)


def erase_draws(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 5) uniforms in [0, 1) (float64): each sample's rectangle area, aspect, top, left and
    whether it is erased. Always 5 per sample, whatever the probability."""
    return torch.rand(n, 5, generator=generator, dtype=torch.float64)


def erase_from_draws(x: torch.Tensor, draws: torch.Tensor, p: float) -> torch.Tensor:
    """`random_erase` with each sample's rectangle read from its `erase_draws`."""
    if not 0 <= p <= 1:
        raise ValueError(f"random_erase wants 0 <= p <= 1, got {p}")
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    r = draws
    area = (ERASE_AREA[0] + r[:, 0] * (ERASE_AREA[1] - ERASE_AREA[0])) * h * w
    low, high = torch.log(torch.tensor(ERASE_ASPECT, dtype=torch.float64))
    aspect = torch.exp(low + r[:, 1] * (high - low))
    eh = torch.sqrt(area * aspect).round().clamp(1, h).long()
    ew = torch.sqrt(area / aspect).round().clamp(1, w).long()
    top = (r[:, 2] * (h - eh + 1)).floor().long()
    left = (r[:, 3] * (w - ew + 1)).floor().long()
    chosen = r[:, 4] < p
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # (B, H)
    inside_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # (B, W)
    mask = inside_rows[:, :, None] & inside_cols[:, None, :] & chosen[:, None, None]
    mask = mask.reshape(b, *([1] * (x.dim() - 3)), h, w)
    return x.masked_fill(mask.to(x.device), 0.0)


def random_erase(x: torch.Tensor, generator: torch.Generator, p: float) -> torch.Tensor:
    """With probability `p` per sample, set one random rectangle of it to 0 in every channel
    (and every frame of a temporal sample): for flow, and for input normalised per sample by
    "median" or "standardize", 0 reads as "no motion", as if that region had not moved.

    x: (B, C, H, W) or (B, C, T, H, W). Area and aspect ratio as `ERASE_AREA`, `ERASE_ASPECT`
    (log-uniform aspect), position uniform within the image. Always draws 5 numbers per
    sample, so the generator advances the same way whatever `p`. The input is left unchanged.
    """
    return erase_from_draws(x, erase_draws(x.shape[0], generator), p)


def mixup_draws(n: int, generator: torch.Generator, alpha: float) -> tuple[float, torch.Tensor]:
    """One batch's mixup draws: lam ~ Beta(alpha, alpha) and the pairing (a permutation of n).
    torch has no seeded Beta sampler, so lam is drawn by numpy from a seed taken from
    `generator`."""
    if not alpha > 0:
        raise ValueError(f"mixup wants alpha > 0, got {alpha}")
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    return lam, torch.randperm(n, generator=generator)


def mixup(
    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al. 2018) of one batch: each sample i becomes lam * x[i] + (1 - lam) *
    x[j] for a random pairing j (a permutation of the batch) and one lam ~ Beta(alpha, alpha)
    for the batch. Returns (mixed x, y[j], lam); the loss is then lam * loss(y) + (1 - lam) *
    loss(y[j]). Flow is additive, so a mix of two flows is the superposition of two motions.

    Every draw comes from `generator` (`mixup_draws`): the same generator state gives the same
    mix. The inputs are left unchanged.
    """
    lam, pair = mixup_draws(x.shape[0], generator, alpha)
    return lam * x + (1.0 - lam) * x[pair], y[pair], lam


def mixup_loss(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    logits: torch.Tensor,
    y: torch.Tensor,
    y_other: torch.Tensor,
    lam: float | torch.Tensor,
) -> torch.Tensor:
    """The loss of a batch `mixup` made: lam * loss(logits, y) + (1 - lam) * loss(logits,
    y_other), with `y_other` and `lam` as `mixup` returned them."""
    return lam * loss(logits, y) + (1.0 - lam) * loss(logits, y_other)
