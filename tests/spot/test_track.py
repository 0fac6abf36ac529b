"""The streaming face track: steady crops within a shot, new shots on big moves, a face that
leaves and comes back, and no face at all."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from mekit.errors import MekitError
from mekit.faces.landmarks import LEFT_EYE_INNER, RIGHT_EYE_INNER
from mekit.spot.input.track import (
    Cropper,
    FaceTrack,
    NoFaceError,
    TrackConfig,
    eye_aspect_ratio,
)
from mekit.synth import SynthConfig
from mekit.synth.subjects import subject_identity

FRAME = (240, 320)  # h, w


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A synthetic subject's neutral face, 192 x 192 grey (face about 128 px wide)."""
    identity = subject_identity(0, SynthConfig())
    return cv2.cvtColor(identity.neutral(), cv2.COLOR_BGR2GRAY)


def scene(face: np.ndarray, x: float, y: float = 24.0) -> np.ndarray:
    """`face` pasted at (x, y) on a flat 320 x 240 background (partly or wholly outside)."""
    canvas = np.full(FRAME, 90, np.uint8)
    shift = np.float32([[1, 0, x], [0, 1, y]])
    return cv2.warpAffine(face, shift, FRAME[::-1], dst=canvas, borderMode=cv2.BORDER_TRANSPARENT)


def test_steady_face_one_shot_pixel_identical_crops(face):
    track = FaceTrack(25.0, TrackConfig(face_size=64))
    out = list(track.run((i, scene(face, 64)) for i in range(12)))
    assert all(f.face_ok and f.shot == 0 for f in out)
    assert track.n_shots == 1 and track.n_detections == 1
    assert out[0].crop.shape == (64, 64) and out[0].crop.dtype == np.uint8
    for f in out[1:]:
        assert np.array_equal(f.crop, out[0].crop)  # fixed transform: no crop jitter
    lm = out[-1].landmarks
    assert lm.shape == (68, 2) and (lm > 0).all() and (lm < 64).all()  # crop coordinates
    assert abs(lm[LEFT_EYE_INNER, 1] - lm[RIGHT_EYE_INNER, 1]) < 1.0  # eye line level
    assert 0.2 < out[-1].ear < 0.45  # open eyes


def test_small_moves_keep_the_shot_a_big_move_starts_a_new_one(face):
    track = FaceTrack(25.0, TrackConfig(face_size=64))
    xs = [64] * 5 + [66] * 5 + [110] * 8  # +2 px (1.5 % of the face), then +44 px (a third)
    out = list(track.run((i, scene(face, x)) for i, x in enumerate(xs)))
    shots = [f.shot for f in out]
    assert shots[:10] == [0] * 10
    assert shots[-1] == 1 and track.n_shots == 2
    assert all(f.face_ok for f in out)
    # the new shot's crop shows the face where the first shot's did
    diff = np.abs(out[-1].crop.astype(int) - out[0].crop.astype(int)).mean()
    assert diff < 8


def test_face_leaving_the_frame_is_flagged_then_found_again(face):
    xs = [64] * 10 + list(np.linspace(64, 360, 15)) + [360] * 10
    xs += list(np.linspace(360, 64, 15)) + [64] * 15
    track = FaceTrack(25.0, TrackConfig(face_size=48, redetect_s=0.4))
    out = list(track.run((i, scene(face, x)) for i, x in enumerate(xs)))
    ok = np.array([f.face_ok for f in out])
    assert ok[:10].all() and ok[-5:].all()
    gone = [i for i, x in enumerate(xs) if x > 250]  # face wholly or mostly outside
    assert not ok[gone].any()
    for f in out:
        if not f.face_ok:
            assert f.crop is None and math.isnan(f.ear)
        else:
            assert f.crop.shape == (48, 48)
    assert track.n_lost >= 1 and track.n_face == int(ok.sum())


def test_no_face_anywhere_raises_naming_the_video():
    rng = np.random.default_rng(0)
    frames = [
        (i, cv2.GaussianBlur(rng.integers(0, 255, FRAME, np.uint8), (0, 0), 3)) for i in range(30)
    ]
    track = FaceTrack(25.0, TrackConfig(redetect_s=0.2), name="empty_room.mp4")
    out = []
    with pytest.raises(NoFaceError, match=r"empty_room.mp4: no face found in 30 frames"):
        for f in track.run(frames):
            out.append(f)
    assert len(out) == 30 and not any(f.face_ok for f in out)
    assert track.n_detections == 6  # frame 0, then every 0.2 s = 5 frames
    assert issubclass(NoFaceError, MekitError)


def test_track_accepts_colour_and_rejects_non_uint8(face):
    colour = cv2.cvtColor(scene(face, 64), cv2.COLOR_GRAY2BGR)
    track = FaceTrack(30.0)
    assert track.update(0, colour).face_ok
    with pytest.raises(MekitError, match="uint8"):
        track.update(1, colour.astype(np.float32))


def test_landmark_cadence_from_the_frame_rate():
    assert TrackConfig().every(30.0) == 1
    assert TrackConfig().every(200.0) == 4
    assert TrackConfig(landmark_every=3).every(200.0) == 3


def test_cropper_matches_a_plain_warp_of_a_smoothed_frame():
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(0, 255, (400, 400), np.uint8), (0, 0), 6)
    angle, scale = 5.0, 0.2  # a 320 px face box into 64 px: two pyramid steps
    matrix = cv2.getRotationMatrix2D((200, 200), angle, scale)
    matrix[:, 2] += (32 - 200, 32 - 200)
    cropper = Cropper(matrix, 64, image.shape)
    assert cropper.levels == 2
    ours = cropper(image).astype(float)
    plain = cv2.warpAffine(image, matrix, (64, 64), flags=cv2.INTER_AREA).astype(float)
    assert np.abs(ours - plain)[4:-4, 4:-4].mean() < 3  # same picture, same place
    points = np.array([[200.0, 200.0], [300.0, 200.0]])
    assert np.allclose(cropper.points(points)[0], [32, 32], atol=1e-4)


def test_eye_aspect_ratio():
    eye = np.array([[0, 0], [1, -1], [2, -1], [3, 0], [2, 1], [1, 1]], float)  # 2 high, 3 wide
    lm = np.zeros((68, 2))
    lm[36:42] = eye
    lm[42:48] = eye + (10, 0)
    assert eye_aspect_ratio(lm) == pytest.approx(2 / 3)
    lm[[37, 38, 43, 44], 1] = 0.5  # lids half down
    assert eye_aspect_ratio(lm) == pytest.approx(0.5 / 3)
