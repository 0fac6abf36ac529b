"""Learned interval spotting, SOFTNet-style (Liong et al., 2021), on long videos.

SOFTNet ("Shallow optical flow three-stream CNN for macro- and micro-expression spotting from
long videos", ICIP 2021) turns spotting into a per-frame regression. The details below follow
the authors' public code (SoftNet-SpotME: `extraction_preprocess.py`, `training.py`,
`load_label.py`), called "the reference" here.

1. Flow windows (`flow_windows`): for each frame a of the video, the optical flow between the
   aligned face at frames a and a + k. k is half the average expression length (the
   reference's `cal_k`: k = int((N + 1) / 2), N the mean offset - onset in frames;
   `softnet_k`), so one k, and one model, per expression kind. Here the face comes from the
   streaming track (`mekit.spot.track`: crop transform fixed per stable shot) and the flow from
   OpenCV's Farneback on an 84 px crop (the reference: TV-L1 on a 128 px crop). As in the
   reference, the mean flow of an 11 px box (in 128) on the nose bridge (landmark 28) is
   subtracted (rigid head motion), u and v are taken as absolute values, the optical strain is
   computed and its nose-box mean subtracted, the eyes are masked (each eye's landmark hexagon
   with its corners and lids pushed out by 15 px in 128: blinks), and the result is resampled to
   a (3, 42, 42) image: with `layout="rois"` (the reference) the top half is the brows-and-eyes
   box and the bottom half the mouth box (landmark boxes grown by 12 px in 128), each resized to
   42 x 21; `layout="face"` resizes the whole crop instead.
2. Pseudo-labels (`pseudo_labels`): the window of frame a is 1 when a..a+k overlaps an annotated
   interval onset..offset (the reference: "IoU > 0"), else 0. Seen from the window's centre
   a + k/2, that is the interval widened by k/2 at both ends.
3. SOFTNet (`mekit.models.softnet.SoftNet`) regresses that label with a mean squared error loss
   (`train_spotter`). As in the reference: half of the negatives are dropped at random, the
   positives of a micro-expression model get three augmented copies (horizontal flip, 7 x 7
   Gaussian blur, Gaussian noise), the inputs are scaled per sample and channel to [0, 1], and
   leave-one-subject-out trains a fresh model per fold (`loso_spotting`).
4. Spotting (`spot_from_scores`): the scores are smoothed by a moving average over about 2k
   windows (the reference's "score aggregation": agg[j] = mean(score[j - k .. j + k - 1]);
   here j - k .. j + k, centred), thresholded at T = mean + p (max - mean) of the smoothed
   curve (p = 0.55 in the reference), and each peak above T (at least k frames apart, scipy's
   find_peaks) gives an interval of 2k + 1 frames. The reference's is j - k .. j + k, centred
   on the first frame j of the peak's windows, which puts it k / 2 frames before their centre;
   here it is centred on that centre, j + k // 2.

Departures from the reference, each an option with the reference's value available: the
optimiser (Adam, lr 1e-3, batches of 12, 10 epochs here; the reference: SGD, lr 5e-4, batches of
12, 10 epochs -> `optimizer="sgd", lr=5e-4`); a floor under T (`min_score`, 0.3 here, none in
the reference, whose relative threshold always passes the largest peak, so that a video without
expressions always reports one); the intervals' placement (above); the smoothing at the ends of
the video (the reference drops the first and last k smoothed values; here they average what
exists); and the noise augmentation (the reference adds skimage's `random_noise`, variance
0.01, to the unscaled features; here noise of 0.1 x each channel's range to the scaled ones).
`combine_kinds` (micro spots inside macro ones dropped) is not in the reference, which scores
its two models apart.

Memory. `flow_windows` keeps the flow images of the whole video: N x 3 x 42 x 42 x 4 bytes,
about 21 kB a frame, so 40 MB a minute at 30 fps and 250 MB a minute at 200 fps; the frames
themselves are streamed (a ring of k + 1 frames). That is what training needs. For spotting a
long video with a trained model, `score_source` streams the windows through the model in batches
and keeps only the scores (a few bytes a frame).

Frames. `frames[i]` is the first frame a of window i (the flow goes from frame a to frame
a + k): a video's 0-based frame position, or a folder's frame number. Windows whose two frames
do not both show a tracked face are left out (so `frames` can have gaps), with a warning saying
how many; a video with no window at all raises `MekitError`.

Training and spotting as commands (`mekit train --corpus DIR --model softnet`, `mekit spot
VIDEO --spotter RUN`) are in `mekit.spot.learned_run`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from scipy.signal import find_peaks
from tqdm.auto import tqdm

from mekit.data.schema import Event, LongVideo
from mekit.errors import MekitError
from mekit.models.softnet import CHANNEL_NAMES, NORMALIZE, SoftNet
from mekit.motion.flow import optical_strain
from mekit.spot.metrics import Interval, SpotScores, spotting_scores
from mekit.spot.signals import FlowEngine
from mekit.spot.track import LEFT_EYE, RIGHT_EYE, FaceTrack, TrackConfig
from mekit.spot.video import Frame, VideoReader, VideoWarning
from mekit.train.checkpoint import file_sha256, model_paths

log = logging.getLogger(__name__)

DEFAULT_P = 0.55  # the reference's threshold factor
LAYOUTS = ("rois", "face")
OPTIMIZERS = ("adam", "sgd")
MICRO_MAX_MS = 500.0
NOSE_POINT = 28  # the reference's nose landmark (dlib 0-based index)
FORMAT = "mekit-spotter"
FORMAT_VERSION = 1
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


@dataclass
class _Item:
    index: int
    image: np.ndarray
    crop: np.ndarray | None
    shot: int
    face_ok: bool


class WindowStream:
    """Streams the flow windows of one video: iterate for (frame a, (3, size, size) image).

    `source`: a video file or a folder of numbered frames (path), or frames given directly (an
    iterable of `mekit.spot.video.Frame`s, (index, image) pairs or images; `fps` needed, as
    for a folder). `k`: window length in frames. `fps` overrides the video's rate (it sets the
    track's timings only). See `flow_windows` for the other arguments.

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
        self.reader: VideoReader | None = None
        self.total: int | None = None
        if isinstance(source, str | Path):
            self.reader = VideoReader(source)
            self.name = name or str(source)
            rate = float(fps) if fps else self.reader.info.fps
            if not (rate > 0):
                what = "a folder of frames" if self.reader.info.is_folder else "this video"
                raise MekitError(f"{source}: {what} has no frame rate; pass fps")
            self._frames: Iterable = self.reader.frames(start, stop)
            self.total = self.reader.info.n_frames
        else:
            if not fps or fps <= 0:
                raise MekitError("frames given directly need their frame rate: pass fps")
            rate = float(fps)
            self.name = name or "frames"
            self._frames = _as_frames(source, rate)
        self.fps = rate
        config = track or TrackConfig()
        if config.face_size != self.face_size:
            config = TrackConfig(**{**config.__dict__, "face_size": self.face_size})
        self.tracker = FaceTrack(rate, config, name=self.name)
        self.engine = FlowEngine(method)
        self.n_frames = self.n_windows = self.n_face = 0
        self._used = False

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
        ring: deque[_Item] = deque(maxlen=self.k + 1)
        geometry: _Geometry | None = None
        geometry_shot = -2
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # small images: OpenCV's thread pool costs more than it saves
        bar = tqdm(
            total=self.total,
            desc=Path(self.name).name,
            unit="frame",
            disable=not self.progress,
            leave=False,
        )
        try:
            for tracked in self.tracker.run(self._frames):
                bar.update()
                self.n_frames += 1
                self.n_face += bool(tracked.face_ok)
                if tracked.face_ok and tracked.shot != geometry_shot:
                    assert tracked.landmarks is not None
                    geometry = _geometry(tracked.landmarks, self.face_size)
                    geometry_shot = tracked.shot
                    cropper = self.tracker.cropper
                    if cropper is not None:  # the buffered frames, cropped with this shot's
                        for item in ring:
                            if item.face_ok and item.shot != tracked.shot:
                                item.crop, item.shot = cropper(item.image), tracked.shot
                ring.append(
                    _Item(
                        tracked.index,
                        tracked.image,
                        tracked.crop,
                        tracked.shot,
                        bool(tracked.face_ok),
                    )
                )
                if len(ring) < self.k + 1 or geometry is None:
                    continue
                past, current = ring[0], ring[-1]
                if past.crop is None or current.crop is None or past.shot != current.shot:
                    continue
                flow = self.engine(past.crop, current.crop)
                self.n_windows += 1
                yield past.index, flow_image(flow, geometry, self.size, self.layout)
        finally:
            bar.close()
            cv2.setNumThreads(threads)
        if self.n_windows == 0:
            raise MekitError(
                f"{self.name}: no flow window from {self.n_frames} frames, {self.n_face} with a "
                f"face (k = {self.k} needs a tracked face in two frames k apart); "
                + ("; ".join(self.notes) or "the video is shorter than k + 1 frames")
            )
        for note in self.notes:
            _warn(f"{self.name}: {note}")


