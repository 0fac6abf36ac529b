"""annotated.mp4: every frame of the input with the face box, a motion strip and event labels.

One streaming pass: decode a frame (in colour, scaled so its longer side is at most
`max_side`, to even dimensions as yuv420p needs), draw on it, encode it. Drawn: the face box
the spotter's track had at that frame (the colour of the emotion while an event is on), the
label of every event on at that frame ("#2 micro: positive 81 %"; with the synthetic demo model,
whose classes are not emotions, what moved: "#2 micro: AU4+AU7", or "motion" when the AU model
found none, in one neutral colour, as the report words it), the time, and a strip along
the bottom with the motion curve of the `strip_seconds` around the frame, the threshold,
the events as coloured bars and a cursor at the frame. Encoded as H.264 yuv420p (libx264,
`+faststart` so a browser can play it while it loads) where this FFmpeg has it, else MPEG-4
Part 2. The output has as many frames as were decoded from the input, at its average rate.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from mekit.app.result import AnalysedEvent, emotion_colour
from mekit.errors import MekitError

log = logging.getLogger(__name__)

FONT = cv2.FONT_HERSHEY_SIMPLEX
IDLE_BOX = (200, 200, 200)  # BGR of the face box outside events
MOTION_COLOUR = (91, 107, 140)  # RGB of demo-model events, the report's


@dataclass(frozen=True)
class Overlay:
    """What is drawn. boxes: (N, 4) float32 face box (x0, y0, x1, y1) per frame position,
    input px, NaN where there was no face (frames past N get none). times, curve: (M,) the
    motion curve (s, noise units) with its threshold. demo: the events' model is the synthetic
    demo one: label them with their action units, not its class."""

    boxes: np.ndarray
    times: np.ndarray
    curve: np.ndarray
    threshold: float
    events: Sequence[AnalysedEvent]
    demo: bool = False


@dataclass(frozen=True)
class AnnotatedVideo:
    path: Path
    frames: int  # frames written
    codec: str
    width: int
    height: int
    stopped: str | None = None  # why decoding ended before the input's end, if it did


def output_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is at most `max_side`, both even."""
    scale = min(1.0, max_side / max(width, height))
    w = max(2, int(round(width * scale)) // 2 * 2)
    h = max(2, int(round(height * scale)) // 2 * 2)
    return w, h


def pick_codec() -> str:
    """libx264 when this FFmpeg can encode it, else mpeg4."""
    import av

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except (av.error.FFmpegError, ValueError):  # ValueError/UnknownCodecError: not built in
        return "mpeg4"


def write_annotated_video(
    video: Path,
    path: Path,
    overlay: Overlay,
    fps: float,
    *,
    max_side: int = 1280,
    crf: int = 23,
    preset: str = "veryfast",
    strip_seconds: float = 10.0,
    progress: Callable[[float], None] | None = None,
    n_frames: int = 0,
) -> AnnotatedVideo:
    """Write `path` from `video` (see the module doc). `n_frames` (the input's frame count)
    only scales `progress(fraction)`. Corrupt data mid-stream ends the output there
    (`stopped` says why); an input that cannot be opened raises `MekitError`."""
    import av

    codec = pick_codec()
    try:
        source = av.open(str(video))
    except av.error.FFmpegError as e:
        raise MekitError(f"{video}: cannot be read to annotate it: {e}") from None
    written = 0
    stopped = None
    with source:
        if not source.streams.video:
            raise MekitError(f"{video}: the file has no video stream")
        stream = source.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        out_w, out_h = output_size(width, height, max_side)
        scale = (out_w / width, out_h / height)
        painter = _Painter(overlay, out_w, out_h, scale, fps, strip_seconds)
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(30)
        options = {"movflags": "+faststart"} if codec == "libx264" else {}
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), mode="w", format="mp4", options=options) as target:
            out = target.add_stream(codec, rate=rate)
            out.width, out.height, out.pix_fmt = out_w, out_h, "yuv420p"
            if codec == "libx264":
                out.options = {"crf": str(crf), "preset": preset}
            else:
                out.bit_rate = 4_000_000
            step = max(1, n_frames // 200)
            try:
                for frame in source.decode(stream):
                    image = frame.to_ndarray(width=out_w, height=out_h, format="bgr24")
                    painter.paint(image, written)
                    target.mux(out.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
                    written += 1
                    if progress is not None and n_frames and written % step == 0:
                        progress(min(1.0, written / n_frames))
            except av.error.FFmpegError as e:
                stopped = f"decoding stopped after {written} frames: {e}"
                log.warning("%s: %s", video, stopped)
            target.mux(out.encode())
    if progress is not None:
        progress(1.0)
    return AnnotatedVideo(path, written, codec, out_w, out_h, stopped)


class _Painter:
    """Draws the overlay on output frames (BGR, in place)."""

    def __init__(
        self,
        overlay: Overlay,
        width: int,
        height: int,
        scale: tuple[float, float],
        fps: float,
        strip_seconds: float,
    ) -> None:
        self.overlay = overlay
        self.width, self.height = width, height
        self.boxes = overlay.boxes * np.array([*scale, *scale], np.float32)
        self.fps = fps if fps > 0 else 30.0
        self.half = strip_seconds / 2
        self.strip = max(36, height // 7)
        self.text = max(0.4, min(1.0, height / 720))
        curve = np.nan_to_num(np.asarray(overlay.curve, np.float64), nan=0.0)
        good = np.isfinite(overlay.threshold) and overlay.threshold > 0
        top = max(float(curve.max()) if len(curve) else 0.0, 1.2 * overlay.threshold if good else 0)
        self.top = top if top > 0 else 1.0
        self.times = np.asarray(overlay.times, np.float64)
        self.curve = np.clip(curve / self.top, 0, 1)
        self.events = [
            (e, _colour(e, overlay.demo)[::-1], _label(e, overlay.demo)) for e in overlay.events
        ]  # colours BGR

    def time_of(self, position: int) -> float:
        if position < len(self.times) and math.isfinite(self.times[position]):
            return float(self.times[position])
        return position / self.fps

    def paint(self, image: np.ndarray, position: int) -> None:
        on = [(e, c, t) for e, c, t in self.events if e.onset <= position <= e.offset]
        if position < len(self.boxes) and np.isfinite(self.boxes[position]).all():
            x0, y0, x1, y1 = (int(round(v)) for v in self.boxes[position])
            colour = on[0][1] if on else IDLE_BOX
            cv2.rectangle(image, (x0, y0), (x1, y1), colour, 2 if on else 1, cv2.LINE_AA)
        now = self.time_of(position)
        y = int(28 * self.text) + 4
        for _, colour, text in on:
            self._tag(image, text, (6, y), colour, 0.6 * self.text + 0.1)
            y += int(30 * self.text) + 6
        clock = f"{now:7.2f} s  frame {position}"
        small = 0.45 * self.text + 0.1
        (tw, _), _ = cv2.getTextSize(clock, FONT, small, 1)
        at = (self.width - tw - 10, int(28 * self.text) + 4)
        self._tag(image, clock, at, (40, 40, 40), small)
        self._strip(image, now)

    @staticmethod
    def _tag(
        image: np.ndarray, text: str, at: tuple[int, int], colour: tuple[int, ...], size: float
    ) -> None:
        (tw, th), base = cv2.getTextSize(text, FONT, size, 1)
        x, y = at
        cv2.rectangle(image, (x - 4, y - th - 5), (x + tw + 4, y + base + 2), colour, -1)
        light = sum(colour) > 450
        ink = (0, 0, 0) if light else (255, 255, 255)
        cv2.putText(image, text, (x, y), FONT, size, ink, 1, cv2.LINE_AA)

    def _strip(self, image: np.ndarray, now: float) -> None:
        h, w = self.strip, self.width
        top = self.height - h
        band = image[top:, :]
        band[:] = (band * 0.3).astype(np.uint8)
        start, end = now - self.half, now + self.half

        def x_of(t: float | np.ndarray):
            return (np.asarray(t) - start) / (end - start) * (w - 1)

        for event, colour, _ in self.events:
            t0, t1 = event.onset_s, event.offset_s
            if t1 < start or t0 > end:
                continue
            a, b = int(max(0, x_of(t0))), max(int(max(0, x_of(t0))) + 1, int(min(w - 1, x_of(t1))))
            dim = tuple(int(0.45 * c) for c in colour)
            cv2.rectangle(band, (a, 0), (b, h - 1), dim, -1)
            cv2.rectangle(band, (a, h - 5), (b, h - 1), colour, -1)
        if self.overlay.threshold > 0 and np.isfinite(self.overlay.threshold):
            ty = int(round((h - 6) * (1 - min(1.0, self.overlay.threshold / self.top)))) + 2
            cv2.line(band, (0, ty), (w - 1, ty), (0, 165, 255), 1)
        lo, hi = np.searchsorted(self.times, [start, end])
        if hi - lo >= 2:
            xs = x_of(self.times[lo:hi])
            ys = 2 + (h - 6) * (1 - self.curve[lo:hi])
            points = np.round(np.stack([xs, ys], axis=1)).astype(np.int32)
            cv2.polylines(band, [points], False, (235, 235, 235), 1, cv2.LINE_AA)
        cv2.line(band, (w // 2, 0), (w // 2, h - 1), (255, 255, 255), 1)
        cv2.putText(band, "motion", (4, 12), FONT, 0.35, (200, 200, 200), 1, cv2.LINE_AA)


def _colour(event: AnalysedEvent, demo: bool) -> tuple[int, int, int]:
    return MOTION_COLOUR if demo else emotion_colour(event.emotion)


def _label(event: AnalysedEvent, demo: bool = False) -> str:
    """ "#2 micro: positive 81 %"; with the demo model what moved: "#2 micro: AU4+AU7"."""
    if demo:
        moved = "+".join(f"AU{a['au']}" for a in event.aus) or "motion"
        return f"#{event.index} {event.kind}: {moved}"
    confidence = event.confidence
    share = "" if not math.isfinite(confidence) else f" {100 * confidence:.0f} %"
    return f"#{event.index} {event.kind}: {event.emotion}{share}"
