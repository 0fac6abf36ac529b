"""Per-frame motion signals of a long video, computed in one streaming pass.

`compute_signals` takes, at every frame t, the dense optical flow between the aligned face
crops of frames t - k and t from the streaming front end (`mekit.spot.input.flow_stream`:
decode, track, a ring of the last k + 1 frames), removes rigid head motion (the mean flow of
the nose bridge, which no action unit moves much, is subtracted from the whole field), and
reduces the field to a few numbers per frame. Memory does not grow with the video's length
(the output arrays, a few tens of bytes per frame, aside).

The flow offset k. A value at t compares frame t with frame t - k, so when an expression's
rise from onset to apex is at most k frames, the motion at t = apex is the full apex
displacement and the signal peaks at the apex. SOFTNet (Liong et al., 2021) sets k to half the
average expression length of the corpus; micro-expressions last at most 0.5 s, typically
0.3-0.5 s, hence `DEFAULT_K_S = 0.2` s: k = round(0.2 fps), 6 frames at 30 fps, 40 at 200 fps.
Pass `k` to choose another (a macro-expression spotter may want more). `reference="first"`
instead compares every frame with the first frame of the stream (apex spotting inside an
onset..offset clip: the apex is where the face is furthest from its onset).

Regions are masks in the aligned crop built from the landmarks at the start of each shot
(`mekit.spot.input.track`): brows (with the forehead strip above them), eyes (lids), mouth
(lips and chin), cheeks and nose, and the lower nose bridge (landmarks 29-30, away from the
eyes, whose blinks a flow solver would smear into it) for the rigid motion. A new shot (a new
crop transform) gets new masks; the front end crops its buffered frames again, so the signals
run on without a gap.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mekit.config import Config, check_range, choice_enum
from mekit.errors import MekitError
from mekit.faces.landmarks import BROWS, MOUTH
from mekit.spot.input.flow_stream import METHODS, FlowStream, FrameSource, open_frames
from mekit.spot.input.track import LEFT_EYE, RIGHT_EYE, TrackConfig, TrackedFrame
from mekit.spot.input.video import VideoReader
from mekit.spot.speech import audio_envelope, mouth_aperture

log = logging.getLogger(__name__)


class NoMotionError(MekitError):
    """No frame pair k apart had a face in both: the clip is too short or the face too rarely
    found for the motion signals (callers that take other settings reword its advice)."""


DEFAULT_K_S = 0.2
VFR_NOTE = "variable frame rate: use time_s, not frame / fps"
REGIONS = ("brows", "eyes", "mouth", "cheeks", "nose")
NOSE = tuple(range(27, 36))
NOSE_BRIDGE = (29, 30)
# the per-frame columns `compute_signals` keeps, in `_Columns` order
COLUMNS = (*REGIONS, "strain", "eye_motion", "head", "ear", "face_ok", "shot", "aperture")


SignalMethod = choice_enum("SignalMethod", METHODS, __name__)


@dataclass(frozen=True)
class SignalConfig(Config, section="signals"):
    """The settings of `compute_signals` a user may choose (`mekit spot/analyze --set
    signals.KEY=VALUE`): k, the flow offset in frames (None: `default_k`, shrunk to fit a short
    clip); face_size, the aligned crop's side in px; method, the flow ("farneback" or "dis")."""

    k: int | None = None
    face_size: int = 64
    method: SignalMethod = SignalMethod("farneback")

    def check(self) -> None:
        if self.k is not None:
            check_range(self, "k", 1)
        check_range(self, "face_size", 32, 512)


def curve_times(signals: MotionSignals) -> np.ndarray:
    """(N,) seconds at which to draw per-frame curves of `signals` (the spotter's z) so they
    line up with the events spotted from them: value t of a sliding signal is the motion from
    frame t - k to frame t, so a hump of it spans an expression's onset .. offset + k, and the
    spotter puts the apex k / 2 frames before the dip; drawn at the time of frame t - k / 2
    (linearly between frames; extended at the frame rate before the first)."""
    times = np.asarray(signals.time_s, dtype=np.float64)
    if signals.reference != "sliding" or len(times) == 0:
        return times.copy()
    index = np.arange(len(times), dtype=np.float64) - signals.k / 2.0
    out = np.interp(index, np.arange(len(times)), times)
    before = index < 0
    out[before] = times[0] + index[before] / float(signals.fps)
    return out


