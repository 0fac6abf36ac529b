"""`mekit analyze VIDEO`: spot micro- and macro-expressions in anyone's video, then recognise them.

    from mekit.app.analyze import analyze_video
    analysis = analyze_video(Path("clip.mp4"), Path("out"))  # the model: see resolve_model
    for event in analysis.events:
        print(event.onset_s, event.kind, event.emotion, event.probabilities)

Stages (the names `progress(stage, fraction)` is called with, in order):
1. "spotting": one streaming pass of the unsupervised spotter (`mekit.spot.input.signals`,
   `mekit.spot.spotters`): the face track, the per-frame motion and the onset / apex / offset
   of every event. The face box at each frame is kept for the video (16 bytes a frame).
2. "recognising": a second streaming pass keeping only the frames events need: the face is
   aligned and the model's input computed as training does (`mekit.app.recognise`), the model
   gives probabilities per label, the packaged AU model the event's action units (with the
   region each moved); a motion map and a Grad-CAM map per event (PNG).
3. "rendering": annotated.mp4, every input frame with the face box, a motion strip and the
   event labels (`mekit.app.annotate`); skipped with `AnalyzeConfig(video=False)`.
4. "report": timeline.png and the self-contained report.html (`mekit.app.report`).

analysis.json and timeline.csv are written as soon as the events are known (and again at the
end), so an analysis that fails while rendering keeps its results. No stage holds the whole
video in memory.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from mekit.app.annotate import Overlay, write_annotated_video
from mekit.app.recognise import (
    Recognition,
    explanation_image,
    load_recogniser,
    motion_image,
    recognise_events,
)
from mekit.app.report import NOTHING_SPOTTED, plot_timeline, write_report
from mekit.app.result import FILES, UNKNOWN, AnalysedEvent, Analysis, VideoFacts
from mekit.config import Config
from mekit.errors import MekitError, output_folder
from mekit.fileio import atomic_open, atomic_write
from mekit.pipeline import DEMO_MODEL_NAME
from mekit.spot.input.signals import (
    DEFAULT_K_S,
    VFR_NOTE,
    MotionSignals,
    NoMotionError,
    SignalMethod,
    compute_signals,
    curve_times,
)
from mekit.spot.input.track import TrackedFrame
from mekit.spot.input.video import VideoInfo, open_video
from mekit.spot.learned.run import learned_spots
from mekit.spot.metrics import Interval
from mekit.spot.spotters import SpotConfig, SpotResult, spot_details
from mekit.train.checkpoint import model_paths

log = logging.getLogger(__name__)

MODEL_ENV = "MEKIT_MODEL"
DEMO_MODEL = Path("demo_out") / "model" / f"{DEMO_MODEL_NAME}.json"  # what `make demo` writes
STAGES = ("spotting", "recognising", "rendering", "report")
HOW_TO_GET_A_MODEL = (
    "run `make demo` (writes the demo model demo_out/model/demo-ststnet-synthetic.json, "
    "trained on synthetic faces only), or train one on a corpus with `mekit train --corpus DIR "
    "--out runs/NAME` and pass `--model runs/NAME/model.json` (or set $MEKIT_MODEL)"
)

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class AnalyzeConfig(Config, section="analyze"):
    """How to analyse a video.

    spot: the spotter's settings. face_size, flow_method, k: the spotter's face crop (px), flow
    and flow offset (see `mekit.spot.input.signals.compute_signals`). video: write annotated.mp4.
    max_side: the annotated video is scaled so its longer side is at most this (px; smaller
    inputs keep their size). crf, preset: its H.264 quality and speed. strip_seconds: the time
    the motion strip of the annotated video shows.
    """

    spot: SpotConfig = SpotConfig()
    face_size: int = 64
    flow_method: SignalMethod = SignalMethod("farneback")
    k: int | None = None  # the spotter's flow offset, frames (None: 0.2 s)
    video: bool = True
    max_side: int = 1280
    crf: int = 23
    preset: str = "veryfast"
    strip_seconds: float = 10.0


def default_model_path() -> Path | None:
    """The model to use when none is given, as an absolute path: $MEKIT_MODEL if set, else the
    demo model ./demo_out/model/demo-ststnet-synthetic.json if it exists, else None."""
    env = os.environ.get(MODEL_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return DEMO_MODEL.resolve() if DEMO_MODEL.is_file() else None


def resolve_model(path: Path | None) -> Path:
    """The sidecar (.json) of the model to use: `path` (stem, .json or .safetensors) when
    given, else `default_model_path()`; `MekitError` saying how to get one when there is none
    or the file is missing."""
    where = "--model"
    if path is None:
        path = default_model_path()
        if path is None:
            raise MekitError(f"no model to recognise emotions with: {HOW_TO_GET_A_MODEL}")
        where = f"${MODEL_ENV}" if os.environ.get(MODEL_ENV, "").strip() else "the demo model"
    weights, sidecar = model_paths(path)
    if not sidecar.is_file():
        raise MekitError(
            f"model {path} ({where}) not found: a mekit model is NAME.json beside "
            f"NAME.safetensors; {HOW_TO_GET_A_MODEL}"
        )
    return sidecar


class _Stages:
    """Calls `progress(stage, fraction)` when the fraction moved by 1 % (and at 0 and 1) and
    times each stage."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._stage = ""
        self._started = 0.0
        self._last = -1.0

    def start(self, stage: str) -> None:
        self._stage, self._started, self._last = stage, time.perf_counter(), -1.0
        self.update(0.0)

    def update(self, fraction: float) -> None:
        fraction = min(1.0, max(0.0, fraction))
        if self.progress is not None and (
            fraction - self._last >= 0.01 or (fraction in (0.0, 1.0) and fraction != self._last)
        ):
            self._last = fraction
            self.progress(self._stage, fraction)

    def end(self) -> None:
        self.update(1.0)
        self.timings[self._stage] = time.perf_counter() - self._started


