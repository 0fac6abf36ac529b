"""Inputs computed on someone else's face crop, moved into mekit's face alignment.

Shared precomputed inputs (the MEGC composite's flow images and apex crops, ...) come on crops
other than mekit's own: the composite's CASME II crops are about 15% tighter than mekit's square
around the landmarks and sit higher (brows at 14% of the height instead of 20%, the jaw
reaching past both sides). A model that knows where the brows, eyes and mouth lie in mekit's
alignment (the AU model, whose synthetic faces are laid out as `alignment_matrix` crops them)
then reads one region's motion as another's. Given the crop's apex image, its 68 landmarks
give mekit's alignment of that crop, and every input of the sample is warped into it:

- landmarks: the largest face dlib finds; a crop the face fills often defeats the detector
  (18 of the composite's 112 CASME II apex crops), and then the whole image is the face box
  (the shape predictor's landmarks from it lie within 1 px at 224 px of those from a detected
  box, on the crops where both work);
- the square is mekit's own (`alignment_matrix` without the frame's shape): where it reaches
  past a tight crop, nothing is known, and the warp fills it with the channel's median (for a
  flow: no motion, as most of a face is still);
- u, v move with the face: the affine's linear part turns and scales the vectors; strain, a
  ratio of lengths, and grey levels are kept;
- each warp runs at 4x the output side and is area-averaged down, so the 28 px inputs are not
  resampled twice at their own coarse grid.
"""

from __future__ import annotations

import cv2
import numpy as np

from mekit.faces.align import FaceConfig, alignment_matrix

SUPERSAMPLE = 4  # warps run at this many times the output side


def crop_matrix(landmarks: np.ndarray, image_shape: tuple[int, ...], size: int) -> np.ndarray:
    """(2, 3) affine from a size x size resampling of a crop (landmarks in px of the crop
    image, whose shape is `image_shape`) to mekit's alignment of it at size px."""
    h, w = image_shape[:2]
    scaled = np.asarray(landmarks, np.float64) * np.array([size / w, size / h])
    return alignment_matrix(scaled, FaceConfig(size=size))


def realign(
    stack: np.ndarray, matrix: np.ndarray, vectors: tuple[int, int] | None = None
) -> np.ndarray:
    """(C, S, S) channels warped by `matrix` (`crop_matrix` at S) into mekit's alignment;
    `vectors` names the (u, v) channels, turned and scaled with the face (module doc)."""
    size = stack.shape[-1]
    if stack.shape[-2] != size:
        raise ValueError(f"realign needs square channels, got {stack.shape}")
    k = SUPERSAMPLE
    linear, offset = matrix[:, :2], matrix[:, 2]
    # The same map on the k-times grid, pixel centres kept: x_k = k * (x + 0.5) - 0.5.
    fine = np.empty((2, 3))
    fine[:, :2] = linear
    fine[:, 2] = k * (linear @ np.full(2, 0.5 / k - 0.5) + offset + 0.5) - 0.5
    big = k * size
    channels = [
        cv2.resize(c.astype(np.float32), (big, big), interpolation=cv2.INTER_LINEAR) for c in stack
    ]
    if vectors is not None:
        iu, iv = vectors
        u, v = channels[iu], channels[iv]
        channels[iu] = linear[0, 0] * u + linear[0, 1] * v
        channels[iv] = linear[1, 0] * u + linear[1, 1] * v
    out = []
    for c in channels:
        warped = cv2.warpAffine(
            c,
            fine,
            (big, big),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=float(np.median(c)),
        )
        out.append(cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(out).astype(np.float32)