def default_k(fps: float) -> int:
    """Flow offset for a frame rate: round(DEFAULT_K_S x fps), at least 1 (see module doc)."""
    return max(1, int(round(DEFAULT_K_S * fps)))


@dataclass
class MotionSignals:
    """Per-frame motion of one video. Every array has one entry per frame read, in order.

    frame: (N,) int64 frame index (video: 0-based position; folder: the file's number).
    time_s: (N,) float64 seconds since the source's first frame (`mekit.spot.input.video`): from the
        presentation timestamps in a video (true times under a variable frame rate),
        (number - first number) / fps in a folder, position / fps for frames given directly.
    fps: nominal frame rate. k: the flow offset in frames (0 with reference="first").
    reference: "sliding" (value at t = motion from frame t - k to frame t, i.e. k positions
        earlier in the stream) or "first" (from the first frame of the stream to frame t).
    regions: name -> (N,) float32 mean flow magnitude in the region, crop px (the crop is
        `face_size` px wide, so 1 px is 1/face_size of the face box), after the rigid motion
        was subtracted; names in `REGIONS`.
    strain: (N,) float32 mean optical strain magnitude over the face, eyes excluded
        (dimensionless: px of displacement per px).
    eye_motion: (N,) float32 mean vertical flow in the eye regions, crop px, signed: positive =
        downwards (lids closing), negative = upwards (a blink gives + then -).
    head: (N,) float32 magnitude of the subtracted rigid motion (the nose bridge's mean flow),
        crop px: high under head movement.
    ear: (N,) float32 eye aspect ratio of the smoothed landmarks at frame t (no offset; about
        0.3 open, lower as the lids close; held between landmark updates).
    face_ok: (N,) bool the face was tracked and inside the frame at t.
    shot: (N,) int32 crop-transform id at t (-1 without a face).
    mouth: (N,) float32 inner-lip gap over the outer-eye span at t (`mekit.spot.speech`; NaN
        without a face), or None (signals saved before it existed).
    audio_db: (N,) float32 sound level around frame t, dB re full scale, or None when the
        source has no sound (`mekit.spot.speech.audio_envelope`).

    Motion values are NaN where they do not exist: the first k frames, and frames where the
    face was not ok at t or at t - k. `ear` is NaN where face_ok is False.
    complete: the whole source was read; otherwise `notes` say where and why it stopped.
    variable_fps: the timestamps were unevenly spaced (use `time_s`, not frame / fps).
    """

    frame: np.ndarray
    time_s: np.ndarray
    fps: float
    k: int
    regions: dict[str, np.ndarray]
    strain: np.ndarray
    eye_motion: np.ndarray
    head: np.ndarray
    ear: np.ndarray
    face_ok: np.ndarray
    shot: np.ndarray
    reference: str = "sliding"
    face_size: int = 64
    method: str = "farneback"
    source: str = ""
    complete: bool = True
    variable_fps: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    mouth: np.ndarray | None = None
    audio_db: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def valid(self) -> np.ndarray:
        """(N,) bool: the motion values at t exist (finite)."""
        return np.isfinite(self.strain)

    def region_matrix(self, names: Iterable[str] = REGIONS) -> np.ndarray:
        """(N, R) float32 of the named regions, in that order."""
        return np.stack([self.regions[n] for n in names], axis=1)

    def save(self, path: str | Path) -> Path:
        """Write to an .npz (no pickle): arrays plus a JSON header."""
        path = Path(path)
        meta = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name
            in (
                "fps",
                "k",
                "reference",
                "face_size",
                "method",
                "source",
                "complete",
                "variable_fps",
            )
        }
        meta["notes"] = list(self.notes)
        meta["regions"] = list(self.regions)
        arrays = {
            name: getattr(self, name)
            for name in (
                "frame",
                "time_s",
                "strain",
                "eye_motion",
                "head",
                "ear",
                "face_ok",
                "shot",
            )
        }
        arrays.update({f"region_{n}": v for n, v in self.regions.items()})
        for name in ("mouth", "audio_db"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        with path.open("wb") as handle:
            np.savez_compressed(handle, meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> MotionSignals:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            regions = {n: data[f"region_{n}"] for n in meta.pop("regions")}
            meta["notes"] = tuple(meta["notes"])
            arrays = {n: data[n] for n in data.files if n != "meta" and not n.startswith("region_")}
        return cls(regions=regions, **arrays, **meta)


@dataclass(frozen=True)
class RegionMasks:
    """Region masks of one shot's crop, (size, size) bool each: `regions` (named as in
    `REGIONS`), `reference` (rigid motion), `face` (strain: face minus eyes) and `eyes`.

    `weights` holds the same as a (R + 3, size * size) float32 matrix whose rows average over
    the regions, then face, eyes and reference (one matrix product per frame does them all).
    An empty mask averages to NaN, except the reference's, which then subtracts nothing.
    """

    regions: dict[str, np.ndarray]
    reference: np.ndarray
    face: np.ndarray
    eyes: np.ndarray
    weights: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        masks = [*self.regions.values(), self.face, self.eyes, self.reference]
        rows = np.zeros((len(masks), masks[0].size), np.float32)
        for row, mask in zip(rows, masks, strict=True):
            count = int(mask.sum())
            if count:
                row[mask.ravel()] = 1.0 / count
            elif mask is not self.reference:
                row[:] = np.nan
        object.__setattr__(self, "weights", rows)


def region_masks(landmarks: np.ndarray, size: int) -> RegionMasks:
    """Masks in a size x size crop from the (68, 2) crop-px landmarks (see the module doc).

    Radii scale with the face's width, so the masks fit any crop size.
    """
    width = max(4.0, float(np.linalg.norm(landmarks[16] - landmarks[0])))

    def blank() -> np.ndarray:
        return np.zeros((size, size), np.uint8)

    def discs(points: np.ndarray, radius: float) -> np.ndarray:
        mask = blank()
        r = max(1, int(round(radius)))
        for x, y in points:
            cv2.circle(mask, (int(round(x)), int(round(y))), r, 1, -1)
        return mask

    def hull(indices, grow: float) -> np.ndarray:
        return hull_of(landmarks[list(indices)], grow)

    def hull_of(points: np.ndarray, grow: float) -> np.ndarray:
        mask = blank()
        pts = np.round(points).astype(np.int32)
        cv2.fillConvexPoly(mask, cv2.convexHull(pts), 1)
        r = max(1, int(round(grow)))
        return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))

    brow = landmarks[list(BROWS)]
    up = np.array([0.0, -0.08 * width])
    brows = discs(np.vstack([brow, brow + up]), 0.06 * width)
    eyes = hull(LEFT_EYE, 0.04 * width) | hull(RIGHT_EYE, 0.04 * width)
    brows &= 1 - eyes
    chin = landmarks[[56, 57, 58]] + 0.6 * (landmarks[[9, 8, 7]] - landmarks[[56, 57, 58]])
    mouth = hull_of(np.vstack([landmarks[list(MOUTH)], chin]), 0.05 * width)
    cheek_centres = np.array(
        [landmarks[[2, 31, 41, 48]].mean(axis=0), landmarks[[14, 35, 46, 54]].mean(axis=0)]
    )
    cheeks = discs(cheek_centres, 0.09 * width) & (1 - mouth) & (1 - eyes)
    nose = hull(NOSE, 0.02 * width)
    near_eyes = hull(LEFT_EYE, 0.12 * width) | hull(RIGHT_EYE, 0.12 * width)
    reference = discs(landmarks[list(NOSE_BRIDGE)], 0.04 * width) & (1 - near_eyes)
    face = hull(range(68), 0) | brows
    face &= 1 - eyes

    named = {"brows": brows, "eyes": eyes, "mouth": mouth, "cheeks": cheeks, "nose": nose}
    return RegionMasks(
        regions={n: m.astype(bool) for n, m in named.items()},
        reference=reference.astype(bool),
        face=face.astype(bool),
        eyes=eyes.astype(bool),
    )