class _Boxes:
    """Face box per frame index (x0, y0, x1, y1, frame px; NaN without a face), growing."""

    def __init__(self, expected: int) -> None:
        self.array = np.full((max(16, expected), 4), np.nan, np.float32)
        self.n = 0
        self._inverse: tuple[int, np.ndarray] | None = None

    def add(self, tracked: TrackedFrame) -> None:
        index = tracked.index
        if index >= len(self.array):
            grown = np.full((2 * index + 16, 4), np.nan, np.float32)
            grown[: len(self.array)] = self.array
            self.array = grown
        self.n = max(self.n, index + 1)
        if not tracked.face_ok or tracked.landmarks is None or tracked.matrix is None:
            return
        if self._inverse is None or self._inverse[0] != tracked.shot:
            self._inverse = (tracked.shot, cv2.invertAffineTransform(tracked.matrix))
        inverse = self._inverse[1]
        points = tracked.landmarks @ inverse[:, :2].T + inverse[:, 2]
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        pad = 0.05 * (x1 - x0)
        self.array[index] = (x0 - pad, y0 - 0.15 * (y1 - y0), x1 + pad, y1 + pad)

    def boxes(self) -> np.ndarray:
        return self.array[: self.n]


def probe(video: Path) -> VideoInfo:
    """The video's facts, or a `MekitError` naming the file and what to do."""
    video = Path(video)
    if video.is_dir():
        raise MekitError(f"{video} is a folder; mekit analyze takes one video file")
    try:
        info = open_video(video)
    except MekitError as e:
        raise MekitError(
            f"{e}. mekit analyze reads video files FFmpeg decodes (MP4, MOV, AVI, MKV, WebM); "
            "check the file is complete, or convert it: ffmpeg -i INPUT -c:v libx264 OUTPUT.mp4"
        ) from None
    if info.n_frames == 0:
        raise MekitError(f"{video}: the video holds no frames")
    return info