def flow_windows(
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
) -> tuple[np.ndarray, np.ndarray]:
    """(frames (N,) int64, X (N, 3, size, size) float32): SOFTNet's flow image of each window
    a..a+k of a video, streamed (see the module doc for the content and the memory).

    `source`: video file, folder of numbered frames, or frames (see `WindowStream`); `fps`
    is needed for a folder or frames. `face_size`: side of the aligned face crop the flow is
    computed on, px (the reference: 128). `method`: "farneback" or "dis". `layout`: "rois"
    (the reference's brows/eyes + mouth boxes) or "face". `track`: the face track's settings.
    `start`/`stop` bound the frame indices read.

    Raises `MekitError` for an unreadable source, a source without a face (`NoFaceError`), or no
    window at all; a stream that stops early gives the windows up to there, with a
    `VideoWarning` (so do frames without a face).
    """
    stream = WindowStream(
        source,
        k,
        size,
        fps=fps,
        face_size=face_size,
        method=method,
        layout=layout,
        start=start,
        stop=stop,
        track=track,
        name=name,
        progress=progress,
    )
    return _collect(stream)


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


def _as_frames(source: Iterable, fps: float) -> Iterator[Frame]:
    for position, item in enumerate(source):
        if isinstance(item, Frame):
            yield item
        elif isinstance(item, np.ndarray):
            yield Frame(position, item, position / fps)
        else:
            index, image = item[0], item[1]
            yield Frame(int(index), image, int(index) / fps)


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
# training


