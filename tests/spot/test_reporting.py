"""How spotting reports: the curve on the events' time base, each video warning once, a
truncated file named as such (not as a variable frame rate), settings on the command line."""

from __future__ import annotations

import logging
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
from tests.spot.test_spotters import Event, build

from mekit.cli.main import main
from mekit.spot.input.signals import VFR_NOTE, compute_signals, curve_times
from mekit.spot.run import spot
from mekit.spot.spotters import spot_details
from mekit.synth import SynthConfig
from mekit.synth.subjects import subject_identity


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return cv2.resize(subject_identity(0, SynthConfig()).neutral(), (224, 224))


def write(path, face, n, fmt="mp4", pts_ms=None):
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width = stream.height = face.shape[0]
        stream.pix_fmt = "yuv420p"
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(n):
            image = np.clip(face + rng.normal(0, 2, face.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            if pts_ms is not None:
                frame.pts, frame.time_base = int(pts_ms[i]), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_the_curve_is_drawn_on_the_events_time_base():
    event = Event(300, 312, 330, {"brows": 1.0})
    signals = build(n=600, events=(event,))
    result = spot_details(
        signals,
    )
    assert len(result.intervals) == 1
    found = result.intervals[0]
    z = np.maximum(np.nan_to_num(result.z), 0)
    drawn = curve_times(signals)
    centre = float((drawn * z).sum() / z.sum())  # where the hump sits on the picture
    middle = (signals.time_s[found.onset] + signals.time_s[found.offset]) / 2
    step = 1 / signals.fps
    assert abs(centre - middle) <= 3 * step
    # the frames' own times put it k / 2 frames late
    late = float((signals.time_s * z).sum() / z.sum())
    assert late - middle > 0.3 * signals.k * step


def test_a_truncated_mkv_is_named_truncated_not_variable_rate(face, tmp_path):
    full = write(tmp_path / "full.mkv", face, 75, fmt="matroska")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.8)])
    signals = compute_signals(cut, k=2, progress=False)
    assert not signals.complete
    assert any("truncated" in note for note in signals.notes)
    assert VFR_NOTE not in signals.notes and not signals.variable_fps


def test_each_video_warning_is_logged_once(face, tmp_path, caplog):
    steps = [40] * 12 + [80] * 8 + [40] * 12
    pts = np.concatenate([[0], np.cumsum(steps)])
    video = write(tmp_path / "vfr.mp4", face, len(pts), pts_ms=pts)
    with caplog.at_level(logging.WARNING), pytest.warns(Warning):
        spot(video, tmp_path / "out", progress=False)
    said = [r.getMessage() for r in caplog.records if "variable frame rate" in r.getMessage()]
    assert len(said) == 1, said


def test_spot_and_analyze_take_settings(face, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):
        cv2.imwrite(str(folder / f"img{i + 1}.jpg"), face)
    config = tmp_path / "spot.toml"
    config.write_text("[spot]\nmin_z = 6.0\n")
    code = main(
        ["spot", str(folder), "--fps", "200", "--out", str(tmp_path / "o"), "--quiet"]
        + ["--config", str(config), "--set", "signals.k=2", "--set", "spot.p=0.6"]
    )
    assert code == 0
    data = (tmp_path / "o" / "spots.json").read_text()
    assert '"k": 2' in data
    assert main(["spot", str(folder), "--fps", "200", "--set", "spot.nope=1"]) == 2
    assert "unknown setting 'spot.nope'" in capsys.readouterr().err
    # analyze reads the same settings (and rejects a bad one before reading the video)
    assert main(["analyze", str(tmp_path / "none.mp4"), "--set", "spot.p=2"]) == 2
    assert "spot.p must be in (0, 1)" in capsys.readouterr().err
