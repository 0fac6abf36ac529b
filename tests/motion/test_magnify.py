import numpy as np
import pytest

from mekit.errors import MekitError
from mekit.motion.magnify import eulerian_magnify

FPS = 60.0


def flicker(hz, amplitude=2.0, t=120, size=32, channels=None):
    """A grey (or colour) clip whose brightness oscillates at `hz`: 128 + A sin(2 pi hz t)."""
    time = np.arange(t) / FPS
    level = 128 + amplitude * np.sin(2 * np.pi * hz * time)
    shape = (t, size, size) if channels is None else (t, size, size, channels)
    return np.broadcast_to(level.reshape(-1, *[1] * (len(shape) - 1)), shape).astype(np.float32)


def amplitude_of(clip):
    """Peak deviation from 128 in the clip's middle half (away from filter edge transients)."""
    t = len(clip)
    return np.abs(clip[t // 4 : 3 * t // 4] - 128).max()


@pytest.mark.parametrize("channels", [None, 3])
def test_in_band_change_grows_by_one_plus_alpha(channels):
    clip = flicker(5.0, channels=channels)  # band 3-8 Hz, 5 Hz near its centre
    out = eulerian_magnify(clip, FPS, 3.0, 8.0, alpha=10.0, levels=3)
    assert out.shape == clip.shape and out.dtype == np.float32
    assert amplitude_of(out) / amplitude_of(clip) == pytest.approx(11.0, rel=0.1)
    assert np.allclose(out[10:-10, 0, 0], out[10:-10, 16, 16], atol=1e-3)  # stays uniform


def test_out_of_band_change_is_left_alone():
    clip = flicker(25.0)
    out = eulerian_magnify(clip, FPS, 3.0, 8.0, alpha=10.0, levels=3)
    assert amplitude_of(out) / amplitude_of(clip) == pytest.approx(1.0, abs=0.1)


def test_static_video_is_unchanged_and_uint8_is_clipped_to_its_range():
    rng = np.random.default_rng(0)
    still = np.broadcast_to((rng.random((32, 32)) * 255).astype(np.uint8), (40, 32, 32))
    out = eulerian_magnify(still, FPS, 3.0, 8.0, alpha=20.0)
    assert np.allclose(out, still, atol=1e-3)
    bright = flicker(5.0, amplitude=100.0).round().astype(np.uint8)
    out = eulerian_magnify(bright, FPS, 3.0, 8.0, alpha=10.0, levels=2)
    assert out.min() == 0.0 and out.max() == 255.0


def test_short_clip_still_filters():
    out = eulerian_magnify(flicker(5.0, t=8), FPS, 3.0, 8.0, alpha=5.0)
    assert out.shape == (8, 32, 32) and np.isfinite(out).all()


@pytest.mark.parametrize(
    "low,high,match", [(0.0, 5.0, "0 < low_hz"), (8.0, 3.0, "low_hz < high_hz"), (3.0, 40.0, "30")]
)
def test_bad_band_raises_with_the_fix(low, high, match):
    with pytest.raises(MekitError, match=match):
        eulerian_magnify(flicker(5.0, t=20), FPS, low, high)


def test_too_many_levels_raises():
    with pytest.raises(MekitError, match="levels <= 5"):
        eulerian_magnify(flicker(5.0, t=20), FPS, 3.0, 8.0, levels=6)
