import numpy as np
import pytest

from mekit.errors import MekitError
from mekit.synth.base_faces import (
    BASE_FACES,
    MIRROR_PERMUTATION,
    detect_landmarks,
    load_landmarks,
    load_photo,
    mirror,
)


def test_mirror_permutation_is_an_involution_that_swaps_sides():
    perm = np.array(MIRROR_PERMUTATION)
    assert sorted(perm) == list(range(68))
    assert (perm[perm] == np.arange(68)).all()
    assert perm[36] == 45 and perm[39] == 42 and perm[48] == 54 and perm[17] == 26
    assert perm[30] == 30 and perm[8] == 8 and perm[62] == 62


@pytest.mark.parametrize("name", BASE_FACES)
def test_mirror_keeps_landmark_semantics(name):
    image, lm = load_photo(name), load_landmarks(name)
    flipped, flm = mirror(image, lm)
    assert (flipped[:, ::-1] == image).all()
    # After the flip landmark 36 (outer corner of the image-left eye) is still image-left.
    assert flm[36, 0] < flm[45, 0] and flm[0, 0] < flm[16, 0] and flm[48, 0] < flm[54, 0]
    back_image, back = mirror(flipped, flm)
    np.testing.assert_allclose(back, lm)


def test_shipped_landmarks_lie_in_the_known_face_boxes():
    # Boxes from dlib's detector on the photos (issue text), with a little slack.
    boxes = {"astronaut": (170, 70, 275, 185), "grace_hopper": (170, 130, 375, 345)}
    for name, (x0, y0, x1, y1) in boxes.items():
        lm = load_landmarks(name)
        assert lm.shape == (68, 2)
        assert (lm[:, 0] > x0).all() and (lm[:, 0] < x1).all()
        assert (lm[:, 1] > y0).all() and (lm[:, 1] < y1).all()


@pytest.mark.parametrize("name", BASE_FACES)
def test_dlib_still_agrees_with_the_shipped_landmarks(name):
    found = detect_landmarks(load_photo(name))
    assert np.abs(found - load_landmarks(name)).max() <= 3.0


def test_unknown_base_face_raises():
    with pytest.raises(MekitError, match="astronaut"):
        load_photo("mona_lisa")
