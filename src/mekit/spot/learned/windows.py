"""SOFTNet's input: the flow windows of long videos, their pseudo-labels, and window caches.

Steps 1 and 2 of the learned spotter (`mekit.spot.learned.spotter` describes the method and where it
follows or departs from the authors' code): `flow_windows` / `WindowStream` stream a video's
(3, 42, 42) flow images, window a..a+k for each frame a; `pseudo_labels` marks the windows that
overlap an annotated interval; `video_windows` does both for a corpus's long video
(`SpotterVideo`); `save_windows` / `load_windows` keep them on disk.

Memory. `flow_windows` keeps the flow images of the whole video: N x 3 x 42 x 42 x 4 bytes,
about 21 kB a frame, so 40 MB a minute at 30 fps and 250 MB a minute at 200 fps; the frames
themselves are streamed (a ring of k + 1 frames). That is what training needs. For spotting a
long video with a trained model, `mekit.spot.learned.score_source` streams the windows through
the model in batches and keeps only the scores (a few bytes a frame).

Frames. `frames[i]` is the first frame a of window i (the flow goes from frame a to frame
a + k): a video's 0-based frame position, or a folder's frame number. Windows whose two frames
do not both show a tracked face are left out (so `frames` can have gaps), with a warning saying
how many; a video with no window at all raises `MekitError`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mekit.data.schema import Event, LongVideo
from mekit.errors import MekitError
from mekit.motion.flow import optical_strain
from mekit.spot.input.flow_stream import FlowStream, open_frames
from mekit.spot.input.track import LEFT_EYE, RIGHT_EYE, TrackConfig
from mekit.spot.input.video import Frame, VideoReader, VideoWarning
from mekit.spot.metrics import Interval

log = logging.getLogger(__name__)

LAYOUTS = ("rois", "face")
NOSE_POINT = 28  # the reference's nose landmark (dlib 0-based index)
# The reference's pre-processing constants, in px of its 128 px crop, as fractions of the crop.
EYE_GROW = 15 / 128
ROI_GROW = 12 / 128
NOSE_HALF = 5 / 128

# ---------------------------------------------------------------------------------------------
# k, pseudo-labels


def softnet_k(lengths: Iterable[int]) -> int:
    """The reference's k for expressions of these lengths (offset - onset, frames): half the mean
    length, int((N + 1) / 2), at least 1."""
    values = [int(x) for x in lengths]
    if not values:
        raise MekitError("no expression lengths to compute k from")
    mean = sum(values) / len(values)
    return max(1, int((mean + 1) / 2))


def k_for(fps: float, k_s: float) -> int:
    """k in frames for a window of `k_s` seconds at `fps`: round(k_s x fps), at least 1."""
    if not (fps > 0) or not (k_s > 0):
        raise MekitError(f"k needs a positive fps and k_s, got fps={fps}, k_s={k_s}")
    return max(1, int(round(k_s * fps)))


def expression_k_s(videos: Iterable[LongVideo], kind: str | None = None) -> float:
    """Half the mean duration (s) of the annotated expressions of `kind` (None: all) in
    `videos`: the reference's k in seconds, so videos of different frame rates share it. Compute it
    on training videos only when the result is to be scored."""
    durations = [
        (e.offset - e.onset) / v.fps
        for v in videos
        for e in v.events
        if (kind is None or e.kind == kind) and v.fps > 0
    ]
    if not durations:
        raise MekitError(
            f"no {kind or ''} expression in the videos to compute k from".replace("  ", " ")
        )
    return float(np.mean(durations)) / 2.0


def _spans(intervals: Iterable[Interval | Event | tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for x in intervals:
        if isinstance(x, Interval | Event):
            out.append((int(x.onset), int(x.offset)))
        else:
            onset, offset = x
            out.append((int(onset), int(offset)))
        if out[-1][1] < out[-1][0]:
            raise MekitError(f"interval offset {out[-1][1]} is before its onset {out[-1][0]}")
    return out


def pseudo_labels(
    frames: int | Sequence[int] | np.ndarray,
    intervals: Iterable[Interval | Event | tuple[int, int]],
    k: int,
) -> np.ndarray:
    """(N,) float32 SOFTNet pseudo-labels: 1 for the window of frame a (frames a..a+k) when it
    overlaps an interval onset..offset (bounds inclusive), else 0.

    `frames`: the windows' first frames (`flow_windows`), or a count n for frames 0..n-1.
    Equivalently, window a is positive for onset - k <= a <= offset: with the window placed at
    its centre a + k/2, the interval widened by k/2 at both ends.
    """
    if k < 1:
        raise MekitError(f"k must be at least 1, got {k}")
    if isinstance(frames, int | np.integer):
        starts = np.arange(int(frames), dtype=np.int64)
    else:
        starts = np.asarray(frames, dtype=np.int64)
    y = np.zeros(len(starts), dtype=np.float32)
    for onset, offset in _spans(intervals):
        y[(starts >= onset - k) & (starts <= offset)] = 1.0
    return y


# ---------------------------------------------------------------------------------------------
# flow windows


@dataclass(frozen=True)
class _Geometry:
    """One shot's masks and boxes in the crop: eyes (bool), nose box, ROI boxes (y0, y1, x0, x1)."""

    eyes: np.ndarray
    nose: tuple[slice, slice]
    rois: tuple[tuple[int, int, int, int], ...]


