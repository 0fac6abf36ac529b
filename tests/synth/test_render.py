import cv2
import numpy as np
import pytest

from mekit.synth import SynthConfig
from mekit.synth.render import FrameRenderer, encode_jpeg, gaussian_noise
from mekit.synth.subjects import subject_identity


@pytest.fixture(scope="module")
def renderer() -> FrameRenderer:
    return FrameRenderer(subject_identity(1, SynthConfig()))


def grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def shift_of(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> np.ndarray:
    (dx, dy), _ = cv2.phaseCorrelate(grey(a) * window, grey(b) * window)
    return np.array([dx, dy])


def test_no_motion_renders_the_neutral_face(renderer):
    diff = renderer.render().astype(int) - renderer.identity.neutral()
    assert np.abs(diff).max() <= 1


def test_a_uniform_field_moves_the_face_forward(renderer):
    field = np.zeros((192, 192, 2), np.float32)
    field[..., 0], field[..., 1] = 2.0, -1.0
    window = renderer.identity.mask * cv2.createHanningWindow((192, 192), cv2.CV_32F)
    shift = shift_of(renderer.render(), renderer.render(field), window)
    np.testing.assert_allclose(shift, [2.0, -1.0], atol=0.15)


def test_head_pose_moves_the_face_but_not_the_background(renderer):
    still, moved = renderer.render(), renderer.render(pose=(3.0, 0.0, 0.0))
    corner = (slice(0, 12), slice(0, 12))
    assert np.abs(still[corner].astype(int) - moved[corner]).max() <= 1
    window = renderer.identity.mask * cv2.createHanningWindow((192, 192), cv2.CV_32F)
    np.testing.assert_allclose(shift_of(still, moved, window), [3.0, 0.0], atol=0.2)
    rolled = renderer.render(pose=(0.0, 0.0, 1.0))
    assert np.abs(rolled.astype(int) - still).mean() > 1


def test_noise_and_gain(renderer):
    rng = np.random.default_rng(0)
    clean = renderer.render().astype(float)
    noisy = renderer.render(noise_sigma=2.0, rng=rng).astype(float)
    inside = (clean > 20) & (clean < 235)
    assert 1.8 < (noisy - clean)[inside].std() < 2.2
    brighter = renderer.render(gain=1.02).astype(float)
    assert 1.015 < brighter[inside].mean() / clean[inside].mean() < 1.025
    sample = gaussian_noise(rng, (100_000,), 1.5)
    assert abs(sample.mean()) < 0.02 and abs(sample.std() - 1.5) < 0.03


def test_jpeg_quality(renderer):
    frame = renderer.render()
    best, rough = encode_jpeg(frame, 100), encode_jpeg(frame, 85)
    assert len(rough) < len(best)
    decoded = cv2.imdecode(np.frombuffer(best, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(decoded.astype(int) - frame).mean() < 1.0
