"""Speech awareness: a synthetic talking mouth is found as speech and its motion is not
reported as micro-expressions; a brow raise while speaking is kept and marked."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import cv2
import numpy as np
import pytest

from mekit.spot.input.signals import compute_signals
from mekit.spot.speech import SpeechConfig, audio_envelope, speaking
from mekit.spot.spotters import SpotConfig, spot_details
from mekit.synth import SynthConfig
from mekit.synth.aus import expression_field
from mekit.synth.render import FrameRenderer
from mekit.synth.subjects import subject_identity

FPS = 25.0


def talking_frames(brow_at: float | None = None) -> list[np.ndarray]:
    """5 s of a synthetic face, 192 px: still for 1 s, then the mouth opens and closes three
    times a second for 3 s (lips part, AU25, with a dark mouth between them), still again;
    with `brow_at` (s), a 0.3 s brow raise (AU1+2) there too."""
    identity = subject_identity(0, SynthConfig())
    renderer = FrameRenderer(identity)
    size = identity.face.shape[0]
    lips = expression_field([25], identity.landmarks, (size, size), 7.0)
    brows = expression_field([1, 2], identity.landmarks, (size, size), 3.0)
    lm = identity.landmarks
    rng = np.random.default_rng(0)
    frames = []
    for i in range(125):
        t = i / FPS
        opening = max(0.0, np.sin(2 * np.pi * 3.0 * t)) if 1.0 <= t < 4.0 else 0.0
        field = lips * np.float32(opening)
        if brow_at is not None and brow_at <= t < brow_at + 0.3:
            field = field + brows * np.float32(np.sin(np.pi * (t - brow_at) / 0.3))
        image = renderer.render(field, noise_sigma=1.0, rng=rng)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if opening > 0.05:
            centre = (lm[62] + lm[66]) / 2 + np.array([0.0, 3.5 * opening])
            half = np.linalg.norm(lm[64] - lm[60]) / 2
            axes = (int(half * 0.8), max(1, int(7 * opening)))
            cv2.ellipse(image, (int(centre[0]), int(centre[1])), axes, 0, 0, 360, 30, -1)
        frames.append(image)
    return frames


@pytest.fixture(scope="module")
def talking():
    return compute_signals(talking_frames(), fps=FPS, progress=False)


def test_the_talking_mouth_is_speech_and_not_a_micro_expression(talking):
    result = spot_details(talking, SpotConfig())
    assert result.speech is not None
    times = talking.time_s
    assert result.speech[(times > 1.3) & (times < 3.7)].mean() > 0.9
    assert not result.speech[times < 0.6].any() and not result.speech[times > 4.5].any()
    assert [i for i in result.intervals if i.kind == "micro"] == []
    assert result.intervals == ()  # the mouth does not count while speaking
    # without the speech rule the same syllables are reported as events
    plain = spot_details(talking, replace(SpotConfig(), speech_aware=False))
    assert len(plain.intervals) >= 4


def test_a_brow_raise_while_speaking_is_kept_and_marked():
    signals = compute_signals(talking_frames(brow_at=2.4), fps=FPS, progress=False)
    result = spot_details(signals, SpotConfig())
    found = [i for i in result.intervals if i.onset <= 2.7 * FPS and i.offset >= 2.4 * FPS]
    assert len(found) == 1
    assert found[0].during == "speech"


def test_speaking_needs_repeated_openings():
    times = np.arange(100) / 25.0
    still = np.full(100, 0.1)
    once = still.copy()
    once[40:50] += 0.2 * np.sin(np.linspace(0, np.pi, 10))  # one opening: a surprised mouth
    chatter = still + 0.15 * np.maximum(0, np.sin(2 * np.pi * 4 * times))
    assert not speaking(still, times).any()
    assert not speaking(once, times).any()
    assert speaking(chatter, times).mean() > 0.9
    # sound and one opening: speech near the opening only
    loud = np.where((times > 1.4) & (times < 2.2), -20.0, -60.0)
    voiced = speaking(once, times, loud)
    assert voiced[45] and not voiced[:20].any() and not voiced[80:].any()
    assert not speaking(once, times, loud, SpeechConfig(audio_db=50.0)).any()


def test_audio_envelope_follows_the_sound(tmp_path):
    import av

    path = tmp_path / "voice.mp4"
    rate = 16000
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(25))
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=rate)
        t = np.arange(2 * rate) / rate
        tone = np.where((t > 0.8) & (t < 1.2), 0.5 * np.sin(2 * np.pi * 220 * t), 0.0)
        for _ in range(50):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), "rgb24")
            container.mux(video.encode(frame))
        chunk = 1024
        for start in range(0, len(tone) - chunk + 1, chunk):
            samples = tone[start : start + chunk].astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(audio.encode(frame))
        container.mux(video.encode())
        container.mux(audio.encode())
    times = np.arange(50) / 25.0
    level = audio_envelope(path, times)
    assert level is not None and level.shape == (50,)
    assert level[25] > level[5] + 30  # the tone at 1.0 s against silence at 0.2 s
    silent = tmp_path / "silent.mp4"
    with av.open(str(silent), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(25))
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), "rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
    assert audio_envelope(silent, times[:5]) is None
