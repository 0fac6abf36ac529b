"""The face of a grey image for pretraining on CK+ frames: the landmarks' box with a margin."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def face_crop() -> Callable[[np.ndarray], np.ndarray]:
    """A grey frame -> its face (the landmarks' box with a margin), the whole frame if none."""
    from mekit.faces.landmarks import FaceLandmarker

    landmarker = FaceLandmarker()

    def crop(image: np.ndarray) -> np.ndarray:
        points = landmarker(image)
        if points is None:
            return image
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        margin = 0.15 * max(x1 - x0, y1 - y0)
        h, w = image.shape[:2]
        top, left = int(max(0, y0 - margin)), int(max(0, x0 - margin))
        return image[top : int(min(h, y1 + margin)), left : int(min(w, x1 + margin))]

    return crop
