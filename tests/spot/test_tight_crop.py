"""Tightly cropped faces (the face fills the frame, as CASME II's `Cropped/` release): the
aligned face is never filled from outside the frame, and `spot` finds the face that `prepare`
finds."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mekit.faces import FaceConfig, FaceLandmarker, align_frames, alignment_matrix
from mekit.faces.align import outside_share
from mekit.spot.input.signals import compute_signals
from mekit.spot.input.track import FaceTrack, TrackConfig
from mekit.synth import SynthConfig
from mekit.synth.subjects import subject_identity


@pytest.fixture(scope="module")
def tight() -> np.ndarray:
    """A synthetic face cropped so tightly that the jaw line and forehead leave the frame."""
    face = cv2.cvtColor(subject_identity(0, SynthConfig()).neutral(), cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(face[36:168, 37:157])  # landmarks span x 31..163, y 40..174


def test_alignment_of_a_tight_crop_stays_inside_the_frame(tight):
    landmarks = FaceLandmarker()(tight)
    assert landmarks is not None
    assert landmarks[:, 0].min() < 0 or landmarks[:, 1].max() > tight.shape[0]  # it is tight
    loose = alignment_matrix(landmarks, FaceConfig(size=64))
    fitted = alignment_matrix(landmarks, FaceConfig(size=64), tight.shape)
    assert outside_share(loose, tight.shape, 64) > 0.2  # the old crop: a border of copies
    assert outside_share(fitted, tight.shape, 64) == 0.0
    clip = align_frames([tight, tight], FaceLandmarker(), FaceConfig(size=128))
    assert clip is not None and outside_share(clip.matrix, tight.shape, 128) == 0.0
    # the eyes are still level and the face still fills most of the crop
    eyes = clip.landmarks[[39, 42]]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1.0
    assert clip.landmarks[:, 0].max() - clip.landmarks[:, 0].min() > 0.8 * 128


def test_a_rolled_face_fits_inside_too():
    rng = np.random.default_rng(0)
    landmarks = rng.uniform([10, 10], [110, 130], (68, 2)).astype(np.float32)
    landmarks[39], landmarks[42] = (40, 60), (80, 72)  # eye line rolled by about 17 degrees
    matrix = alignment_matrix(landmarks, FaceConfig(size=64), (120, 100))
    assert outside_share(matrix, (120, 100), 64) == 0.0


def test_the_track_keeps_a_tight_face_and_crops_inside(tight):
    track = FaceTrack(200.0, TrackConfig(face_size=64))
    out = list(track.run((i, tight) for i in range(6)))
    assert all(f.face_ok and f.crop is not None for f in out)
    assert outside_share(out[0].matrix, tight.shape, 64) == 0.0


def test_spot_signals_on_ten_tight_frames_at_200_fps(tight, tmp_path):
    """`mekit spot FOLDER --fps 200` on 10 frames: the default flow offset (40 frames) would
    leave no value; it shrinks to fit the clip."""
    rng = np.random.default_rng(1)
    for i in range(10):
        noisy = np.clip(tight + rng.normal(0, 1.0, tight.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / f"reg_img{i + 1}.jpg"), noisy)
    signals = compute_signals(tmp_path, fps=200.0, progress=False)
    assert signals.face_ok.all()
    assert 1 <= signals.k <= 3
    assert np.isfinite(signals.strain).sum() >= 10 - signals.k