class _Columns:
    """Per-frame rows kept in fixed-size numpy chunks: frame index and time (float64) and the
    float32 values, about 60 bytes a frame (no per-frame Python objects)."""

    CHUNK = 4096

    def __init__(self, width: int) -> None:
        self.width = width
        self.done: list[tuple[np.ndarray, np.ndarray]] = []
        self._new()

    def _new(self) -> None:
        self.stamps = np.empty((self.CHUNK, 2), np.float64)
        self.values = np.empty((self.CHUNK, self.width), np.float32)
        self.used = 0

    def add(self, index: int, time_s: float, values: tuple[float, ...]) -> None:
        if self.used == self.CHUNK:
            self.done.append((self.stamps, self.values))
            self._new()
        self.stamps[self.used] = (index, time_s)
        self.values[self.used] = values
        self.used += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        parts = [*self.done, (self.stamps[: self.used], self.values[: self.used])]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def compute_signals(
    source: str | Path | Iterable,
    fps: float | None = None,
    k: int | None = None,
    face_size: int = 64,
    method: str = "farneback",
    progress: bool = True,
    *,
    reference: str = "sliding",
    start: int = 0,
    stop: int | None = None,
    track: TrackConfig | None = None,
    name: str | None = None,
    on_frame: Callable[[TrackedFrame], None] | None = None,
) -> MotionSignals:
    """Motion signals of a video file, a folder of numbered frames, or frames given directly
    (an iterable of grey/BGR uint8 images, (index, image) pairs or `video.Frame`s; `fps` is then
    needed, as it is for a folder).

    `fps` overrides the video's own rate. `k`: flow offset in frames (default `default_k(fps)`).
    `face_size`: crop side, px. `method`: "farneback" (default: on 64 px crops both faster and
    steadier than "dis" here, see `flow_stream.FlowEngine`) or "dis". `track`: the face
    track's settings (its face_size is replaced by `face_size`). `start`/`stop` bound the
    frame indices read. `on_frame` is called with every `TrackedFrame` as it is read (face
    position, progress), so a caller learns about each frame without a second pass.

    Raises `MekitError` for an unreadable source, a source with no face, or too few frames for
    any value; a source that stops early (corrupt data) gives the signals up to there with
    `complete` False and the reason in `notes` (and a `VideoWarning`).
    """
    if reference not in ("sliding", "first"):
        raise MekitError(f"reference must be 'sliding' or 'first', got '{reference}'")
    frames = open_frames(source, fps, start=start, stop=stop, name=name)
    k = _flow_offset(k, reference, frames)
    stream = FlowStream(
        frames, k, face_size=face_size, method=method, reference=reference, track=track,
        progress=progress,
    )  # fmt: skip
    rows = _Columns(len(COLUMNS))
    masks: RegionMasks | None = None
    nan_row = (math.nan,) * (len(REGIONS) + 3)
    with closing(iter(stream)) as steps:
        for step in steps:
            tracked = step.tracked
            if on_frame is not None:
                on_frame(tracked)
            if step.new_shot:
                assert tracked.landmarks is not None
                masks = region_masks(tracked.landmarks, face_size)
            values = nan_row
            if step.flow is not None and masks is not None:
                values = _measure(step.flow, masks)
            mouth = (
                mouth_aperture(tracked.landmarks)
                if tracked.face_ok and tracked.landmarks is not None
                else math.nan
            )
            rows.add(
                tracked.index,
                tracked.time_s,
                (*values, tracked.ear, tracked.face_ok, tracked.shot, mouth),
            )
    settings = {"k": k, "reference": reference, "face_size": face_size, "method": method}
    return _assemble(rows, frames, settings, whole=start == 0 and stop is None)


