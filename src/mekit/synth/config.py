"""The synthetic corpus's settings: one frozen dataclass, checked when it is made."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mekit.config import Config, check_range
from mekit.errors import MekitError
from mekit.synth.aus import EMOTION_AUS


@dataclass(frozen=True)
class SynthConfig(Config, section="synth"):
    """What to generate. Lengths are px at output resolution, times ms, rates frames/s.

    `nuisances=False` is the clean mode: no blinks, head drift/rotation, flicker or sensor
    noise, and frames saved as JPEG quality 100 with 4:4:4 chroma. With `nuisances=True` each
    finer field applies; set one to 0 to switch that nuisance off alone.
    """

    subjects: int = 8
    clips_per_subject: int = 12
    seed: int = 0
    fps: float = 200.0
    frame_size: int = 192
    face_width: float = 128.0
    emotions: tuple[str, ...] = ("happiness", "surprise", "disgust", "repression")
    amplitude_px: tuple[float, float] = (0.5, 3.0)
    duration_ms: tuple[float, float] = (40.0, 500.0)
    apex_fraction: tuple[float, float] = (0.25, 0.6)  # apex position within onset..offset
    residual: tuple[float, float] = (0.0, 0.4)  # share of the apex field left at offset
    lead_ms: tuple[float, float] = (20.0, 100.0)  # frames kept before onset / after offset
    identity_strength: float = 1.0  # 0 = every subject is its plain base photo
    nuisances: bool = True
    blink_prob: float = 0.3  # per clip, outside onset..apex
    blink_ms: tuple[float, float] = (100.0, 250.0)
    drift_px: float = 1.0  # largest head translation within a clip (slow: about one sweep)
    rotation_deg: float = 0.2  # largest head roll within a clip
    flicker: float = 0.015  # largest global gain change per frame (0.015 = 1.5 %)
    noise_sigma: tuple[float, float] = (1.0, 2.0)  # Gaussian sensor noise, grey levels
    jpeg_quality: tuple[int, int] = (85, 95)
    long_videos: bool = True
    long_video_fps: tuple[float, ...] = (30.0, 200.0)  # one video per entry
    long_video_seconds: float = 12.0
    micro_per_video: int = 6
    macro_per_video: int = 2
    macro_amplitude_px: tuple[float, float] = (4.0, 8.0)
    macro_duration_ms: tuple[float, float] = (500.0, 2000.0)
    long_drift_px: float = 2.0  # slow head drift over a whole long video

    def check(self) -> None:
        bad = [e for e in self.emotions if e not in EMOTION_AUS]
        if bad or not self.emotions:
            raise MekitError(
                f"unknown emotion(s) {bad or '(none given)'} in synth.emotions; "
                f"valid: {', '.join(EMOTION_AUS)}"
            )
        check_range(self, "subjects", 1, 99)  # sub01..sub99
        check_range(self, "clips_per_subject", 1, 99)
        check_range(self, "frame_size", 1)
        check_range(self, "seed", 0)
        if not self.fps > 0 or not all(f > 0 for f in self.long_video_fps):
            raise MekitError("synth.fps and synth.long_video_fps must be positive")
        if not 0 < self.face_width <= 0.9 * self.frame_size:
            raise MekitError(
                f"synth.face_width ({self.face_width}) must be positive and at most 0.9 x "
                f"synth.frame_size ({self.frame_size})"
            )
        ranges = {
            "amplitude_px": (self.amplitude_px, 0.0, math.inf),
            "duration_ms": (self.duration_ms, 0.0, math.inf),
            "apex_fraction": (self.apex_fraction, 0.0, 1.0),
            "residual": (self.residual, 0.0, 1.0),
            "lead_ms": (self.lead_ms, 0.0, math.inf),
            "blink_ms": (self.blink_ms, 0.0, math.inf),
            "noise_sigma": (self.noise_sigma, 0.0, math.inf),
            "jpeg_quality": (self.jpeg_quality, 1, 100),
            "macro_amplitude_px": (self.macro_amplitude_px, 0.0, math.inf),
            "macro_duration_ms": (self.macro_duration_ms, 0.0, math.inf),
        }
        for name, (pair, lo, hi) in ranges.items():  # each a (low, high) pair by its type
            a, b = pair
            if a > b:
                raise MekitError(f"synth.{name} is reversed: low {a} > high {b}; swap them")
            if a < lo or b > hi or (name.endswith("_px") and a <= 0):
                raise MekitError(f"synth.{name} {pair} must lie within ({lo}, {hi})")
        check_range(self, "blink_prob", 0, 1)
        for name in (
            "drift_px",
            "rotation_deg",
            "flicker",
            "identity_strength",
            "long_drift_px",
            "micro_per_video",
            "macro_per_video",
        ):
            check_range(self, name, 0)
        check_range(self, "long_video_seconds", 0, lo_open=True)
