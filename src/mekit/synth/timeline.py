"""Temporal profiles: expression onset -> apex -> offset, blinks, and head drift tracks.

All functions index frames 0..n-1 within one clip or video and return per-frame arrays.
"""

from __future__ import annotations

import numpy as np


def expression_profile(
    n: int, onset: int, apex: int, offset: int, residual: float = 0.0
) -> np.ndarray:
    """(n,) share of the apex field per frame: 0 before onset, raised-cosine rise to 1 at apex,
    raised-cosine fall to `residual` at offset, `residual` after it."""
    t = np.arange(n, dtype=np.float64)
    out = np.zeros(n)
    rise = (t >= onset) & (t <= apex)
    out[rise] = 0.5 - 0.5 * np.cos(np.pi * (t[rise] - onset) / max(apex - onset, 1))
    fall = (t > apex) & (t <= offset)
    half = 0.5 + 0.5 * np.cos(np.pi * (t[fall] - apex) / max(offset - apex, 1))
    out[fall] = residual + (1 - residual) * half
    out[t > offset] = residual
    out[apex] = 1.0
    return out


def blink_profile(n: int, start: int, length: int, closure: float = 1.0) -> np.ndarray:
    """(n,) lid closure per frame: a fast raised-cosine close (40 %), slower open (60 %).

    The blink covers frames start..start+length-1 and may run past the end of the clip.
    """
    t = np.arange(n, dtype=np.float64) - start
    close = max(1.0, 0.4 * length)
    open_ = max(1.0, length - close)
    out = np.zeros(n)
    rising = (t > 0) & (t <= close)
    out[rising] = 0.5 - 0.5 * np.cos(np.pi * t[rising] / close)
    falling = (t > close) & (t < close + open_)
    out[falling] = 0.5 + 0.5 * np.cos(np.pi * (t[falling] - close) / open_)
    return out * closure


def smooth_track(rng: np.random.Generator, n: int, peak: float, smooth: float) -> np.ndarray:
    """(n,) smooth random walk starting at 0 whose largest |value| is `peak`.

    `smooth`: Gaussian smoothing width in frames (about the time scale of a change).
    """
    if n < 2 or peak <= 0:
        return np.zeros(n)
    pad = int(3 * smooth) + 1
    walk = np.cumsum(rng.standard_normal(n + 2 * pad))
    x = np.arange(-pad, pad + 1)
    kernel = np.exp(-0.5 * (x / max(smooth, 1e-3)) ** 2)
    track = np.convolve(walk, kernel / kernel.sum(), mode="same")[pad : pad + n]
    track -= track[0]
    largest = np.abs(track).max()
    return track * (peak / largest) if largest > 0 else track


def head_track(
    rng: np.random.Generator, n: int, drift_px: float, rotation_deg: float, smooth: float
) -> np.ndarray:
    """(n, 3) head pose per frame: (dx px, dy px, roll deg), starting at 0.

    The translation's largest magnitude is drift_px x U(0.3, 1); the roll's rotation_deg x
    U(0.3, 1).
    """
    angle = rng.uniform(0, 2 * np.pi)
    a = smooth_track(rng, n, drift_px * rng.uniform(0.3, 1.0), smooth)
    b = smooth_track(rng, n, drift_px * rng.uniform(0.0, 0.5), smooth)
    dx = a * np.cos(angle) - b * np.sin(angle)
    dy = a * np.sin(angle) + b * np.cos(angle)
    mag = np.hypot(dx, dy).max() if n else 0.0
    if mag > drift_px > 0:
        dx, dy = dx * drift_px / mag, dy * drift_px / mag
    roll = smooth_track(rng, n, rotation_deg * rng.uniform(0.3, 1.0), smooth)
    return np.stack([dx, dy, roll], axis=1)


def head_shift(n: int, start: int, length: int, vector: tuple[float, float]) -> np.ndarray:
    """(n, 2) a quick head translation by `vector` px over start..start+length, then held."""
    t = np.clip((np.arange(n) - start) / max(length, 1), 0, 1)
    s = 0.5 - 0.5 * np.cos(np.pi * t)
    return s[:, None] * np.asarray(vector, dtype=np.float64)[None, :]
