import cv2
import numpy as np
import pytest
from skimage import data

from mekit.faces import FaceConfig, FaceLandmarker, align_frames
from mekit.faces.landmarks import LEFT_EYE_INNER, RIGHT_EYE_INNER


@pytest.fixture(scope="module")
def landmarker():
    return FaceLandmarker()


def eye_angle(landmarks):
    d = landmarks[RIGHT_EYE_INNER] - landmarks[LEFT_EYE_INNER]
    return np.degrees(np.arctan2(d[1], d[0]))


def test_alignment_levels_a_rotated_face(landmarker):
    face = cv2.cvtColor(data.astronaut()[40:300, 100:340], cv2.COLOR_RGB2BGR)
    h, w = face.shape[:2]
    rotated = cv2.warpAffine(
        face,
        cv2.getRotationMatrix2D((w / 2, h / 2), 12, 1.0),
        (w, h),
        borderMode=cv2.BORDER_REPLICATE,
    )
    before = landmarker(rotated)
    assert before is not None and abs(eye_angle(before)) > 8
    clip = align_frames([rotated, rotated], landmarker, FaceConfig(size=128))
    assert clip is not None
    assert clip.frames[0].shape == (128, 128) and clip.frames[0].dtype == np.uint8
    assert abs(eye_angle(clip.landmarks)) < 0.5
    # the face fills the crop: landmarks span most of it and stay inside
    span = clip.landmarks.max(0) - clip.landmarks.min(0)
    assert span[0] > 90 and clip.landmarks.min() >= 0 and clip.landmarks.max() <= 128
    # an independent detection on the aligned image agrees the eyes are level
    again = landmarker(clip.frames[0])
    assert again is not None and abs(eye_angle(again)) < 3


def test_same_transform_for_every_frame(landmarker):
    face = cv2.cvtColor(data.astronaut()[40:300, 100:340], cv2.COLOR_RGB2BGR)
    shifted = np.roll(face, 3, axis=1)
    clip = align_frames([face, shifted], landmarker, FaceConfig(size=128))
    expected = cv2.warpAffine(
        cv2.cvtColor(shifted, cv2.COLOR_BGR2GRAY),
        clip.matrix,
        (128, 128),
        borderMode=cv2.BORDER_REPLICATE,
    )
    assert np.array_equal(clip.frames[1], expected)


def test_no_face_returns_none(landmarker):
    noise = (np.random.default_rng(0).random((120, 120)) * 255).astype(np.uint8)
    assert align_frames([noise], landmarker, FaceConfig()) is None