@dataclass(frozen=True)
class _Spotting:
    """What the spotting pass found: the motion signals, the unsupervised spotter's result
    (its curve is drawn even when a learned spotter gives the events), the events' intervals,
    the spotter that gave them ("unsupervised" or "softnet: PATH") and the face box per frame
    (see `_Boxes`)."""

    signals: MotionSignals
    curve: SpotResult
    intervals: list[Interval]
    spotter: str
    boxes: np.ndarray

    @property
    def drawn_at(self) -> np.ndarray:
        """The curve's times on the events' time base (s)."""
        return curve_times(self.signals)


def analyze_video(
    video: Path,
    out: Path,
    model: Path | None = None,
    config: AnalyzeConfig = AnalyzeConfig(),
    progress: Progress | None = None,
    spotter: Path | None = None,
) -> Analysis:
    """Spot and recognise the expressions of `video`; write every output to `out` (see the
    module doc and `mekit.app.result` for analysis.json). `model`: a model file (see
    `resolve_model`). `progress(stage, fraction 0..1)` is called as work advances.
    `spotter`: trained SOFTNet spotters (a `mekit train --model softnet` run folder or a
    spotter file) to find the events with, instead of the unsupervised spotter (whose motion
    curve the pictures still show).

    Raises `MekitError` naming the file and the fix for a file that is not a readable video,
    a video with no face, or no model; a video in which nothing is spotted gives a result with
    no events and a warning saying so.
    """
    started = time.perf_counter()
    video, out = Path(video), Path(out)
    info = probe(video)
    recogniser = load_recogniser(resolve_model(model))  # a bad model fails before the long pass
    output_folder(out)
    output_folder(out / "events")
    stages = _Stages(progress)
    warnings: list[str] = list(recogniser.notes)

    stages.start("spotting")
    spotting = _spot(video, info, config, spotter, stages.update)
    warnings += [w for w in spotting.curve.warnings if w != VFR_NOTE]  # said once, below
    stages.end()
    facts = _facts(video, info, spotting.signals)
    if facts.variable_fps:
        warnings.append(
            f"variable frame rate: times come from the timestamps; annotated.mp4 is written at "
            f"a constant {facts.fps:g} frames/s"
        )

    stages.start("recognising")
    recognitions = recognise_events(
        video, spotting.intervals, recogniser, facts.fps, progress=stages.update
    )
    events = _events(spotting.intervals, recognitions, spotting.signals, out, warnings)
    if not events:
        warnings.append(_nothing_spotted(spotting.curve if spotter is None else None))
    stages.end()
    files: dict[str, str | None] = {**FILES, "timeline_png": None, "mp4": None, "html": None}
    analysis = Analysis(
        out,
        facts,
        recogniser.info,
        tuple(events),
        files,
        tuple(warnings),
        0.0,
        stages.timings,
        spotting.spotter,
    )
    _write_tables(analysis, recogniser.info.labels)

    if config.video:
        stages.start("rendering")
        files["mp4"] = _render(video, out, spotting, analysis, config, warnings, stages.update)
        stages.end()

    stages.start("report")
    _plot_timeline(analysis, spotting)
    files["timeline_png"], files["html"] = FILES["timeline_png"], FILES["html"]
    analysis = replace(
        analysis, files=files, warnings=tuple(warnings), seconds=time.perf_counter() - started
    )
    write_report(analysis, out / FILES["html"], out / FILES["timeline_png"])
    stages.end()
    analysis = replace(analysis, seconds=time.perf_counter() - started, timings=stages.timings)
    _write_tables(analysis, recogniser.info.labels)
    return analysis


