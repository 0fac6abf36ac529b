from itertools import combinations

import numpy as np
import pytest

from mekit.errors import MekitError
from mekit.synth import EMOTION_AUS, SynthConfig
from mekit.synth.aus import (
    AU_LIBRARY,
    au_field,
    blink_field,
    expression_field,
    eye_height,
    face_frame,
    format_aus,
    sample_aus,
)
from mekit.synth.base_faces import MIRROR_PERMUTATION
from mekit.synth.subjects import subject_identity

SHAPE = (192, 192)
REQUIRED = {1, 2, 4, 6, 7, 9, 10, 12, 14, 15, 17, 20, 25, 45}


@pytest.fixture(scope="module")
def landmarks() -> np.ndarray:
    return subject_identity(0, SynthConfig()).landmarks


def magnitude(field: np.ndarray) -> np.ndarray:
    return np.hypot(field[..., 0], field[..., 1])


def peak_xy(field: np.ndarray) -> np.ndarray:
    y, x = np.unravel_index(np.argmax(magnitude(field)), field.shape[:2])
    return np.array([x, y], dtype=float)


def at(field: np.ndarray, point: np.ndarray) -> np.ndarray:
    x, y = np.rint(point).astype(int)
    return field[y, x]


def test_library_holds_the_required_action_units():
    assert REQUIRED <= set(AU_LIBRARY)
    used = {au for sets in EMOTION_AUS.values() for aus in sets for au in aus}
    assert used <= set(AU_LIBRARY)


def test_emotion_au_sets_follow_the_issue():
    as_sets = {e: {frozenset(s) for s in sets} for e, sets in EMOTION_AUS.items()}
    assert as_sets["happiness"] == {frozenset({6, 12})}
    assert as_sets["surprise"] == {frozenset({1, 2}), frozenset({1, 2, 25})}
    assert all(({9, 10} & s) and s <= {4, 9, 10} and not {9, 10} <= s for s in as_sets["disgust"])
    assert frozenset({4, 9}) in as_sets["disgust"] and frozenset({10}) in as_sets["disgust"]
    subsets = {frozenset(c) for n in (1, 2, 3) for c in combinations((14, 15, 17), n)}
    assert as_sets["repression"] == subsets
    assert as_sets["sadness"] == {frozenset({1, 4, 15})}
    assert as_sets["fear"] == {frozenset({1, 2, 4, 20})}
    assert as_sets["anger"] == {frozenset({4, 7})}


def test_sample_aus_draws_every_allowed_combination():
    rng = np.random.default_rng(0)
    for emotion, sets in EMOTION_AUS.items():
        drawn = {sample_aus(emotion, rng) for _ in range(200)}
        assert drawn == set(sets)
    assert format_aus((25, 1, 2)) == "1+2+25"


def test_unknown_emotion_and_au_raise_with_the_valid_names(landmarks):
    with pytest.raises(MekitError, match="happiness"):
        sample_aus("contempt", np.random.default_rng(0))
    with pytest.raises(MekitError, match="valid"):
        au_field([99], landmarks, SHAPE)


@pytest.mark.parametrize(
    ("au", "near"),
    [
        (1, range(17, 27)),
        (2, range(17, 27)),
        (4, range(17, 27)),
        (6, range(36, 48)),
        (9, range(27, 36)),
        (10, range(48, 68)),
        (12, (48, 54, 60, 64)),
        (14, (48, 54, 60, 64)),
        (15, (48, 54, 59, 55)),
        (17, (8, 57, 7, 9)),
        (20, (48, 54, 60, 64)),
        (25, range(55, 68)),
        (45, range(36, 48)),
    ],
)
def test_au_field_peaks_where_the_au_acts(landmarks, au, near):
    width = face_frame(landmarks).width
    field = expression_field([au], landmarks, SHAPE, 2.0)
    distance = np.linalg.norm(landmarks[list(near)] - peak_xy(field), axis=1).min()
    assert distance < 0.12 * width, f"AU{au} peaks {distance:.1f} px from its landmarks"
    # and it is local: a third of a face away from the region (both sides) it has died away
    region = landmarks[sorted({*near, *(MIRROR_PERMUTATION[i] for i in near)})]
    ys, xs = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    grid = np.stack([xs, ys], axis=-1).reshape(-1, 1, 2)
    far = (np.linalg.norm(grid - region[None], axis=-1).min(axis=1) > width / 3).reshape(SHAPE)
    assert far.mean() > 0.5
    assert magnitude(field)[far].max() < 0.1 * 2.0


@pytest.mark.parametrize("amplitude", [0.5, 1.7, 3.0])
def test_field_maximum_equals_the_requested_amplitude(landmarks, amplitude):
    for aus in ([12], [6, 12], {1: 0.6, 2: 1.0, 25: 0.8}, [4, 9]):
        field = expression_field(aus, landmarks, SHAPE, amplitude)
        assert field.dtype == np.float32 and field.shape == (*SHAPE, 2)
        assert abs(magnitude(field).max() - amplitude) < 1e-4


def test_directions_in_the_face_frame(landmarks):
    lm = landmarks
    smile = au_field([12], lm, SHAPE)
    assert at(smile, lm[48])[0] < 0 and at(smile, lm[48])[1] < 0  # image-left corner: out, up
    assert at(smile, lm[54])[0] > 0 and at(smile, lm[54])[1] < 0
    frown = au_field([15], lm, SHAPE)
    assert at(frown, lm[48])[1] > 0 and at(frown, lm[54])[1] > 0
    brow = au_field([1], lm, SHAPE)
    assert at(brow, lm[21])[1] < 0 and at(brow, lm[22])[1] < 0
    lower = au_field([4], lm, SHAPE)
    assert at(lower, lm[21])[0] > 0 and at(lower, lm[22])[0] < 0  # towards the midline
    assert at(lower, lm[21])[1] > 0


def test_mirrored_face_gets_the_mirrored_field(landmarks):
    width = SHAPE[1]
    flipped = landmarks[list(MIRROR_PERMUTATION)].copy()
    flipped[:, 0] = (width - 1) - flipped[:, 0]
    for aus in ([12], [4, 9], [14, 17]):
        field = au_field(aus, landmarks, SHAPE)
        mirrored = au_field(aus, flipped, SHAPE)
        expected = field[:, ::-1].copy()
        expected[..., 0] *= -1
        np.testing.assert_allclose(mirrored, expected, atol=1e-4)


def test_rotated_face_rotates_the_motion(landmarks):
    angle = np.radians(12)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = landmarks.mean(axis=0)
    turned = (landmarks - centre) @ rot.T + centre
    up, before = -face_frame(turned).ey, -face_frame(landmarks).ey
    vec = at(au_field([10], turned, SHAPE), turned[51])
    assert vec @ up / np.linalg.norm(vec) > 0.99
    cross = before[0] * up[1] - before[1] * up[0]
    turn = np.degrees(np.arctan2(cross, before @ up))
    assert abs(turn - 12) < 0.5


def test_blink_moves_the_upper_lid_down_by_about_the_eye_height(landmarks):
    field = blink_field(landmarks, SHAPE, closure=1.0)
    lid = landmarks[[37, 38]].mean(axis=0)
    down = at(field, lid) @ face_frame(landmarks).ey
    assert 0.8 * eye_height(landmarks) < down < 1.5 * eye_height(landmarks)
    assert magnitude(field).max() > 4.0  # a large motion, unlike the micro-expressions
