import cv2
import numpy as np
import pytest

from mekit.errors import MekitError
from mekit.motion.continuity import adaptive_threshold, continuity_mask, improved_farneback
from mekit.motion.flow import compute_flow


def textured(size=128, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur((rng.random((size, size)) * 255).astype(np.uint8), (0, 0), 2)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def moving_square(n=11, size=64):
    """n frames of a still textured background with a textured square moving 1 px right per
    frame; the square spans rows 20:44, columns 16+i : 40+i in frame i."""
    background = textured(size, seed=1) // 2
    texture = textured(24, seed=3)
    frames = np.stack([background.copy() for _ in range(n)])
    for i in range(n):
        frames[i, 20:44, 16 + i : 40 + i] = texture
    return frames


def test_threshold_matches_a_hand_computation():
    frames = np.array([[[0, 10], [20, 30]], [[4, 10], [20, 30]], [[4, 10], [20, 22]]], np.uint8)
    # |differences|: step 0 -> 4, 0, 0, 0; step 1 -> 0, 0, 0, 8 (uint8 must not wrap around)
    # p = (4 + 8) / ((N - 1) * K) = 12 / (2 * 4) = 1.5
    assert adaptive_threshold(frames) == pytest.approx(0.8 * 1.5)
    assert adaptive_threshold(frames, scale=0.5) == pytest.approx(0.75)
    roi = np.array([[True, False], [False, False]])  # only the pixel that changed by 4
    assert adaptive_threshold(frames, roi=roi) == pytest.approx(0.8 * 4 / 2)
    mask = continuity_mask(frames)
    assert mask.shape == (2, 2, 2)
    assert mask[0].tolist() == [[True, False], [False, False]]
    assert mask[1].tolist() == [[False, False], [False, True]]


def test_single_frame_noise_leaves_motion_only_at_the_noise_pixel():
    frames = np.stack([textured(96, seed=5)] * 11)
    frames[5, 48, 48] = 255 - frames[5, 48, 48]  # a blip in one frame only
    raw = np.stack(
        [compute_flow(a, b, "farneback") for a, b in zip(frames[:-1], frames[1:], strict=True)]
    )
    smeared = np.hypot(raw[:, 0], raw[:, 1]) > 0.01
    assert smeared.sum() > 50  # Farneback spreads the blip over its window
    filtered = improved_farneback(frames)
    moving = np.hypot(filtered[:, 0], filtered[:, 1]) > 0
    assert not moving[[0, 1, 2, 3, 6, 7, 8, 9]].any()  # steps that do not touch frame 5
    moving[:, 48, 48] = False
    assert not moving.any()  # nothing beyond the pixel itself


def test_weak_noise_is_removed_while_consistent_motion_is_kept():
    frames = moving_square()
    frames[4, 5, 58] += 2  # faint one-frame change, far from the square
    assert 2 < adaptive_threshold(frames)  # weaker than the clip's typical change
    filtered = improved_farneback(frames)
    assert filtered.shape == (10, 2, 64, 64) and filtered.dtype == np.float32
    assert np.abs(filtered[:, :, :12, 50:]).max() == 0.0  # the noise's corner is still
    assert np.abs(filtered[:, :, 50:, :]).max() == 0.0  # still background below the square
    mask = continuity_mask(frames)
    for i in range(10):
        kept = mask[i, 24:40, 22 + i : 36 + i]  # inside the square, clear of its edges
        assert kept.mean() > 0.5
        u = filtered[i, 0, 24:40, 22 + i : 36 + i][kept]
        assert np.median(u) == pytest.approx(1.0, abs=0.25)


def test_roi_zeroes_motion_outside_it():
    frames = moving_square()
    roi = np.zeros((64, 64), bool)
    roi[:, :30] = True  # the square's left part only
    filtered = improved_farneback(frames, roi=roi)
    assert np.abs(filtered[:, :, :, 30:]).max() == 0.0
    assert np.abs(filtered[:, 0, 24:40, 22:30]).max() > 0.5
    assert adaptive_threshold(frames, roi=roi) != adaptive_threshold(frames)


def test_roi_must_match_and_not_be_empty():
    frames = moving_square(n=3)
    with pytest.raises(MekitError, match="empty"):
        adaptive_threshold(frames, roi=np.zeros((64, 64), bool))
    with pytest.raises(ValueError, match="does not match"):
        continuity_mask(frames, roi=np.ones((10, 10), bool))
