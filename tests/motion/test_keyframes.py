import cv2
import numpy as np
import pytest

from mekit.errors import MekitError
from mekit.motion.keyframes import (
    dx_dy_magnitude,
    every_kth,
    flow_sequence,
    keyframe_numbers,
    normalise_length,
    temporal_interpolate,
    tim_weights,
)


def textured(size=64, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur((rng.random((size, size)) * 255).astype(np.uint8), (0, 0), 2)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def test_keyframes_span_onset_to_apex_at_equal_spacing():
    assert keyframe_numbers(40, 140) == tuple(range(40, 141, 10))
    assert keyframe_numbers(0, 10, 4) == (0, 3, 7, 10)  # 3.33 -> 3, 6.67 -> 7


def test_short_interval_repeats_frames_to_keep_n():
    frames = keyframe_numbers(5, 8, 11)
    assert len(frames) == 11 and frames[0] == 5 and frames[-1] == 8
    assert list(frames) == sorted(frames) and set(frames) == {5, 6, 7, 8}
    assert keyframe_numbers(7, 7, 3) == (7, 7, 7)


def test_keyframes_reject_apex_before_onset():
    with pytest.raises(MekitError, match="annotation"):
        keyframe_numbers(50, 10)
    with pytest.raises(MekitError, match="n >= 2"):
        keyframe_numbers(0, 10, 1)


def test_every_kth_includes_end_only_on_the_step():
    assert every_kth(0, 10, 3) == (0, 3, 6, 9)
    assert every_kth(2, 10, 4) == (2, 6, 10)
    with pytest.raises(MekitError):
        every_kth(0, 10, 0)


def clip(t):
    """(t, 2, 3) clip whose frame i is filled with i, so frame identity is readable."""
    return np.broadcast_to(np.arange(t)[:, None, None], (t, 2, 3)).copy()


def test_long_clip_is_trimmed_symmetrically_extra_frame_from_the_end():
    out = normalise_length(clip(25), 20)  # 5 extra: 2 from the start, 3 from the end
    assert out.shape == (20, 2, 3)
    assert out[:, 0, 0].tolist() == list(range(2, 22))


def test_short_clip_is_padded_by_repeating_its_ends():
    out = normalise_length(clip(17), 20)  # 3 missing: 1 before, 2 after
    assert out[:, 0, 0].tolist() == [0, *range(17), 16, 16]
    assert np.array_equal(normalise_length(clip(20), 20), clip(20))


@pytest.mark.parametrize("method", ["tim", "linear"])
@pytest.mark.parametrize("n", [2, 5, 9, 30])
def test_interpolation_keeps_first_and_last_frames(method, n):
    rng = np.random.default_rng(1)
    frames = (rng.random((9, 8, 8, 3)) * 255).astype(np.uint8)
    out = temporal_interpolate(frames, n, method)
    assert out.shape == (n, 8, 8, 3) and out.dtype == np.float32
    assert np.allclose(out[0], frames[0], rtol=1e-3, atol=1e-3)
    assert np.allclose(out[-1], frames[-1], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("method", ["tim", "linear"])
def test_interpolation_to_the_same_length_reproduces_the_clip(method):
    frames = np.random.default_rng(2).random((12, 5, 7)).astype(np.float32) * 255
    assert np.allclose(temporal_interpolate(frames, 12, method), frames, atol=1e-3)


def test_tim_follows_its_cosine_curve_between_frames():
    # Frames lying on one of the path graph's eigenvectors: TIM must sample that very curve.
    t, n = 7, 19
    s = np.arange(1, t + 1)
    pixel = 100 + 50 * np.cos(2 * np.pi * (s - 0.5) / t)  # k = 2
    frames = np.broadcast_to(pixel[:, None, None], (t, 3, 3)).astype(np.float32)
    s_new = np.linspace(1, t, n)
    expected = 100 + 50 * np.cos(2 * np.pi * (s_new - 0.5) / t)
    out = temporal_interpolate(frames, n, "tim")
    assert np.allclose(out[:, 1, 1], expected, atol=1e-3)
    assert np.allclose(tim_weights(t, n).sum(axis=1), 1.0)  # a constant clip stays constant


def test_linear_interpolation_midpoints():
    frames = np.stack([np.zeros((2, 2)), np.full((2, 2), 10.0), np.full((2, 2), 30.0)])
    out = temporal_interpolate(frames, 5, "linear")
    assert out[:, 0, 0].tolist() == [0.0, 5.0, 10.0, 20.0, 30.0]


def test_interpolation_rejects_unknown_method():
    with pytest.raises(MekitError, match="tim"):
        temporal_interpolate(np.zeros((3, 4, 4)), 5, "cubic")


def test_flow_sequence_follows_a_moving_square():
    background = textured(64, seed=1) // 2
    texture = textured(20, seed=3)
    frames = np.stack([background.copy() for _ in range(4)])
    for i in range(4):
        frames[i, 20:40, 20 + i : 40 + i] = texture  # 1 px right per frame
    flows = flow_sequence(frames, "farneback")
    assert flows.shape == (3, 2, 64, 64) and flows.dtype == np.float32
    inside = flows[:, :, 25:35, 26:36]
    assert np.allclose(inside[:, 0].mean(axis=(1, 2)), 1.0, atol=0.3)
    assert np.abs(inside[:, 1].mean()) < 0.2


def test_dx_dy_magnitude_channels():
    flows = np.zeros((2, 2, 4, 4), np.float32)
    flows[:, 0], flows[:, 1] = 3.0, -4.0
    out = dx_dy_magnitude(flows)
    assert out.shape == (2, 3, 4, 4) and out.dtype == np.float32
    assert np.allclose(out[:, 0], 3.0) and np.allclose(out[:, 1], -4.0)
    assert np.allclose(out[:, 2], 5.0)