def _flow_offset(k: int | None, reference: str, frames: FrameSource) -> int:
    """k for `compute_signals`: 0 against the first frame; by default `default_k`, shrunk so a
    short clip of a known length still gives a few values."""
    if reference == "first":
        return 0
    if k is None:
        k = default_k(frames.fps)
        reader, total = frames.reader, frames.total
        if total is not None and reader is not None and reader.info.n_frames_exact:
            shortest = max(1, (total - 1) // 3)  # a few values even in a short clip
            if k > shortest:
                log.info(
                    "%s: %d frames only: flow offset k = %d, not %d", frames.name, total,
                    shortest, k,
                )  # fmt: skip
                k = shortest
    elif k < 1:
        raise MekitError(f"the flow offset k must be at least 1 frame, got {k}")
    return k


def _assemble(
    rows: _Columns, frames: FrameSource, settings: dict[str, Any], whole: bool
) -> MotionSignals:
    """The `MotionSignals` of the rows read, with notes on how the read went. `settings`: k,
    reference, face_size, method. `whole`: the whole source was asked for (a file cut short
    is then noted)."""
    name, reader, rate, k = frames.name, frames.reader, frames.fps, settings["k"]
    stamps, table = rows.arrays()
    n = len(stamps)
    if n == 0:
        raise MekitError(f"{name}: no frames were read")
    data = {c: table[:, j] for j, c in enumerate(COLUMNS)}
    frame = stamps[:, 0].astype(np.int64)
    time_s = stamps[:, 1]
    if not np.isfinite(time_s).all():
        time_s = (frame - frame[0]) / rate
    ok = data["face_ok"] > 0.5
    notes = []
    short = _cut_short(reader, time_s) if whole else ""
    if reader is not None and reader.stopped:
        notes.append(f"stopped after {reader.n_read} frames: {reader.stopped}")
    elif short:
        notes.append(short)
    cut = bool(short or (reader is not None and reader.stopped))
    if reader is not None and reader.variable_fps and not cut:
        notes.append(VFR_NOTE)
    if not ok.all():
        share = 100.0 * (1 - ok.mean())
        note = f"no usable face in {int((~ok).sum())} of {n} frames ({share:.1f} %)"
        notes.append(note)
        log.warning("%s: %s", name, note)
    if not np.isfinite(data["strain"]).any():
        raise NoMotionError(
            f"{name}: no motion value could be computed from {n} frames, {int(ok.sum())} with a "
            f"face (k = {k} needs a face in frames k apart within one stream); use a smaller k "
            "(`mekit spot` / `mekit analyze`: --set signals.k=N), or reference='first' for the "
            "apex of a short clip"
        )
    audio = None
    if reader is not None and not reader.info.is_folder:
        audio = audio_envelope(reader.path, time_s)
    return MotionSignals(
        frame=frame,
        time_s=time_s,
        fps=rate,
        regions={r: data[r].copy() for r in REGIONS},
        strain=data["strain"].copy(),
        eye_motion=data["eye_motion"].copy(),
        head=data["head"].copy(),
        ear=data["ear"].copy(),
        face_ok=ok,
        shot=data["shot"].astype(np.int32),
        **settings,
        source=name,
        complete=reader is None or (reader.complete and not short),
        # uneven steps where a file was cut off are the cut, not the frame rate
        variable_fps=bool(reader is not None and reader.variable_fps and not cut),
        notes=tuple(notes),
        mouth=data["aperture"].copy(),
        audio_db=audio,
    )


def _cut_short(reader: VideoReader | None, time_s: np.ndarray) -> str:
    """A note when a video read to its end stops clearly before the duration its header
    announces (a truncated file whose container counts no frames, e.g. MKV, WebM; one that
    does, MP4, the reader itself catches); "" otherwise. Times, not frame counts, so a
    variable frame rate with dropped frames is not taken for a cut."""
    if reader is None or reader.info.is_folder or reader.stopped is not None or not len(time_s):
        return ""
    expected = reader.info.n_frames / reader.fps if reader.fps > 0 else math.nan
    step = float(np.median(np.diff(time_s))) if len(time_s) > 1 else 1.0 / reader.fps
    ends = float(time_s[-1]) + step
    if not math.isfinite(expected) or ends >= expected - max(2 * step, 0.02 * expected):
        return ""
    return f"the file ends at {ends:.2f} s, its header announces {expected:.2f} s: truncated?"


def _measure(flow: np.ndarray, masks: RegionMasks) -> tuple[float, ...]:
    """(region magnitudes..., strain, eye_motion, head) of one (H, W, 2) flow."""
    weights = masks.weights
    n = len(REGIONS)
    u, v = flow[..., 0], flow[..., 1]
    rigid_u = float(weights[n + 2] @ u.ravel())
    rigid_v = float(weights[n + 2] @ v.ravel())
    u = u - np.float32(rigid_u)
    v = v - np.float32(rigid_v)
    # central differences (np.gradient's interior), as in mekit.motion.flow.optical_strain
    ux = cv2.Sobel(u, cv2.CV_32F, 1, 0, ksize=1, scale=0.5)
    uy = cv2.Sobel(u, cv2.CV_32F, 0, 1, ksize=1, scale=0.5)
    vx = cv2.Sobel(v, cv2.CV_32F, 1, 0, ksize=1, scale=0.5)
    vy = cv2.Sobel(v, cv2.CV_32F, 0, 1, ksize=1, scale=0.5)
    shear = uy + vx
    strain = cv2.sqrt(ux * ux + vy * vy + 0.5 * shear * shear)
    regions = weights[:n] @ cv2.magnitude(u, v).ravel()
    face_strain = float(weights[n] @ strain.ravel())
    eye_motion = float(weights[n + 1] @ v.ravel())
    return (*(float(x) for x in regions), face_strain, eye_motion, math.hypot(rigid_u, rigid_v))
