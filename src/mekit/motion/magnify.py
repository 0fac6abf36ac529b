"""Linear Eulerian video magnification (Wu et al. 2012), an optional step before flow.

Each frame is blurred and downsampled `levels` times (a Gaussian pyramid, cv2.pyrDown), the
coarse video is band-passed in time, the band is multiplied by `alpha`, brought back to full
size (cv2.pyrUp) and added to the input. Changes in the pass band and at spatial scales coarser
than about 2**levels px thus grow by a factor of about 1 + alpha; other changes stay as they are.

The temporal filter is a Butterworth band-pass run forwards and backwards (scipy's
sosfiltfilt): zero phase, so amplified changes stay in step with the frames, and gain 1 in the
middle of the band, falling off at its edges (gain 1/2 at `low_hz` and `high_hz`, the square of
the single pass's -3 dB).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import signal

from mekit.errors import MekitError


def _value_range(frames: np.ndarray) -> tuple[float, float]:
    if np.issubdtype(frames.dtype, np.integer):
        info = np.iinfo(frames.dtype)
        return float(info.min), float(info.max)
    if frames.size and float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0:
        return 0.0, 1.0
    return 0.0, 255.0


def _validate(
    frames: np.ndarray, fps: float, low_hz: float, high_hz: float, alpha: float, levels: int
) -> None:
    if frames.ndim not in (3, 4):
        raise ValueError(f"frames must be (T, H, W) or (T, H, W, C), got {frames.shape}")
    if not 0.0 < low_hz < high_hz < fps / 2.0:
        raise MekitError(
            f"magnification band {low_hz}-{high_hz} Hz does not fit a {fps} fps video: "
            f"choose 0 < low_hz < high_hz < {fps / 2.0} Hz (half the frame rate)"
        )
    if alpha < 0:
        raise MekitError(f"magnification factor alpha must be >= 0, got {alpha}")
    smallest = min(frames.shape[1:3])
    if levels < 0 or 2**levels > smallest:
        most = int(np.log2(smallest))
        raise MekitError(
            f"{levels} pyramid levels do not fit {frames.shape[1]}x{frames.shape[2]} frames: "
            f"use 0 <= levels <= {most}"
        )
    if len(frames) < 2:
        raise MekitError("magnification needs a clip of at least 2 frames")


def _down(frame: np.ndarray, levels: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    sizes = []
    for _ in range(levels):
        sizes.append((frame.shape[1], frame.shape[0]))  # cv2's (width, height)
        frame = cv2.pyrDown(frame)
    return frame, sizes


def _up(frame: np.ndarray, sizes: list[tuple[int, int]]) -> np.ndarray:
    for size in reversed(sizes):
        frame = cv2.pyrUp(frame, dstsize=size)
    return frame


def eulerian_magnify(
    frames: np.ndarray,
    fps: float,
    low_hz: float,
    high_hz: float,
    alpha: float = 10.0,
    levels: int = 4,
    order: int = 2,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """(T, H, W) or (T, H, W, C) frames (uint8 or float) -> the same shape, float32, magnified.

    `fps` frames per second; the pass band `low_hz`-`high_hz` in Hz; `alpha` the amplification
    of the band (output band = (1 + alpha) x input band); `levels` pyramid levels (spatial
    low-pass); `order` the Butterworth order. The result is clipped to `value_range`: by default
    the dtype's range for integer input, [0, 1] for float input within [0, 1], else [0, 255].
    """
    _validate(frames, fps, low_hz, high_hz, alpha, levels)
    video = frames.astype(np.float32)
    coarse, sizes = zip(*(_down(f, levels) for f in video), strict=True)
    sos = signal.butter(order, [low_hz, high_hz], btype="bandpass", fs=fps, output="sos")
    # sosfiltfilt pads the clip by reflection; short clips cannot take the default padding.
    padlen = min(3 * (2 * len(sos) + 1), len(video) - 1)
    band = signal.sosfiltfilt(sos, np.stack(coarse), axis=0, padlen=padlen)
    band = (alpha * band).astype(np.float32)
    out = video + np.stack([_up(b, s) for b, s in zip(band, sizes, strict=True)]).reshape(
        video.shape
    )
    lo, hi = _value_range(frames) if value_range is None else value_range
    return np.clip(out, lo, hi, out=out)