@dataclass(frozen=True)
class SpotterConfig:
    """How a SOFTNet spotter is trained and how its scores become intervals.

    kind: the expressions that are positives ("micro", "macro"; None: all): the reference
    trains one model per kind, with its own k. epochs, batch_size, lr, optimizer ("adam" |
    "sgd"; the reference: SGD, lr 5e-4, batches of 12, 10 epochs). negative_keep: share of the
    negatives kept (the reference drops half). augment: three augmented copies of each positive
    (flip, blur, noise; "auto": for micro-expression models only, as the reference). normalize:
    input scaling (see `mekit.models.softnet`; the reference: "minmax"). kernel_size, hidden:
    the network.
    train_rate: windows per second of video used for training (every round(fps / train_rate)-th
    window of a `SpotterVideo`; None: all, as the reference): neighbouring windows of a 200 fps
    video are near copies, and training time grows with their number.
    p: threshold factor; min_score: floor under the threshold (see the module doc); seed; threads:
    torch threads while training (None: leave as is).
    """

    kind: str | None = "micro"
    epochs: int = 10
    batch_size: int = 12
    lr: float = 1e-3
    optimizer: str = "adam"
    negative_keep: float = 0.5
    augment: bool | str = "auto"
    normalize: str = "minmax"
    kernel_size: int = 5
    hidden: int = 400
    p: float = DEFAULT_P
    min_score: float = 0.3
    seed: int = 0
    threads: int | None = None
    train_rate: float | None = None

    def validate(self) -> SpotterConfig:
        if self.epochs < 1 or self.batch_size < 1:
            raise MekitError("spotter epochs and batch_size must be at least 1")
        if not self.lr > 0:
            raise MekitError(f"spotter lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise MekitError(f"spotter optimizer must be one of {', '.join(OPTIMIZERS)}")
        if not 0 < self.negative_keep <= 1:
            raise MekitError(f"negative_keep must be in (0, 1], got {self.negative_keep}")
        if self.augment not in (True, False, "auto"):
            raise MekitError(f"augment must be True, False or 'auto', got {self.augment!r}")
        if self.normalize not in NORMALIZE:
            raise MekitError(f"normalize must be one of {', '.join(NORMALIZE)}")
        if not 0 < self.p < 1:
            raise MekitError(f"p must be in (0, 1), got {self.p}")
        if self.train_rate is not None and not self.train_rate > 0:
            raise MekitError(f"train_rate must be > 0 or None, got {self.train_rate}")
        return self

    @property
    def augments(self) -> bool:
        return self.kind == "micro" if self.augment == "auto" else bool(self.augment)


TrainingVideo = SpotterVideo | tuple[np.ndarray, np.ndarray, str]


def _xy(
    video: TrainingVideo, kind: str | None, rate: float | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    if isinstance(video, SpotterVideo):
        step = max(1, int(round(video.fps / rate))) if rate and video.fps > 0 else 1
        return video.X[::step], video.labels(kind)[::step], video.subject
    X, y, subject = video
    X, y = np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.float32)
    if X.ndim != 4 or len(X) != len(y):
        raise MekitError(f"training video of {subject}: X {X.shape} and y {y.shape} do not fit")
    return X, y, str(subject)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Three copies of scaled images x (B, C, H, W): flipped, blurred (7 x 7), noisy (0.1 of
    each image channel's range), as the reference augments its positives."""
    flipped = torch.flip(x, dims=(3,))
    c = x.shape[1]
    kernel1d = torch.tensor(cv2.getGaussianKernel(7, 0).ravel(), dtype=x.dtype)
    kernel = (kernel1d[:, None] * kernel1d[None, :]).expand(c, 1, 7, 7)
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3), mode="reflect")
    blurred = torch.nn.functional.conv2d(padded, kernel, groups=c)
    span = x.amax(dim=(2, 3), keepdim=True) - x.amin(dim=(2, 3), keepdim=True)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * 0.1 * span
    return torch.cat([flipped, blurred, x + noise])