def _spot(
    video: Path,
    info: VideoInfo,
    config: AnalyzeConfig,
    spotter: Path | None,
    progress: Callable[[float], None],
) -> _Spotting:
    """The spotting pass: one streaming read of `video` for the motion signals and face boxes,
    then the unsupervised spotter, and the learned `spotter` when one is given."""
    boxes = _Boxes(info.n_frames)
    total = max(1, info.n_frames)

    def on_frame(tracked: TrackedFrame) -> None:
        boxes.add(tracked)
        progress((tracked.index + 1) / total)

    try:
        signals = compute_signals(
            video,
            k=config.k,
            face_size=config.face_size,
            method=config.flow_method,
            progress=False,
            name=str(video),
            on_frame=on_frame,
        )
    except NoMotionError:
        # The spotter's own advice names reference='first', which analyze does not take: say
        # what the user can change here instead.
        gap = f"{config.k} frames" if config.k else f"{DEFAULT_K_S:g} s"
        raise MekitError(
            f"{video}: no motion could be measured in its {info.n_frames} frames: mekit analyze "
            f"compares each frame with the one {gap} earlier, the face in view in both; give a "
            "clip of at least a second with the face in view throughout, or a shorter gap with "
            "--set signals.k=N (frames)"
        ) from None
    curve = spot_details(signals, config.spot)
    if spotter is None:
        return _Spotting(signals, curve, list(curve.intervals), "unsupervised", boxes.boxes())
    learned = learned_spots(video, [Path(spotter)], fps=float(signals.fps))
    return _Spotting(signals, curve, learned.intervals, f"softnet: {spotter}", boxes.boxes())


def _render(
    video: Path,
    out: Path,
    spotting: _Spotting,
    analysis: Analysis,
    config: AnalyzeConfig,
    warnings: list[str],
    progress: Callable[[float], None],
) -> str | None:
    """Write annotated.mp4 and give its name; None, with a warning saying why, when it could
    not be written (the results already written stay)."""
    facts = analysis.video
    curve = spotting.curve
    overlay = Overlay(
        spotting.boxes,
        spotting.drawn_at,
        curve.z,
        curve.threshold,
        analysis.events,
        analysis.model.demo,
    )
    try:
        annotated = write_annotated_video(
            video,
            out / FILES["mp4"],
            overlay,
            facts.fps,
            max_side=config.max_side,
            crf=config.crf,
            preset=config.preset,
            strip_seconds=config.strip_seconds,
            progress=progress,
            n_frames=facts.n_frames,
        )
    except (MekitError, OSError) as e:
        warnings.append(f"annotated.mp4 could not be written: {e}")
        log.warning("%s: annotated.mp4 could not be written: %s", video, e)
        return None
    if annotated.frames != facts.n_frames:
        warnings.append(
            f"annotated.mp4 has {annotated.frames} frames, the analysis read "
            f"{facts.n_frames}" + (f" ({annotated.stopped})" if annotated.stopped else "")
        )
    return FILES["mp4"]


def _plot_timeline(analysis: Analysis, spotting: _Spotting) -> None:
    """timeline.png: the motion curve, its threshold and the events, titled with the counts."""
    events, info = analysis.events, analysis.model
    title = (
        f"{analysis.video.name}: {len(events)} events "
        f"({sum(e.kind == 'micro' for e in events)} micro, "
        f"{sum(e.kind == 'macro' for e in events)} macro); model {info.name}"
    )
    plot_timeline(
        analysis.out / FILES["timeline_png"],
        spotting.drawn_at,
        spotting.curve.z,
        spotting.curve.threshold,
        events,
        title,
        demo=info.demo,
    )


def _facts(video: Path, info: VideoInfo, signals: MotionSignals) -> VideoFacts:
    n = len(signals)
    fps = float(signals.fps)
    duration = n / fps if fps > 0 else math.nan
    if signals.variable_fps and n:
        duration = float(signals.time_s[-1]) + 1.0 / fps
    return VideoFacts(
        name=video.name,
        path=video,
        fps=fps,
        n_frames=n,
        duration_s=duration,
        width=info.width,
        height=info.height,
        variable_fps=bool(signals.variable_fps),
        complete=bool(signals.complete),
    )


def _seconds(signals: MotionSignals, frame: int) -> float:
    frames = signals.frame
    at = int(np.searchsorted(frames, frame))
    if at < len(frames) and frames[at] == frame:
        return float(signals.time_s[at])
    return frame / float(signals.fps)


