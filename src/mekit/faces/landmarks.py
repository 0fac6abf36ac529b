"""dlib's HOG face detector and 68-point shape predictor, loaded from installed packages.

The predictor file ships in `face-recognition-models`; we locate it with importlib rather than
importing that package (its import needs pkg_resources, which modern setuptools dropped).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from mekit.errors import MekitError

# 68-point indices (0-based, iBUG 300-W order)
JAW = tuple(range(0, 17))
BROWS = tuple(range(17, 27))
NOSE_BRIDGE = (27, 28, 29, 30)
LEFT_EYE_INNER, RIGHT_EYE_INNER = 39, 42  # image-left eye's inner corner, image-right eye's
EYES = tuple(range(36, 48))
MOUTH = tuple(range(48, 68))


def shape_predictor_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MekitError(
            "face-recognition-models is not installed; run `pip install face-recognition-models`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models"
    path = path / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise MekitError(f"{path} is missing; reinstall face-recognition-models")
    return path


@functools.cache
def dlib_models():
    """dlib's HOG face detector and 68-point shape predictor, loaded once per process (about
    1 s; shared by `FaceLandmarker` and the spotter's face track)."""
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(shape_predictor_path()))


class FaceLandmarker:
    """Finds the largest face and its 68 landmarks. Models load on first use (not picklable:
    build one per process)."""

    def __init__(self, upsample: int = 1) -> None:
        self.upsample = upsample
        self._detector = None
        self._predictor = None

    def _load(self) -> None:
        self._detector, self._predictor = dlib_models()

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """(68, 2) float32 landmarks (x, y in px) of the largest face in a grey or RGB uint8
        image, or None when no face is found."""
        gray = self._grey(image)
        assert self._detector is not None
        rects = self._detector(gray, 0)
        if len(rects) == 0 and self.upsample > 0:
            rects = self._detector(gray, self.upsample)
        if len(rects) == 0:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        return self._shape(gray, rect.left(), rect.top(), rect.right(), rect.bottom())

    def on_crop(self, image: np.ndarray) -> np.ndarray:
        """(68, 2) float32 landmarks of the face in a face crop: the largest face found, else
        the whole image taken as the face box (a crop the face fills often defeats the
        detector; see `mekit.faces.realign`)."""
        found = self(image)
        if found is not None:
            return found
        gray = self._grey(image)
        h, w = gray.shape
        return self._shape(gray, 0, 0, w - 1, h - 1)

    def _grey(self, image: np.ndarray) -> np.ndarray:
        """The models loaded, and `image` as the contiguous uint8 grey array dlib reads."""
        if self._detector is None or self._predictor is None:
            self._load()
        gray = image if image.ndim == 2 else image.mean(axis=2).astype(np.uint8)
        return np.ascontiguousarray(gray)

    def _shape(self, gray: np.ndarray, left: int, top: int, right: int, bottom: int) -> np.ndarray:
        """(68, 2) float32 landmarks the shape predictor places in the face box given."""
        import dlib

        assert self._predictor is not None
        shape = self._predictor(gray, dlib.rectangle(left, top, right, bottom))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
