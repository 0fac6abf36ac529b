"""What real video showed the spotter doing wrong: events in a static compressed video,
duplicate and overlapping intervals, an apex on the onset, micro-expressions of 20 px."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest
from tests.spot.test_spotters import Event, build

from mekit.spot.input.signals import compute_signals
from mekit.spot.metrics import Interval
from mekit.spot.spotters import SpotConfig, resolve_overlaps, spot_details, spot_intervals
from mekit.synth import SynthConfig
from mekit.synth.subjects import subject_identity


def static_video(path, sigma: float, seconds: float = 4.0, fps: int = 30, size: int = 256):
    """A still synthetic face (no motion at all) with sensor noise `sigma`, encoded with
    libx264's default settings (crf 23)."""
    import av

    face = cv2.resize(subject_identity(0, SynthConfig()).neutral(), (size, size))
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(int(seconds * fps)):
            noisy = np.clip(face + rng.normal(0, sigma, face.shape), 0, 255) if sigma else face
            frame = av.VideoFrame.from_ndarray(noisy.astype(np.uint8), format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("sigma", [0.0, 3.0])
def test_a_static_libx264_video_gives_no_event(tmp_path, sigma):
    signals = compute_signals(static_video(tmp_path / "still.mp4", sigma), progress=False)
    result = spot_details(signals, SpotConfig())
    assert result.intervals == ()
    assert float(np.max(result.z)) < SpotConfig().min_z


def test_overlapping_and_duplicate_intervals_become_one():
    signals = build(n=300)
    found = resolve_overlaps(
        [
            Interval(141, 148, "micro", 144, 0.6),
            Interval(144, 150, "micro", 147, 0.7),
            Interval(160, 171, "micro", 165, 0.9),
            Interval(160, 173, "micro", 165, 0.8),
            Interval(200, 210, "micro", 205, 0.6),
        ],
        signals,
    )
    assert [(i.onset, i.offset, i.apex) for i in found] == [
        (141, 150, 147),
        (160, 173, 165),
        (200, 210, 205),
    ]
    assert [i.score for i in found] == [0.7, 0.9, 0.6]


@pytest.mark.parametrize("seed", range(4))
def test_spotted_intervals_never_overlap_and_the_apex_is_inside(seed):
    rng = np.random.default_rng(seed)
    events, t = [], 100
    for j in range(10):
        length = int(rng.integers(10, 60))
        apex = t + int(rng.integers(3, length - 2))
        events.append(Event(t, apex, t + length, {"mouth": float(rng.uniform(0.3, 1.5))}))
        # pairs close enough to run together, then a quiet stretch
        t += length + (int(rng.integers(3, 15)) if j % 2 == 0 else 250)
    found = spot_intervals(build(n=t + 100, events=tuple(events), seed=seed))
    assert found
    for a, b in zip(found, found[1:], strict=False):
        assert a.offset < b.onset
    for i in found:
        assert i.onset < i.apex <= i.offset


def test_the_apex_is_at_the_peak_not_the_onset():
    event = Event(300, 318, 340, {"brows": 1.0})
    found = spot_intervals(build(n=600, events=(event,)))
    assert len(found) == 1
    assert abs(found[0].apex - event.apex) <= 4


def test_micro_or_macro_by_amplitude_and_too_large_vetoed():
    config = SpotConfig()
    short = (300, 310, 325)  # 250 ms: micro by duration
    for px, kind in ((0.8, "micro"), (4.0, "macro")):
        found = spot_intervals(build(n=600, events=(Event(*short, {"mouth": px}),)), config)
        assert [i.kind for i in found] == [kind], px
    result = spot_details(build(n=600, events=(Event(*short, {"brows": 20.0}),)), config)
    assert result.intervals == ()
    assert [v.reason for v in result.vetoed] == ["too large"]
