import numpy as np
import pytest

from mekit.synth import SynthConfig
from mekit.synth.aus import face_frame
from mekit.synth.base_faces import detect_landmarks
from mekit.synth.identity import base_for_subject, make_identity
from mekit.synth.subjects import subject_identity


def test_subjects_cycle_base_photos_and_mirror_alternate_pairs():
    assert [base_for_subject(k) for k in range(5)] == [
        ("astronaut", False),
        ("grace_hopper", False),
        ("astronaut", True),
        ("grace_hopper", True),
        ("astronaut", False),
    ]


@pytest.mark.parametrize("subject", [0, 1, 2, 3])
def test_identity_frame_size_face_width_and_centre(subject):
    identity = subject_identity(subject, SynthConfig())
    image = identity.neutral()
    assert image.shape == (192, 192, 3) and image.dtype == np.uint8
    assert abs(face_frame(identity.landmarks).width - 128) < 128 * 0.08
    centre = (identity.landmarks.min(axis=0) + identity.landmarks.max(axis=0)) / 2
    assert np.abs(centre - [96, 96]).max() < 20
    assert (identity.landmarks > 0).all() and (identity.landmarks < 192).all()
    # the mask covers the face and not the corners
    assert identity.mask[96, 96] > 0.99 and identity.mask[2, 2] < 0.01


@pytest.mark.parametrize("subject", [0, 3])
def test_dlib_finds_the_rendered_face_where_the_landmarks_say(subject):
    identity = subject_identity(subject, SynthConfig())
    found = detect_landmarks(identity.neutral())
    assert np.linalg.norm(found - identity.landmarks, axis=1).mean() < 4.0


def test_identity_variation_makes_subjects_with_the_same_photo_differ():
    config = SynthConfig()
    a, b = subject_identity(0, config), subject_identity(4, config)  # both plain astronaut
    assert (a.base_face, a.mirrored) == (b.base_face, b.mirrored)
    assert np.abs(a.neutral().astype(int) - b.neutral()).mean() > 10
    assert np.abs(a.landmarks - b.landmarks).max() > 2

    # relative geometry differs too (not just a shift): eye spacing over jaw width
    def ratio(lm):
        return np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0)) / face_frame(lm).width

    ratios = [ratio(subject_identity(k, config).landmarks) for k in (0, 2, 4, 6)]
    assert np.ptp(ratios) > 0.005


def test_zero_strength_gives_the_plain_photo_and_seeds_repeat():
    rng = np.random.default_rng
    plain = [make_identity(0, rng(k), strength=0.0).face for k in (1, 2)]
    np.testing.assert_array_equal(plain[0], plain[1])
    again = [make_identity(1, rng(7)).neutral() for _ in range(2)]
    np.testing.assert_array_equal(again[0], again[1])