def _events(
    intervals: Sequence[Interval],
    recognitions: Sequence[Recognition | str],
    signals: MotionSignals,
    out: Path,
    warnings: list[str],
) -> list[AnalysedEvent]:
    """One `AnalysedEvent` per interval, its map PNGs written; failures keep their timing."""
    events = []
    for number, (interval, found) in enumerate(zip(intervals, recognitions, strict=True), 1):
        middle = (interval.onset + interval.offset) // 2
        apex = interval.apex if interval.apex is not None else middle
        event = AnalysedEvent(
            index=number,
            kind=interval.kind,
            onset=interval.onset,
            apex=apex,
            offset=interval.offset,
            onset_s=_seconds(signals, interval.onset),
            apex_s=_seconds(signals, apex),
            offset_s=_seconds(signals, interval.offset),
            score=float(interval.score),
            during=interval.during,
        )
        if isinstance(found, str):
            warnings.append(
                f"event {number} ({interval.kind}, frames {interval.onset}-{interval.offset}) "
                f"was not recognised: {found}"
            )
            events.append(event)
            continue
        motion = f"events/event_{number:02d}_motion.png"
        _write_png(out / motion, motion_image(found))
        explanation = None
        picture = explanation_image(found, found.predicted)
        if picture is not None:
            explanation = f"events/event_{number:02d}_explain.png"
            _write_png(out / explanation, picture)
        events.append(
            replace(
                event,
                emotion=found.emotion,
                probabilities=dict(found.probabilities),
                motion_map=motion,
                explanation_map=explanation,
                aus=tuple(a.to_json() for a in found.aus),
            )
        )
    return events


def _write_png(path: Path, image: np.ndarray) -> None:
    """cv2.imwrite, whose False (it raises nothing) becomes a MekitError naming the file."""
    try:
        written = cv2.imwrite(str(path), image)
    except cv2.error as e:
        raise MekitError(f"cannot write {path} ({e})") from None
    if not written or not path.is_file():
        raise MekitError(
            f"cannot write {path}: make {path.parent} a writable folder with free space, "
            "or give another --out"
        )


def _nothing_spotted(spotted: SpotResult | None) -> str:
    vetoed = [v.reason for v in spotted.vetoed] if spotted is not None else []
    why = ""
    if vetoed:
        counts = ", ".join(f"{vetoed.count(r)} {r}" for r in dict.fromkeys(vetoed))
        why = f" ({len(vetoed)} candidates were set aside as {counts})"
    return (
        f"{NOTHING_SPOTTED}: no micro- or macro-expression rose above the spotter's threshold{why}"
    )


def _write_tables(analysis: Analysis, labels: Sequence[str]) -> None:
    """analysis.json and timeline.csv (each written aside and renamed: readers never see half)."""
    out = analysis.out
    text = json.dumps(analysis.to_json(), indent=2, allow_nan=False) + "\n"
    _replace(out / FILES["json"], text)
    rows = [
        [
            "index",
            "kind",
            "onset",
            "apex",
            "offset",
            "onset_s",
            "apex_s",
            "offset_s",
            "score",
            "emotion",
            *(f"prob_{label}" for label in labels),
            "aus",
            "au_details",
        ]
    ]
    for e in analysis.events:
        probs = [
            f"{e.probabilities[label]:.4f}" if label in e.probabilities else "" for label in labels
        ]
        rows.append(
            [
                str(e.index),
                e.kind,
                str(e.onset),
                str(e.apex),
                str(e.offset),
                f"{e.onset_s:.3f}",
                f"{e.apex_s:.3f}",
                f"{e.offset_s:.3f}",
                f"{e.score:.3f}",
                e.emotion or UNKNOWN,
                *probs,
                e.au_codes,
                "; ".join(_au_detail(a) for a in e.aus),
            ]
        )
    with atomic_open(out / FILES["csv"], "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _au_detail(au: dict) -> str:
    """ "AU4 brow lowerer 0.83 brows" (", left" / ", right" for one side)."""
    side = "" if au.get("side", "both") == "both" else f" {au['side']}"
    return f"AU{au['au']} {au['name']} {au['probability']:.2f} {au['region']}{side}"


def _replace(path: Path, text: str) -> None:
    atomic_write(path, text)
