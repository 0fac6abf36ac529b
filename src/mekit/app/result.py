"""What an analysis found, as values: the video, the model, the events; and analysis.json.

`Analysis.to_json()` is the `analysis.json` schema the web server reads (keys fixed):

    {"video": name, "fps", "n_frames", "duration_s", "width", "height",
     "model": {"path", "name", "labels", "demo", "trained_on"},
     "events": [{"index" (1-based), "kind", "onset", "apex", "offset", "onset_s", "apex_s",
                 "offset_s", "score", "emotion", "probabilities": {label: p},
                 "aus": [{"au", "name", "probability", "region", "side"}],
                 "motion_map", "explanation_map"}],
     "files": {"json", "csv", "timeline_png", "mp4", "html"}, "warnings": [...], "seconds",
     "spotter": "unsupervised" or "softnet: PATH"}

Paths are relative to the output folder. An event whose face or flow step failed has emotion
"unknown", empty probabilities and null maps (its timing is kept, and a warning says why); a
file that was not written (`--no-video`: the MP4) is null in `files`. `aus` are the action
units the packaged AU model found (`mekit.train.au_model`), most probable first: "region" is
where on the face it acts (brows, eyes, nose, mouth, chin), "side" the half of the image that
moved most there ("left", "right" or "both"); empty when none reached its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UNKNOWN = "unknown"
# An event recognised with no class above the model's abstention threshold.
UNCERTAIN = "uncertain"

FILES = {
    "json": "analysis.json",
    "csv": "timeline.csv",
    "timeline_png": "timeline.png",
    "mp4": "annotated.mp4",
    "html": "report.html",
}

# RGB colours of the emotions mekit's label schemes use; others cycle through PALETTE.
EMOTION_COLOURS: dict[str, tuple[int, int, int]] = {
    "negative": (214, 39, 40),
    "positive": (44, 160, 44),
    "surprise": (255, 127, 14),
    "happiness": (44, 160, 44),
    "disgust": (140, 86, 75),
    "repression": (148, 103, 189),
    "anger": (214, 39, 40),
    "sadness": (31, 119, 180),
    "fear": (227, 119, 194),
    "contempt": (188, 189, 34),
    "others": (23, 190, 207),
    UNKNOWN: (150, 150, 150),
    UNCERTAIN: (120, 120, 120),
}
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
)


def emotion_colour(emotion: str) -> tuple[int, int, int]:
    """A fixed RGB colour for an emotion label (the same label always gets the same colour)."""
    if emotion in EMOTION_COLOURS:
        return EMOTION_COLOURS[emotion]
    return PALETTE[sum(emotion.encode()) % len(PALETTE)]


@dataclass(frozen=True)
class VideoFacts:
    """The analysed video: frame rate, frames read, duration (s) and size (px)."""

    name: str
    path: Path
    fps: float
    n_frames: int
    duration_s: float
    width: int
    height: int
    variable_fps: bool = False
    complete: bool = True  # every frame could be decoded


@dataclass(frozen=True)
class ModelInfo:
    """The recognition model: its sidecar path, registered name, labels and provenance.

    demo: the demo model of `make demo` (trained on synthetic faces only).
    metrics: the cross-validation metrics its sidecar records (None when absent).
    oracle: those metrics come from test-oracle epoch selection (flagged wherever they appear).
    """

    path: Path
    name: str
    labels: tuple[str, ...]
    demo: bool
    trained_on: str
    metrics: dict[str, Any] | None = None
    created: str = ""
    oracle: bool = False  # its figures come from test-oracle epoch selection (not an estimate)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.name,
            "labels": list(self.labels),
            "demo": self.demo,
            "trained_on": self.trained_on,
            "oracle": self.oracle,
        }


@dataclass(frozen=True)
class AnalysedEvent:
    """One spotted event: frames (0-based positions in the video), seconds, spotter score in
    [0, 1), and the model's emotion with its probabilities; map paths relative to the output
    folder (None when the face or flow step failed)."""

    index: int
    kind: str
    onset: int
    apex: int
    offset: int
    onset_s: float
    apex_s: float
    offset_s: float
    score: float
    emotion: str = UNKNOWN
    probabilities: dict[str, float] = field(default_factory=dict)
    motion_map: str | None = None
    explanation_map: str | None = None
    during: str = ""  # "speech": the person was speaking (brows/eyes event); "" otherwise
    aus: tuple[dict[str, Any], ...] = ()  # {"au", "name", "probability", "region", "side"}

    @property
    def au_codes(self) -> str:
        """The AUs as a FACS code, most probable first: "4+7" ("" when none)."""
        return "+".join(str(a["au"]) for a in self.aus)

    @property
    def confidence(self) -> float:
        """The probability of the emotion given; for an "uncertain" event the highest class
        probability (below the model's threshold); NaN when unknown."""
        if self.emotion == UNCERTAIN and self.probabilities:
            return max(self.probabilities.values())
        return self.probabilities.get(self.emotion, float("nan"))

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "onset": self.onset,
            "apex": self.apex,
            "offset": self.offset,
            "onset_s": round(self.onset_s, 4),
            "apex_s": round(self.apex_s, 4),
            "offset_s": round(self.offset_s, 4),
            "score": round(self.score, 4),
            "emotion": self.emotion,
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "aus": [dict(a) for a in self.aus],
            "motion_map": self.motion_map,
            "explanation_map": self.explanation_map,
            "during": self.during,
        }


@dataclass(frozen=True)
class Analysis:
    """The result of `analyze_video`: written to `out` as the files in `files`.

    timings: seconds per stage ("spotting", "recognising", "rendering", "report").
    """

    out: Path
    video: VideoFacts
    model: ModelInfo
    events: tuple[AnalysedEvent, ...]
    files: dict[str, str | None]
    warnings: tuple[str, ...]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    spotter: str = "unsupervised"  # or "softnet: PATH" (`mekit analyze --spotter`)

    def path(self, key: str) -> Path | None:
        """The absolute path of output `key` ("json", "csv", "mp4", ...), None if not written."""
        name = self.files.get(key)
        return None if name is None else self.out / name

    def to_json(self) -> dict[str, Any]:
        """The analysis.json document (see the module doc)."""
        return {
            "video": self.video.name,
            "fps": float(self.video.fps),
            "n_frames": int(self.video.n_frames),
            "duration_s": round(float(self.video.duration_s), 4),
            "width": int(self.video.width),
            "height": int(self.video.height),
            "model": self.model.to_json(),
            "events": [e.to_json() for e in self.events],
            "files": dict(self.files),
            "warnings": list(self.warnings),
            "seconds": round(float(self.seconds), 3),
            "spotter": self.spotter,
        }