def _box(y0: float, y1: float, x0: float, x1: float, side: int) -> tuple[int, int, int, int]:
    a, b = int(np.clip(math.floor(y0), 0, side - 2)), int(np.clip(math.ceil(y1), 0, side))
    c, d = int(np.clip(math.floor(x0), 0, side - 2)), int(np.clip(math.ceil(x1), 0, side))
    return a, max(b, a + 2), c, max(d, c + 2)


def _geometry(landmarks: np.ndarray, side: int) -> _Geometry:
    """The reference's eye hexagons, nose box and ROI boxes from (68, 2) crop-px landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    grow, roi, half = EYE_GROW * side, ROI_GROW * side, max(1.0, NOSE_HALF * side)
    eyes = np.zeros((side, side), np.uint8)
    for eye in (LEFT_EYE, RIGHT_EYE):  # corner, upper lid x2, corner, lower lid x2
        p = lm[list(eye)].copy()
        p[0, 0] -= grow
        p[3, 0] += grow
        p[1:3, 1] -= grow
        p[4:6, 1] += grow
        cv2.fillPoly(eyes, [np.round(p).astype(np.int32)], 1)
    nx, ny = lm[NOSE_POINT]
    y0, y1, x0, x1 = _box(ny - half, ny + half + 1, nx - half, nx + half + 1, side)
    top = _box(
        min(lm[19, 1], lm[24, 1]) - roi,
        max(lm[41, 1], lm[46, 1]) + roi,
        lm[17, 0] - roi,
        lm[26, 0] + roi,
        side,
    )
    mouth = _box(lm[50, 1] - roi, lm[57, 1] + roi, lm[60, 0] - roi, lm[64, 0] + roi, side)
    return _Geometry(eyes.astype(bool), (slice(y0, y1), slice(x0, x1)), (top, mouth))


def flow_image(
    flow: np.ndarray, geometry: _Geometry, size: int = 42, layout: str = "rois"
) -> np.ndarray:
    """(3, size, size) float32 |u|, |v|, strain of one (H, W, 2) flow (see the module doc)."""
    u, v = flow[..., 0], flow[..., 1]
    strain = optical_strain(np.stack([u, v]))
    ys, xs = geometry.nose
    stack = np.stack(
        [
            np.abs(u - u[ys, xs].mean()),
            np.abs(v - v[ys, xs].mean()),
            strain - strain[ys, xs].mean(),
        ],
        axis=-1,
    ).astype(np.float32)
    stack[geometry.eyes] = 0.0
    if layout == "face":
        out = cv2.resize(stack, (size, size), interpolation=cv2.INTER_AREA)
    else:
        top = size // 2
        out = np.empty((size, size, 3), np.float32)
        for (y0, y1, x0, x1), (r0, r1) in zip(geometry.rois, ((0, top), (top, size)), strict=True):
            out[r0:r1] = cv2.resize(
                stack[y0:y1, x0:x1], (size, r1 - r0), interpolation=cv2.INTER_LINEAR
            )
    return np.ascontiguousarray(out.transpose(2, 0, 1))


class WindowStream:
    """Streams the flow windows of one video: iterate for (frame a, (3, size, size) image).

    `source`: a video file or a folder of numbered frames (path), or frames given directly (an
    iterable of `mekit.spot.input.video.Frame`s, (index, image) pairs or images; `fps` needed,
    as for a folder). `k`: window length in frames. `fps` overrides the video's rate (it sets
    the track's timings only). The frames, the face and the flow come from the streaming front
    end (`mekit.spot.input.flow_stream`). `size`: side of each window's flow image, px.
    `face_size`: side of the aligned face crop the flow is computed on, px (the reference:
    128). `method`: "farneback" or "dis". `layout`: "rois" (the reference's brows/eyes + mouth
    boxes) or "face". `track`: the face track's settings. `start`/`stop` bound the frame
    indices read.

    After iteration: `n_frames` frames read, `n_windows` windows given, `notes` (what went
    wrong: a stream that stopped early, a variable frame rate, frames without a face), and
    `complete` (the whole source was read).
    """

    def __init__(
        self,
        source: str | Path | Iterable,
        k: int,
        size: int = 42,
        *,
        fps: float | None = None,
        face_size: int = 84,
        method: str = "farneback",
        layout: str = "rois",
        start: int = 0,
        stop: int | None = None,
        track: TrackConfig | None = None,
        name: str | None = None,
        progress: bool = False,
    ) -> None:
        if int(k) < 1:
            raise MekitError(f"the window length k must be at least 1 frame, got {k}")
        if layout not in LAYOUTS:
            raise MekitError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        if size < 6 or face_size < 16:
            raise MekitError(f"size must be >= 6 and face_size >= 16, got {size}, {face_size}")
        self.k, self.size, self.face_size = int(k), int(size), int(face_size)
        self.method, self.layout, self.progress = method, layout, progress
        frames = open_frames(source, fps, start=start, stop=stop, name=name)
        self.reader, self.name, self.fps = frames.reader, frames.name, frames.fps
        self.flows = FlowStream(
            frames, self.k, face_size=self.face_size, method=method, track=track,
            progress=progress,
        )  # fmt: skip
        self.n_windows = 0
        self._used = False

    @property
    def n_frames(self) -> int:
        return self.flows.n_frames

    @property
    def n_face(self) -> int:
        return self.flows.n_face

    @property
    def complete(self) -> bool:
        return self.reader is None or self.reader.complete

    @property
    def notes(self) -> tuple[str, ...]:
        notes = []
        if self.reader is not None and self.reader.stopped:
            notes.append(f"stopped after {self.reader.n_read} frames: {self.reader.stopped}")
        if self.reader is not None and self.reader.variable_fps:
            notes.append("variable frame rate: frames are positions, not times")
        missing = self.n_frames - self.n_face
        if missing:
            notes.append(f"no usable face in {missing} of {self.n_frames} frames")
        return tuple(notes)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if self._used:
            raise MekitError(f"{self.name}: a WindowStream can be iterated once")
        self._used = True
        geometry: _Geometry | None = None
        with closing(iter(self.flows)) as steps:
            for step in steps:
                if step.new_shot:
                    assert step.tracked.landmarks is not None
                    geometry = _geometry(step.tracked.landmarks, self.face_size)
                if step.flow is None or step.past is None or geometry is None:
                    continue
                self.n_windows += 1
                yield step.past.index, flow_image(step.flow, geometry, self.size, self.layout)
        if self.n_windows == 0:
            raise MekitError(
                f"{self.name}: no flow window from {self.n_frames} frames, {self.n_face} with a "
                f"face (k = {self.k} needs a tracked face in two frames k apart); "
                + ("; ".join(self.notes) or "the video is shorter than k + 1 frames")
            )
        for note in self.notes:
            _warn(f"{self.name}: {note}")


def flow_windows(
    source: str | Path | Iterable, k: int, size: int = 42, **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """(frames (N,) int64, X (N, 3, size, size) float32): SOFTNet's flow image of each window
    a..a+k of a video, streamed (see the module doc for the content and the memory): all the
    windows of a `WindowStream(source, k, size, **options)`.

    `source`: video file, folder of numbered frames, or frames; `options` are the stream's
    (`fps`, needed for a folder or frames; `face_size`, `method`, `layout`, `start`/`stop`,
    `track`, `name`, `progress`).

    Raises `MekitError` for an unreadable source, a source without a face (`NoFaceError`), or no
    window at all; a stream that stops early gives the windows up to there, with a
    `VideoWarning` (so do frames without a face).
    """
    return _collect(WindowStream(source, k, size, **options))


def _collect(stream: WindowStream) -> tuple[np.ndarray, np.ndarray]:
    chunk = 1024
    frames: list[int] = []
    parts: list[np.ndarray] = []
    block = np.empty((chunk, 3, stream.size, stream.size), np.float32)
    used = 0
    for index, image in stream:
        if used == chunk:
            parts.append(block)
            block = np.empty_like(block)
            used = 0
        block[used] = image
        used += 1
        frames.append(index)
    parts.append(block[:used])
    return np.asarray(frames, dtype=np.int64), np.concatenate(parts)


def _warn(message: str) -> None:
    log.warning(message)
    warnings.warn(message, VideoWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------------
# training data from long videos


@dataclass
class SpotterVideo:
    """One long video ready for training or scoring.

    frames (N,) int64 first frame of each window; X (N, 3, size, size) float32 flow images;
    k the window length (frames); truth: its annotated intervals (every kind; `labels(kind)`
    gives the pseudo-labels of one kind); n_frames: frames read; notes: what went wrong.
    """

    id: str
    subject: str
    fps: float
    k: int
    frames: np.ndarray
    X: np.ndarray
    truth: tuple[Interval, ...] = ()
    n_frames: int = 0
    notes: tuple[str, ...] = ()

    def labels(self, kind: str | None = None) -> np.ndarray:
        """(N,) pseudo-labels of the truths of `kind` (None: every kind)."""
        return pseudo_labels(
            self.frames, [t for t in self.truth if kind is None or t.kind == kind], self.k
        )

    @property
    def last_frame(self) -> int:
        """The last frame a window reaches (frames[-1] + k)."""
        return int(self.frames[-1]) + self.k if len(self.frames) else -1


def _folder_frames(video: LongVideo) -> Iterator[Frame]:
    numbers = video.frame_numbers or tuple(range(len(video.frames)))
    if len(numbers) != len(video.frames):
        raise MekitError(
            f"{video.id}: {len(video.frames)} frame files but {len(numbers)} frame numbers"
        )
    for number, path in zip(numbers, video.frames, strict=True):
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            _warn(f"{video.id}: {path} cannot be read as an image; the video stops there")
            return
        yield Frame(int(number), image, int(number) / video.fps)


def video_windows(
    video: LongVideo,
    k: int | None = None,
    *,
    k_s: float | None = None,
    size: int = 42,
    face_size: int = 84,
    method: str = "farneback",
    layout: str = "rois",
    track: TrackConfig | None = None,
    progress: bool = False,
) -> SpotterVideo:
    """The flow windows and truths of a corpus's `LongVideo` (video file or frame files).

    Give the window length as `k` frames, or as `k_s` seconds (k = round(k_s x fps), so videos
    of several frame rates share a window in time).
    """
    if k is None:
        if k_s is None:
            raise MekitError("video_windows needs k (frames) or k_s (seconds)")
        k = k_for(video.fps, k_s)
    if video.video is not None:
        source: str | Path | Iterable = video.video
    elif video.frames:
        source = _folder_frames(video)
    else:
        raise MekitError(f"{video.id}: the long video has neither a video file nor frames")
    stream = WindowStream(
        source,
        k,
        size,
        fps=video.fps,
        face_size=face_size,
        method=method,
        layout=layout,
        track=track,
        name=video.id,
        progress=progress,
    )
    frames, X = _collect(stream)
    truth = tuple(Interval.from_event(e, video.id) for e in video.events)
    return SpotterVideo(
        id=video.id,
        subject=video.subject,
        fps=float(video.fps),
        k=int(k),
        frames=frames,
        X=X,
        truth=truth,
        n_frames=stream.n_frames,
        notes=stream.notes,
    )


SUBJECT_IN_NAME = re.compile(r"_sub([^_]+)_")


def synth_long_videos(folder: str | Path) -> list[LongVideo]:
    """The long videos written by `mekit synth` (`OUT/long_videos` or that folder itself):
    every `*.mp4` there, with its events from `intervals.csv` (0-based frame positions)."""
    folder = Path(folder)
    if (folder / "long_videos").is_dir():
        folder = folder / "long_videos"
    table = folder / "intervals.csv"
    if not table.is_file():
        raise MekitError(f"{folder}: no intervals.csv (is it a `mekit synth` long_videos folder?)")
    events: dict[str, list[Event]] = {}
    subjects: dict[str, str] = {}
    rates: dict[str, float] = {}
    with table.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            name = row["video"]
            apex = row.get("apex", "")
            events.setdefault(name, []).append(
                Event(
                    onset=int(row["onset"]),
                    apex=int(apex) if apex not in ("", None) else None,
                    offset=int(row["offset"]),
                    kind=row["type"],
                    emotion=row.get("emotion", "") or "",
                    aus=row.get("aus", "") or "",
                )
            )
            subjects[name] = row["subject"]
            rates[name] = float(row["fps"])
    videos = []
    for path in sorted(folder.glob("*.mp4")):
        name = path.stem
        match = SUBJECT_IN_NAME.search(name)
        subject = subjects.get(name) or (match.group(1) if match else name)
        fps = rates.get(name) or VideoReader(path).info.fps
        videos.append(
            LongVideo(
                id=name,
                dataset="synth",
                subject=subject,
                fps=fps,
                events=tuple(sorted(events.get(name, []), key=lambda e: e.onset)),
                video=path,
            )
        )
    if not videos:
        raise MekitError(f"{folder}: no .mp4 long video")
    return videos


# ---------------------------------------------------------------------------------------------
# window caches, and the long videos of a folder


def save_windows(video: SpotterVideo, path: str | os.PathLike[str]) -> Path:
    """Write a `SpotterVideo` to an .npz (arrays plus a JSON header; no pickle)."""
    path = Path(path)
    meta = {
        "id": video.id,
        "subject": video.subject,
        "fps": video.fps,
        "k": video.k,
        "n_frames": video.n_frames,
        "notes": list(video.notes),
        "truth": [[t.onset, t.offset, t.kind, t.apex, t.emotion] for t in video.truth],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.savez(handle, meta=np.array(json.dumps(meta)), frames=video.frames, X=video.X)
    return path


def load_windows(path: str | os.PathLike[str]) -> SpotterVideo:
    """Read a `SpotterVideo` written by `save_windows`."""
    with np.load(Path(path), allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        frames, X = data["frames"], data["X"]
    truth = tuple(
        Interval(onset=a, offset=b, kind=kind, apex=apex, video=meta["id"], emotion=emotion)
        for a, b, kind, apex, emotion in meta["truth"]
    )
    return SpotterVideo(
        id=meta["id"],
        subject=meta["subject"],
        fps=float(meta["fps"]),
        k=int(meta["k"]),
        frames=frames,
        X=X,
        truth=truth,
        n_frames=int(meta["n_frames"]),
        notes=tuple(meta["notes"]),
    )


def long_videos_in(root: Path) -> list[LongVideo]:
    """The long videos of `root` with their events: `mekit synth` output (`synth_long_videos`),
    or a long-video corpus (CAS(ME)^2, SAMM Long Videos, SMIC-E) read by its loader."""
    if (root / "intervals.csv").is_file() or (root / "long_videos" / "intervals.csv").is_file():
        return synth_long_videos(root)
    from mekit.data.corpora import load_corpus

    _, result = load_corpus(root)
    if not result.videos:
        raise MekitError(f"{root}: the corpus has no long videos to spot in")
    return list(result.videos)
