from dataclasses import replace

import cv2
import numpy as np
import pytest

from mekit.motion import compute_flow, optical_strain
from mekit.motion.flow import subtract_region_motion


def textured(size=128, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur((rng.random((size, size)) * 255).astype(np.uint8), (0, 0), 2)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


@pytest.mark.parametrize("method,tol", [("tvl1", 0.1), ("farneback", 0.15), ("dis", 0.15)])
def test_flow_recovers_a_known_shift(method, tol):
    img = textured()
    shift = (1.5, -0.7)  # px right, px up
    moved = cv2.warpAffine(
        img,
        np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]),
        (128, 128),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    flow = compute_flow(img, moved, method)
    assert flow.shape == (2, 128, 128) and flow.dtype == np.float32
    inner = flow[:, 20:-20, 20:-20]
    assert inner[0].mean() == pytest.approx(shift[0], abs=tol)
    assert inner[1].mean() == pytest.approx(shift[1], abs=tol)


def test_moving_square_flow_points_the_way_it_moves():
    background = textured(96, seed=1) // 2  # still, textured so its zero flow is observable
    texture = textured(24, seed=3)
    img, moved = background.copy(), background.copy()
    img[30:54, 30:54] = texture
    moved[32:56, 31:55] = texture  # 1 px right, 2 px down
    flow = compute_flow(img, moved, "tvl1")
    inside = flow[:, 36:50, 36:50]
    assert inside[0].mean() == pytest.approx(1.0, abs=0.3)
    assert inside[1].mean() == pytest.approx(2.0, abs=0.4)
    assert np.abs(flow[:, :15, :15]).max() < 0.2  # background still


def test_strain_of_a_known_affine_field():
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    a, d, b, c = 0.02, -0.01, 0.03, 0.01  # u = a x + b y, v = c x + d y
    flow = np.stack([a * xx + b * yy, c * xx + d * yy])
    expected = np.sqrt(a**2 + d**2 + 0.5 * (b + c) ** 2)
    assert np.allclose(optical_strain(flow), expected, atol=1e-6)
    rotation = np.stack([-0.01 * yy, 0.01 * xx])  # pure rotation has no strain
    assert np.allclose(optical_strain(rotation), 0.0, atol=1e-6)


def test_region_motion_subtraction_cancels_rigid_shift():
    flow = np.zeros((2, 32, 32), np.float32)
    flow[0] += 0.8
    flow[1, 20:, :] += 1.0  # a local motion below a still reference region
    mask = np.zeros((32, 32), bool)
    mask[5:10, 10:20] = True
    out = subtract_region_motion(flow, mask)
    assert np.allclose(out[0], 0.0, atol=1e-5) and np.allclose(out[1, 20:], 1.0, atol=1e-5)
    assert np.allclose(out[1, :20], 0.0, atol=1e-5)


def test_flow_rejects_mismatched_frames():
    with pytest.raises(ValueError, match="one shape"):
        compute_flow(np.zeros((10, 10), np.uint8), np.zeros((12, 10), np.uint8), "farneback")


def test_onset_apex_flow_at_the_model_input_size():
    """features.flow_size shrinks the aligned faces first: the flow is in px of that size."""
    from mekit.motion.features import FeatureConfig, onset_apex_flow

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (160, 160)).astype(np.float32), (0, 0), 3)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    onset, apex = texture[16:144, 16:144], texture[16:144, 12:140]  # moved 4 px right
    landmarks = np.full((68, 2), 64.0, np.float32)
    config = FeatureConfig(method="tvl1", head_motion=False)
    full = onset_apex_flow(onset, apex, landmarks, config)
    small = onset_apex_flow(onset, apex, landmarks, replace(config, flow_size=32))
    assert full.shape == (2, 128, 128) and small.shape == (2, 32, 32)
    assert np.median(full[0][20:-20, 20:-20]) == pytest.approx(4.0, abs=0.4)
    assert np.median(small[0][5:-5, 5:-5]) == pytest.approx(1.0, abs=0.15)