def train_spotter(
    videos: Sequence[TrainingVideo],
    config: SpotterConfig = SpotterConfig(),
    *,
    progress: bool = False,
) -> SoftNet:
    """A SOFTNet trained on `videos`: `SpotterVideo`s (labels from their truths of
    `config.kind`) or (X (N, 3, S, S), y (N,), subject) tuples. Returns the model in eval mode.

    Deterministic for a given `config.seed` (on one machine and torch version)."""
    config.validate()
    if not videos:
        raise MekitError("no training video")
    parts = [_xy(v, config.kind, config.train_rate) for v in videos]
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    positives = np.flatnonzero(y >= 0.5)
    negatives = np.flatnonzero(y < 0.5)
    if len(positives) == 0:
        raise MekitError(
            f"no positive window in {len(videos)} training videos "
            f"({config.kind or 'any'} expressions): nothing to learn"
        )
    rng = np.random.default_rng(config.seed)
    keep = rng.choice(
        negatives, size=int(round(len(negatives) * config.negative_keep)), replace=False
    )
    chosen = np.sort(np.concatenate([positives, keep]))
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(int(config.threads))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = SoftNet(
                size=X.shape[-1],
                kernel_size=config.kernel_size,
                hidden=config.hidden,
                normalize=config.normalize,
            )
        generator = torch.Generator().manual_seed(config.seed)
        raw = torch.from_numpy(np.ascontiguousarray(X[chosen]))
        targets = torch.from_numpy(y[chosen])
        if config.normalize == "scale":
            model.fit_scale(raw)
        with torch.no_grad():
            inputs = model.prepare(raw)
            if config.augments:
                pos = targets >= 0.5
                inputs = torch.cat([inputs, _augment(inputs[pos], generator)])
                targets = torch.cat([targets, targets[pos].repeat(3)])
        _fit(model, inputs, targets, config, generator, progress)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model


def _fit(
    model: SoftNet,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: SpotterConfig,
    generator: torch.Generator,
    progress: bool,
) -> None:
    if config.optimizer == "sgd":
        optimiser: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    else:
        optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = torch.nn.MSELoss()
    n = len(inputs)
    model.train()
    bar = tqdm(range(config.epochs), desc="softnet", unit="epoch", disable=not progress)
    for _ in bar:
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for s in range(0, n, config.batch_size):
            batch = order[s : s + config.batch_size]
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model.body(inputs[batch]), targets[batch])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        bar.set_postfix(loss=f"{total / n:.4f}")
        log.debug("softnet epoch loss %.4f", total / n)


