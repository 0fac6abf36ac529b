"""Frame rendering: expression and head pose as one backward warp, then global nuisances.

For a forward displacement field D (px), the face is sampled at x - D(x) (cv2.remap); for the
smooth, small fields used here that makes the true forward flow of the face D to first order.
The face layer and its mask move with the head; the background stays still.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import cv2
import numpy as np

from mekit.synth.identity import Identity


class FrameRenderer:
    """Renders frames of one identity; holds its float layers and the pixel grid."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        size = identity.face.shape[0]
        self._ys, self._xs = np.mgrid[0:size, 0:size].astype(np.float32)
        self._face = identity.face.astype(np.float32)
        self._mask = identity.mask.astype(np.float32)
        self._inverse = 1 - self._mask
        self._bg = identity.background.astype(np.float32)
        self._pivot = identity.centre.astype(np.float32)

    def render(
        self,
        field: np.ndarray | None = None,
        pose: tuple[float, float, float] = (0.0, 0.0, 0.0),
        gain: float = 1.0,
        noise_sigma: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """One frame (S, S, 3) uint8 BGR.

        field: (S, S, 2) forward displacement in face coordinates (before head motion), px.
        pose: head (dx px, dy px, roll deg) about the landmarks' centre.
        gain: global illumination factor; noise_sigma: Gaussian noise in grey levels (needs rng).
        """
        dx, dy, roll = (float(v) for v in pose)
        moved = dx != 0 or dy != 0 or roll != 0
        if moved:
            c, s = np.float32(np.cos(np.radians(roll))), np.float32(np.sin(np.radians(roll)))
            px = self._xs - np.float32(self._pivot[0] + dx)
            py = self._ys - np.float32(self._pivot[1] + dy)
            qx = c * px + s * py + self._pivot[0]
            qy = -s * px + c * py + self._pivot[1]
        else:
            qx, qy = self._xs, self._ys
        if field is not None:
            if moved:
                field = cv2.remap(field, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            sx, sy = qx - field[..., 0], qy - field[..., 1]
        else:
            sx, sy = qx, qy
        face = cv2.remap(self._face, sx, sy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        if moved:
            mask = cv2.remap(self._mask, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            inverse = 1 - mask
        else:
            mask, inverse = self._mask, self._inverse
        out = cv2.blendLinear(face, self._bg, mask, inverse)
        if noise_sigma > 0:
            if rng is None:
                raise ValueError("noise_sigma > 0 needs an rng")
            noise = gaussian_noise(rng, out.shape, noise_sigma)
        else:
            noise = np.zeros_like(out)
        # gain * out + noise, rounded to nearest and saturated to 0..255 in one pass.
        return cv2.addWeighted(out, float(gain), noise, 1.0, 0.0, dtype=cv2.CV_8U)


# Standard normal quantiles at the centres of 256 equal-probability bins: a lookup with
# random bytes gives Gaussian noise several times faster than the sampler, and finer steps
# would vanish in the 8-bit output anyway.
_NORMAL_TABLE = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], np.float32)


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """float32 noise of `shape`, N(0, sigma^2) quantised to 256 equal-probability levels."""
    idx = np.frombuffer(rng.bytes(math.prod(shape)), dtype=np.uint8).reshape(shape)
    table = (_NORMAL_TABLE * np.float32(sigma)).reshape(1, 256)
    return cv2.LUT(idx, table)


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a BGR frame; quality 100 also keeps full-resolution chroma (4:4:4)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if quality >= 100:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, buf = cv2.imencode(".jpg", frame, params)
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    return buf.tobytes()
