"""Which frames of a clip to use, and clips brought to a fixed length.

- `keyframe_numbers`: N frames at equal spacing from onset to apex (ME-ResNet, N = 11).
- `normalise_length`: trim or pad a clip symmetrically to 20 frames (CNN + LSTM, seed 004).
- `temporal_interpolate`: resample a clip to n frames with the temporal interpolation model
  (TIM, Zhou et al. 2011; Pfister et al. 2011) or plainly, linearly in time.
- `flow_sequence`, `dx_dy_magnitude`: flow between consecutive frames and seed 004's
  (dx, dy, magnitude) flow images.

Frame numbers are the corpus's own (ints); arrays are (T, H, W) or (T, H, W, C), time first.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mekit.errors import MekitError
from mekit.motion.flow import FlowMethod, compute_flow


def keyframe_numbers(onset: int, apex: int, n: int = 11) -> tuple[int, ...]:
    """`n` frame numbers at equal spacing from `onset` to `apex`, both included, rounded half up.

    Always `n` long: when the interval holds fewer than `n` frames, frames repeat. Onset first,
    apex last, never decreasing.
    """
    if n < 2:
        raise MekitError(f"keyframes need n >= 2 to include both onset and apex, got n={n}")
    if apex < onset:
        raise MekitError(
            f"apex frame {apex} comes before onset frame {onset}: fix the annotation "
            "(or the correction file) for this clip"
        )
    positions = np.linspace(onset, apex, n)
    return tuple(int(f) for f in np.floor(positions + 0.5))


def every_kth(start: int, end: int, k: int) -> tuple[int, ...]:
    """Frame numbers start, start + k, ... up to and including `end` when it falls on the step."""
    if k < 1:
        raise MekitError(f"frame step k must be >= 1, got {k}")
    if end < start:
        raise MekitError(f"end frame {end} comes before start frame {start}")
    return tuple(range(start, end + 1, k))


def normalise_length(frames: np.ndarray, length: int = 20) -> np.ndarray:
    """(T, ...) -> (length, ...), same dtype: a longer clip loses frames equally at both ends
    (the odd one at the end); a shorter one repeats its first and last frames equally (the odd
    one at the end)."""
    if length < 1:
        raise MekitError(f"clip length must be >= 1, got {length}")
    t = len(frames)
    if t == 0:
        raise ValueError("cannot normalise the length of an empty clip")
    if t >= length:
        first = (t - length) // 2
        return frames[first : first + length].copy()
    before = (length - t) // 2
    index = np.clip(np.arange(length) - before, 0, t - 1)
    return frames[index]


def _path_graph_embedding(positions: np.ndarray, t: int) -> np.ndarray:
    """The path graph P_t's Laplacian eigenvectors, except the constant one, as a curve:
    (len(positions), t - 1), positions in frames 1..t (continuous).

    The eigenvectors of P_t's Laplacian are y_k(s) = cos(pi k (s - 1/2) / t), k = 0..t-1, which
    is TIM's sin(pi k s / t + pi (t - k) / (2 t)) written another way; k = 0 is the constant.
    """
    k = np.arange(1, t)
    return np.cos(np.pi * np.outer(positions - 0.5, k) / t)


def tim_weights(t: int, n: int) -> np.ndarray:
    """(n, t) float64 weights W such that TIM's n synthesised frames are W @ frames (flattened).

    TIM: embed frame s at y(s) (the path graph's Laplacian eigenvectors), learn the linear map
    M from the embedding back to the mean-centred frames (exact: X - mean = M Y, since the
    eigenvectors and the constant span R^t), then read the curve at n equally spaced positions:
    x(s') = mean + M y(s'). Because Y Y^T = (t / 2) I, M = (2 / t) (X - mean) Y^T, and the
    whole model is one (n, t) matrix. Pfister et al. first reduce the frames by PCA; keeping all
    components, as here, gives the same curve.
    """
    if t == 1:
        return np.ones((n, 1))
    old = _path_graph_embedding(np.arange(1, t + 1, dtype=np.float64), t)  # (t, t-1)
    new = _path_graph_embedding(np.linspace(1.0, t, n), t)  # (n, t-1)
    return 1.0 / t + (2.0 / t) * new @ old.T


def temporal_interpolate(
    frames: np.ndarray, n: int, method: Literal["tim", "linear"] = "tim"
) -> np.ndarray:
    """(T, H, W) or (T, H, W, C) -> (n, ...) float32, frames resynthesised at n equally spaced
    times from the first frame to the last.

    "tim": the temporal interpolation model (a smooth cosine curve through all frames; it can
    ring around abrupt changes). "linear": per-pixel linear interpolation between neighbours.
    Both return the first and last frames when n >= 2 and the input itself when n == T.
    """
    if n < 1:
        raise MekitError(f"number of frames to synthesise must be >= 1, got {n}")
    if frames.ndim not in (3, 4) or len(frames) == 0:
        raise ValueError(f"frames must be (T, H, W) or (T, H, W, C), got {frames.shape}")
    t = len(frames)
    flat = frames.reshape(t, -1).astype(np.float32)
    if method == "tim":
        out = tim_weights(t, n).astype(np.float32) @ flat
    elif method == "linear":
        positions = np.linspace(0.0, t - 1, n)
        lower = np.minimum(np.floor(positions).astype(int), t - 1)
        upper = np.minimum(lower + 1, t - 1)
        frac = (positions - lower).astype(np.float32)[:, None]
        out = (1.0 - frac) * flat[lower] + frac * flat[upper]
    else:
        raise MekitError(f"unknown interpolation method {method!r}: use 'tim' or 'linear'")
    return out.reshape((n, *frames.shape[1:])).astype(np.float32, copy=False)


def flow_sequence(frames: np.ndarray, method: FlowMethod | str = "farneback") -> np.ndarray:
    """(T, H, W) grey uint8 -> (T-1, 2, H, W) float32 flow (u, v in px) between consecutive
    frames."""
    if frames.ndim != 3 or len(frames) < 2:
        raise ValueError(f"flow_sequence needs (T >= 2, H, W) grey frames, got {frames.shape}")
    return np.stack(
        [compute_flow(a, b, method) for a, b in zip(frames[:-1], frames[1:], strict=True)]
    )


def dx_dy_magnitude(flows: np.ndarray) -> np.ndarray:
    """(T-1, 2, H, W) flows -> (T-1, 3, H, W) float32, channels (dx, dy, sqrt(dx^2 + dy^2))."""
    if flows.ndim != 4 or flows.shape[1] != 2:
        raise ValueError(f"flows must be (T-1, 2, H, W), got {flows.shape}")
    mag = np.hypot(flows[:, 0], flows[:, 1])[:, None]
    return np.concatenate([flows, mag], axis=1).astype(np.float32)