@torch.no_grad()
def score_video(model: SoftNet, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(N,) float32 spotting scores of flow images X (N, 3, S, S)."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise MekitError(f"score_video needs flow images (N, C, H, W), got shape {X.shape}")
    was = model.training
    model.eval()
    out = np.empty(len(X), np.float32)
    for s in range(0, len(X), batch_size):
        out[s : s + batch_size] = model(torch.from_numpy(X[s : s + batch_size])).numpy()
    model.train(was)
    return out


def score_source(
    model: SoftNet,
    source: str | Path | Iterable,
    k: int,
    *,
    batch_size: int = 512,
    **window_options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """(frames, scores) of a video scored as its windows stream by, batch by batch: memory
    does not grow with the video beyond the two (N,) arrays. `window_options` go to
    `WindowStream` (fps, face_size, method, layout, track, ...), and must match how the model
    was trained."""
    stream = WindowStream(source, k, model.size, **window_options)
    frames: list[int] = []
    scores: list[np.ndarray] = []
    batch = np.empty((batch_size, 3, model.size, model.size), np.float32)
    used = 0
    for index, image in stream:
        batch[used] = image
        used += 1
        frames.append(index)
        if used == batch_size:
            scores.append(score_video(model, batch))
            used = 0
    if used:
        scores.append(score_video(model, batch[:used]))
    return np.asarray(frames, dtype=np.int64), np.concatenate(scores)


# ---------------------------------------------------------------------------------------------
# spotting


def smooth_scores(frames: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(grid, agg): the window scores on every frame frames[0]..frames[-1] (windows left out
    are missing), smoothed over 2k + 1 windows: agg[j] = mean(score[j - k .. j + k]) over the
    windows that exist (NaN where none does). The reference averages score[j - k .. j + k - 1]."""
    frames = np.asarray(frames, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if frames.shape != scores.shape or frames.ndim != 1:
        raise MekitError(f"frames {frames.shape} and scores {scores.shape} must be (N,) alike")
    if len(frames) == 0:
        return frames.copy(), scores.copy()
    if np.any(np.diff(frames) <= 0):
        raise MekitError("frames must be strictly increasing")
    grid = np.arange(frames[0], frames[-1] + 1)
    value = np.zeros(len(grid))
    count = np.zeros(len(grid))
    ok = np.isfinite(scores)
    value[frames[ok] - frames[0]] = scores[ok]
    count[frames[ok] - frames[0]] = 1.0
    cv = np.concatenate([[0.0], np.cumsum(value)])
    cc = np.concatenate([[0.0], np.cumsum(count)])
    j = np.arange(len(grid))
    lo, hi = np.clip(j - k, 0, len(grid)), np.clip(j + k + 1, 0, len(grid))
    n = cc[hi] - cc[lo]
    agg = np.full(len(grid), np.nan)
    np.divide(cv[hi] - cv[lo], n, out=agg, where=n > 0)
    return grid, agg


def spot_from_scores(
    frames: np.ndarray,
    scores: np.ndarray,
    fps: float,
    k: int,
    p: float = DEFAULT_P,
    *,
    kind: str | None = None,
    min_score: float = 0.0,
    last_frame: int | None = None,
    micro_max_ms: float = MICRO_MAX_MS,
    video: str = "",
) -> list[Interval]:
    """Intervals from per-window scores (the reference's spotting, see the module doc).

    `frames`: the windows' first frames; `scores`: their scores (NaN: missing). The scores are
    smoothed (`smooth_scores`); T = max(mean + p (max - mean), min_score) of the smoothed
    curve; each peak j above T (peaks at least k frames apart) is an expression centred on its
    windows' centre c = j + k // 2: the interval c - k .. c + k (clipped to frames[0] ..
    `last_frame`, default frames[-1] + k), apex c, score the smoothed value. (The reference puts
    the interval at j - k .. j + k, k / 2 frames early.) `kind`: the kind of every interval
    (None: "micro" when it lasts at most `micro_max_ms`, else "macro").
    """
    if not 0 < p < 1:
        raise MekitError(f"p must be in (0, 1), got {p}")
    if k < 1:
        raise MekitError(f"k must be at least 1, got {k}")
    if not fps > 0:
        raise MekitError(f"fps must be positive, got {fps}")
    grid, agg = smooth_scores(frames, scores, k)
    good = np.isfinite(agg)
    if not good.any():
        return []
    mean, top = float(agg[good].mean()), float(agg[good].max())
    threshold = max(mean + p * (top - mean), float(min_score))
    # below everything at missing windows and past both ends, so a maximum there is a peak
    low = float(agg[good].min()) - 1.0
    curve = np.concatenate([[low], np.where(good, agg, low), [low]])
    peaks, _ = find_peaks(curve, height=threshold, distance=max(1, int(k)))
    peaks = peaks - 1
    first = int(grid[0])
    last = int(grid[-1]) + int(k) if last_frame is None else int(last_frame)
    out = []
    for i in peaks:
        centre = min(max(int(grid[i]) + k // 2, first), last)
        onset, offset = max(centre - k, first), min(centre + k, last)
        if kind is None:
            this = "micro" if (offset - onset) / fps * 1000.0 <= micro_max_ms else "macro"
        else:
            this = kind
        out.append(
            Interval(
                onset=onset,
                offset=offset,
                kind=this,
                apex=centre,
                score=float(agg[i]),
                video=video,
            )
        )
    return out


def combine_kinds(
    micro: Iterable[Interval], macro: Iterable[Interval], overlap: float = 0.5
) -> list[Interval]:
    """One video's micro- and macro-expression intervals from the two kinds' spotters, in time
    order, without the micro intervals that lie within a macro one (sharing at least
    `overlap` of their frames): a micro-expression model fires on the rise and fall of
    macro-expressions too, since its k-frame windows cannot see an expression's length.
    (The reference scores the two models apart and does not combine them.)"""
    macro = list(macro)
    kept = []
    for x in micro:
        inside = max(
            (min(x.offset, m.offset) - max(x.onset, m.onset) + 1 for m in macro), default=0
        )
        if inside < overlap * x.length:
            kept.append(x)
    return sorted(kept + macro, key=lambda x: (x.onset, x.offset))


# ---------------------------------------------------------------------------------------------
# leave-one-subject-out


@dataclass(frozen=True)
class ScoreCurve:
    """A video's scores from the model of the fold that held its subject out."""

    video: str
    subject: str
    fps: float
    k: int
    frames: np.ndarray
    scores: np.ndarray
    last_frame: int


def loso_spotting(
    videos: Sequence[SpotterVideo],
    config: SpotterConfig = SpotterConfig(),
    *,
    progress: bool = False,
) -> dict[str, ScoreCurve]:
    """Leave-one-subject-out: for each subject (sorted), a fresh SOFTNet trained on the other
    subjects' videos (seed config.seed + fold) scores that subject's videos. Returns
    {video id: its curve}; no video is ever scored by a model that saw its subject."""
    config.validate()
    subjects = sorted({v.subject for v in videos})
    if len(subjects) < 2:
        raise MekitError(f"leave-one-subject-out needs at least 2 subjects, got {len(subjects)}")
    ids = [v.id for v in videos]
    if len(set(ids)) != len(ids):
        raise MekitError("video ids must be unique")
    curves: dict[str, ScoreCurve] = {}
    for fold, subject in enumerate(tqdm(subjects, desc="loso", disable=not progress)):
        train = [v for v in videos if v.subject != subject]
        test = [v for v in videos if v.subject == subject]
        fold_config = SpotterConfig(**{**asdict(config), "seed": config.seed + fold})
        model = train_spotter(train, fold_config)
        for v in test:
            curves[v.id] = ScoreCurve(
                video=v.id,
                subject=subject,
                fps=v.fps,
                k=v.k,
                frames=v.frames,
                scores=score_video(model, v.X),
                last_frame=v.last_frame,
            )
    return curves


def spot_curves(
    curves: Mapping[str, ScoreCurve], config: SpotterConfig = SpotterConfig()
) -> dict[str, list[Interval]]:
    """{video: intervals} spotted on each curve with config.p, min_score and kind."""
    return {
        name: spot_from_scores(
            c.frames,
            c.scores,
            c.fps,
            c.k,
            config.p,
            kind=config.kind,
            min_score=config.min_score,
            last_frame=c.last_frame,
            video=name,
        )
        for name, c in curves.items()
    }


def loso_scores(
    videos: Sequence[SpotterVideo],
    curves: Mapping[str, ScoreCurve],
    config: SpotterConfig = SpotterConfig(),
    threshold: float = 0.5,
) -> SpotScores:
    """MEGC spotting scores (IoU >= `threshold`) of the LOSO curves against the videos'
    truths of config.kind (all kinds when None)."""
    predicted = spot_curves(curves, config)
    truth = {
        v.id: [t for t in v.truth if config.kind is None or t.kind == config.kind] for v in videos
    }
    return spotting_scores(predicted, truth, threshold, kind=config.kind)


# ---------------------------------------------------------------------------------------------
# files


@dataclass(frozen=True)
class LoadedSpotter:
    """A spotter read by `load_spotter`: the model (eval mode, CPU) and what it was saved with
    (`meta`: k_s, window settings, spotting settings, provenance)."""

    model: SoftNet
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def windows(self) -> dict[str, Any]:
        """The `flow_windows` settings the model was trained with."""
        return dict(self.meta.get("windows", {}))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise MekitError(f"cannot write {value!r} ({type(value).__name__}) to a spotter sidecar")


def save_spotter(
    path: str | os.PathLike[str],
    model: SoftNet,
    *,
    windows: Mapping[str, Any],
    config: SpotterConfig | None = None,
    **extra: Any,
) -> tuple[Path, Path]:
    """Write the weights (safetensors) and a JSON sidecar; returns (weights, sidecar).

    `path`: stem or either file name. `windows`: how the flow images were made (k_s or k,
    size, face_size, method, layout), needed to use the model; `config`: the training and
    spotting settings; `extra`: provenance (corpus, metrics...), JSON-serialisable. Not the
    recognition models' `save_model`: SOFTNet is not a registered classifier.
    """
    from safetensors.torch import save_file

    weights, sidecar = model_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = weights.with_name(f".{weights.name}.{os.getpid()}.tmp")
    try:
        save_file(state, str(tmp), metadata={"format": FORMAT})
        digest = file_sha256(tmp)
        os.replace(tmp, weights)
    finally:
        tmp.unlink(missing_ok=True)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": "softnet",
        "model_kwargs": model.options(),
        "input": {"channels": list(CHANNEL_NAMES), "size": model.size},
        "windows": _plain(dict(windows)),
        "config": _plain(asdict(config)) if config is not None else None,
        "sha256": digest,
        **_plain(extra),
    }
    tmp_meta = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp_meta, sidecar)
    return weights, sidecar


def load_spotter(path: str | os.PathLike[str]) -> LoadedSpotter:
    """Read a spotter written by `save_spotter` (stem or either file): the sidecar is checked,
    the weights' SHA-256 compared with it, and the weights read with safetensors (no pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, sidecar = model_paths(path)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MekitError(f"spotter sidecar {sidecar} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MekitError(f"spotter sidecar {sidecar} is not valid JSON: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise MekitError(f"{sidecar} is not a mekit spotter file (format is not {FORMAT!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise MekitError(f"{sidecar} was written by a newer mekit; upgrade mekit")
    if not weights.is_file():
        raise MekitError(f"spotter weights {weights} not found (named by {sidecar})")
    if file_sha256(weights) != meta.get("sha256"):
        raise MekitError(
            f"spotter weights {weights} do not match the SHA-256 in {sidecar}: the file is "
            "corrupt or was modified after saving"
        )
    try:
        state = load_file(str(weights), device="cpu")
        kwargs = dict(meta["model_kwargs"])
        kwargs["stream_widths"] = tuple(kwargs.get("stream_widths", (3, 5, 8)))
        model = SoftNet(**kwargs)
        model.load_state_dict(state, strict=True)
    except (SafetensorError, OSError, KeyError, TypeError, ValueError, RuntimeError) as error:
        raise MekitError(f"cannot read spotter {weights}: {error}") from None
    model.eval()
    return LoadedSpotter(model=model, meta=meta)


# ---------------------------------------------------------------------------------------------
# window caches and the leave-one-subject-out command


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


def _long_videos(root: Path) -> list[LongVideo]:
    if (root / "intervals.csv").is_file() or (root / "long_videos" / "intervals.csv").is_file():
        return synth_long_videos(root)
    from mekit.data.corpora import load_corpus

    _, result = load_corpus(root)
    if not result.videos:
        raise MekitError(f"{root}: the corpus has no long videos to spot in")
    return list(result.videos)
