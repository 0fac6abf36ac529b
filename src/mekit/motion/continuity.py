"""ME-ResNet's improved Farneback (seed 002): flow between consecutive keyframes, kept only where
the frames themselves change.

The spatio-temporal continuity filter keeps a pixel's motion in step i (keyframe i -> i+1) only
where |I_{i+1}(x, y) - I_i(x, y)| > U. The threshold adapts to the clip: U = a * p, where p is
the mean absolute grey-level difference between consecutive keyframes,

    p = 1 / ((N - 1) K) * sum_i sum_{x,y} |I_{i+1}(x, y) - I_i(x, y)|,

K the pixels per frame, and a = 0.8 (the paper's best scale factor). With a face ROI mask, the
sums and K cover the ROI only, and motion outside it is zeroed.

Because the test is on grey-level change, a change that is strong at a single pixel passes it;
what the filter removes is the flow that Farneback smears over its window around real changes,
and changes weaker than the clip's typical change (sensor noise on a moving face).
"""

from __future__ import annotations

import numpy as np

from mekit.errors import MekitError
from mekit.motion.flow import FlowMethod, compute_flow


def _check(frames: np.ndarray, scale: float, roi: np.ndarray | None) -> np.ndarray | None:
    if frames.ndim != 3 or len(frames) < 2:
        raise ValueError(f"keyframes must be (N >= 2, H, W) grey frames, got {frames.shape}")
    if scale < 0:
        raise MekitError(f"continuity scale factor a must be >= 0 (paper: 0.8), got {scale}")
    if roi is None:
        return None
    roi = np.asarray(roi, dtype=bool)
    if roi.shape != frames.shape[1:]:
        raise ValueError(f"ROI mask {roi.shape} does not match the frames {frames.shape[1:]}")
    if not roi.any():
        raise MekitError("the face ROI mask is empty: check the face crop or landmarks")
    return roi


def _abs_differences(frames: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N-1, H, W) float32 |I_{i+1} - I_i|, grey levels."""
    f = frames.astype(np.float32)
    return np.abs(f[1:] - f[:-1])


def _threshold(diffs: np.ndarray, scale: float, roi: np.ndarray | None) -> float:
    inside = diffs if roi is None else diffs[:, roi]
    return float(scale * inside.mean(dtype=np.float64))


def adaptive_threshold(
    frames: np.ndarray, scale: float = 0.8, roi: np.ndarray | None = None
) -> float:
    """U = scale * p for (N, H, W) keyframes, in grey levels; p over `roi` (H, W bool) if given."""
    roi = _check(frames, scale, roi)
    return _threshold(_abs_differences(frames), scale, roi)


def continuity_mask(
    frames: np.ndarray, scale: float = 0.8, roi: np.ndarray | None = None
) -> np.ndarray:
    """(N, H, W) keyframes -> (N-1, H, W) bool: where step i's motion is kept
    (|I_{i+1} - I_i| > U, and inside `roi` if given)."""
    roi = _check(frames, scale, roi)
    diffs = _abs_differences(frames)
    keep = diffs > _threshold(diffs, scale, roi)
    if roi is not None:
        keep &= roi
    return keep


def improved_farneback(
    frames: np.ndarray,
    scale: float = 0.8,
    roi: np.ndarray | None = None,
    method: FlowMethod | str = FlowMethod.FARNEBACK,
) -> np.ndarray:
    """(N, H, W) grey uint8 keyframes -> (N-1, 2, H, W) float32 flows (u, v in px) between
    consecutive keyframes, zero wherever the continuity filter (and the ROI) rejects motion."""
    keep = continuity_mask(frames, scale, roi)
    flows = np.stack(
        [compute_flow(a, b, method) for a, b in zip(frames[:-1], frames[1:], strict=True)]
    )
    return flows * keep[:, None]
