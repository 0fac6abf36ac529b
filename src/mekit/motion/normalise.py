"""Per-sample min-max normalisation of flow images, as the shared MEGC composite flows are made.

Those flow images (`flow/*.png`) hold u, v and strain each min-max normalised to 0..255 per
image; `mekit.motion.extract.read_flow` reads them back as u, v in [-1, 1] and strain in [0, 1].
A model meant to work on them and on mekit's own flow must see the same thing in training and
at inference: `minmax_flow` maps any (3, H, W) u, v, strain to exactly that (8-bit levels
included), and leaves an image read by `read_flow` unchanged.
"""

from __future__ import annotations

import numpy as np

LEVELS = 255


def minmax_flow(features: np.ndarray) -> np.ndarray:
    """(..., 3, H, W) u, v, strain -> float32 of the same shape: each channel of each sample
    min-max scaled to 0..255 and rounded (as an 8-bit flow image), then u, v to [-1, 1] and
    strain to [0, 1]. A constant channel becomes 0 (u, v) / 0 (strain)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"minmax_flow takes (..., 3, H, W) u, v, strain; got {x.shape}")
    low = x.min(axis=(-2, -1), keepdims=True)
    span = x.max(axis=(-2, -1), keepdims=True) - low
    safe = np.where(span > 0, span, 1.0)
    scaled = np.where(span > 0, np.rint((x - low) / safe * LEVELS) / LEVELS, 0.0)
    out = scaled.astype(np.float32)
    out[..., :2, :, :] = np.where(span[..., :2, :, :] > 0, out[..., :2, :, :] * 2 - 1, 0.0)
    return out
