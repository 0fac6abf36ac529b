"""Eye-line alignment: rotate so the inner eye corners are level (about their midpoint), crop a
square around the landmarks, resize. As in MER practice, the transform is estimated once on the
onset frame and applied to every frame of the clip, so crop jitter cannot swamp 1-3 px motions.

Crop-aware: given the frame's shape, the square is shrunk (and moved) until it lies inside the
frame, so a tightly cropped face (CASME II's `Cropped/` release, where the face fills the frame)
is never completed with repeated border pixels, whose flat texture would carry flow of its own.
The face box then loses a little of its margin, forehead or chin instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mekit.config import Config
from mekit.faces.landmarks import LEFT_EYE_INNER, RIGHT_EYE_INNER, FaceLandmarker


@dataclass(frozen=True)
class FaceConfig(Config, section="face"):
    size: int = 128  # output side, px
    margin: float = 0.05  # extra border around the landmark box, fraction of its side
    forehead: float = 0.15  # box grown upward by this fraction of its height (AU1/AU2 act there)
    upsample: int = 1  # dlib detector upsampling tried when the first pass finds no face
    grayscale: bool = True


@dataclass(frozen=True)
class AlignedClip:
    """Aligned frames (size x size, uint8) and the onset landmarks in aligned coordinates."""

    frames: tuple[np.ndarray, ...]
    landmarks: np.ndarray  # (68, 2) float32, px in the aligned frame
    matrix: np.ndarray  # (2, 3) affine from the original frame to the aligned one


def alignment_matrix(
    landmarks: np.ndarray, config: FaceConfig, frame_shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """(2, 3) affine: level the inner eye corners, crop a square face box, scale to config.size.

    With `frame_shape` ((H, W, ...) of the frame) the square is fitted inside the frame (see the
    module doc); without it, it may reach outside."""
    left, right = landmarks[LEFT_EYE_INNER], landmarks[RIGHT_EYE_INNER]
    centre = (left + right) / 2.0
    angle = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
    rotation = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)
    pts = landmarks @ rotation[:, :2].T + rotation[:, 2]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    y0 -= config.forehead * (y1 - y0)
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * config.margin)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    if frame_shape is not None:
        cx, cy, side = _fit_inside(rotation, cx, cy, side, frame_shape[:2])
    scale = config.size / side
    crop = np.array(
        [[scale, 0.0, -(cx - side / 2) * scale], [0.0, scale, -(cy - side / 2) * scale]]
    )
    return (np.vstack([crop, [0, 0, 1]]) @ np.vstack([rotation, [0, 0, 1]]))[:2].astype(np.float64)


def _fit_inside(
    rotation: np.ndarray, cx: float, cy: float, side: float, shape: tuple[int, ...]
) -> tuple[float, float, float]:
    """(cx, cy, side) of the largest square, at most `side`, nearest (cx, cy) (rotated frame) whose
    corners all lie inside an (H, W) frame. The rotated square's extent in the frame is its side
    times (|cos| + |sin|) of the roll: the side is capped so that extent fits, then the centre is
    moved in."""
    h, w = float(shape[0]), float(shape[1])
    inverse = cv2.invertAffineTransform(rotation)  # rotated frame -> frame
    c, s_ = abs(float(inverse[0, 0])), abs(float(inverse[0, 1]))
    spread = c + s_
    room = min(w - 1.0, h - 1.0) / spread  # largest side whose extent fits the frame
    side = min(side, room)
    half = 0.5 * side * spread
    x, y = inverse[:, :2] @ np.array([cx, cy]) + inverse[:, 2]
    x = min(max(float(x), half), w - 1.0 - half)
    y = min(max(float(y), half), h - 1.0 - half)
    cx, cy = rotation[:, :2] @ np.array([x, y]) + rotation[:, 2]
    return float(cx), float(cy), side


def outside_share(matrix: np.ndarray, frame_shape: tuple[int, ...], size: int) -> float:
    """Share of a size x size aligned crop whose source point lies outside the frame (what a
    warp would fill from repeated border pixels), in [0, 1]."""
    inverse = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    grid = np.stack(np.meshgrid(np.arange(size) + 0.0, np.arange(size) + 0.0), axis=-1)
    src = grid @ inverse[:, :2].T + inverse[:, 2]
    h, w = frame_shape[:2]
    inside = (src[..., 0] >= -0.5) & (src[..., 0] <= w - 0.5)
    inside &= (src[..., 1] >= -0.5) & (src[..., 1] <= h - 0.5)
    return float(1.0 - inside.mean())


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def align_frames(
    frames: Sequence[np.ndarray], landmarker: FaceLandmarker, config: FaceConfig
) -> AlignedClip | None:
    """Align `frames` (first = onset, where the face is detected) with one shared transform.

    Returns None when no face is found in the first frame.
    """
    landmarks = landmarker(frames[0])
    if landmarks is None:
        return None
    matrix = alignment_matrix(landmarks, config, frames[0].shape)
    out = []
    for frame in frames:
        if config.grayscale and frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        out.append(warp(frame, matrix, config.size))
    aligned_landmarks = (landmarks @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)
    return AlignedClip(tuple(out), aligned_landmarks, matrix)
