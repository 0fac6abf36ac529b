"""Inputs on someone else's crop moved into mekit's alignment: the crop's own map is undone
exactly, motion lands where mekit puts the landmarks, vectors turn with the face, the unknown
border reads as still, and the whole-image face box stands in for a failed detection."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from mekit.faces import FaceConfig, FaceLandmarker, alignment_matrix
from mekit.faces.realign import crop_matrix, realign
from mekit.synth.base_faces import BASE_FACES, load_landmarks

S = 28
MOUTH_LEFT = 48


def mekit_landmarks(size: int = S) -> np.ndarray:
    """A real face's landmarks as mekit's alignment lays them out at `size` px."""
    lm = load_landmarks(BASE_FACES[0]).astype(np.float64)
    m = alignment_matrix(lm, FaceConfig(size=size))
    return lm @ m[:, :2].T + m[:, 2]


def other_crop(degrees: float = 4.0, zoom: float = 1.15, up: float = 2.0) -> np.ndarray:
    """(2, 3) affine from mekit's layout to a tighter, higher, rolled crop of the same face."""
    z = cv2.getRotationMatrix2D((S / 2, S / 2), degrees, zoom)
    z[1, 2] -= up
    return z


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def bump(centre: np.ndarray, side: int = S, sigma: float = 1.5) -> np.ndarray:
    ys, xs = np.mgrid[0:side, 0:side]
    return np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))


def test_crop_matrix_undoes_the_crop_for_any_image_size():
    canon = mekit_landmarks()
    z = other_crop()
    for shape in [(S, S), (224, 224), (112, 140)]:  # the crop's apex image at its own size
        scale = np.array([shape[1] / S, shape[0] / S])
        m = crop_matrix(apply(z, canon) * scale, shape, S)
        back = apply(m, apply(z, canon))
        assert np.abs(back - canon).max() < 1e-6


def test_motion_lands_where_mekit_puts_the_landmark_and_vectors_turn():
    canon = mekit_landmarks()
    z = other_crop(degrees=10.0)
    crop_lm = apply(z, canon)
    weight = bump(crop_lm[MOUTH_LEFT])
    flow = np.stack([weight, np.zeros_like(weight), 0.5 * weight]).astype(np.float32)
    m = crop_matrix(crop_lm, (S, S), S)
    out = realign(flow, m, vectors=(0, 1))
    assert out.shape == (3, S, S) and out.dtype == np.float32
    magnitude = np.hypot(out[0], out[1])
    peak = np.array(np.unravel_index(np.argmax(magnitude), magnitude.shape))[::-1]
    assert np.abs(peak - canon[MOUTH_LEFT]).max() <= 1.0
    # a rightward motion in the rolled crop is the linear part's image in mekit's frame
    y, x = peak[1], peak[0]
    direction = out[:2, y, x] / np.hypot(*out[:2, y, x])
    expected = m[:, 0] / np.hypot(*m[:, 0])
    assert np.abs(direction - expected).max() < 0.02
    assert abs(direction[1]) > 0.15  # turned by the 10 degree roll, not left as it was
    # strain is a ratio, not a vector: it moves but keeps its sign and rough size
    assert out[2].max() == pytest.approx(0.5 * weight.max(), rel=0.35)


def test_the_border_a_tight_crop_lacks_reads_as_the_channels_median():
    canon = mekit_landmarks()
    crop_lm = apply(other_crop(degrees=0.0, zoom=1.4, up=0.0), canon)
    flow = np.full((3, S, S), 3.0, np.float32)  # still: the median
    flow[:, 8:20, 8:20] = 10.0  # a moving middle
    flow[:, :, 0] = 10.0  # and a moving edge, which the warp must not repeat outward
    out = realign(flow, crop_matrix(crop_lm, (S, S), S), vectors=None)
    # mekit's square reaches 20% past each side of this crop: its corners are outside it
    assert np.all(out[:, :2, :2] == 3.0)
    assert np.all(out[:, S // 2, S // 2] == 10.0)


@pytest.fixture(scope="module")
def tight_crop():
    grey = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    lm = FaceLandmarker()(grey)
    assert lm is not None
    (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
    crop = grey[int(y0 - 0.15 * (y1 - y0)) : int(y1), int(x0) : int(x1)]
    return cv2.resize(crop, (224, 224))


class Blind(FaceLandmarker):
    """A landmarker whose detector never finds a face (as on crops the face fills)."""

    def __call__(self, image):
        return None


def test_whole_image_face_box_stands_in_for_a_failed_detection(tight_crop):
    found = FaceLandmarker().on_crop(tight_crop)
    assert np.array_equal(found, FaceLandmarker()(tight_crop))
    fallback = Blind().on_crop(tight_crop)
    assert fallback.shape == (68, 2)
    assert np.abs(fallback - found).mean() < 3.0  # px at 224
