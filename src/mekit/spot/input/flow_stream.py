"""The streaming front end of both spotters: decode, follow the face, flow between aligned
frames k apart.

`open_frames` opens a source: a video file or a folder of numbered frames (`video`), or frames
given directly. `FlowStream` follows the face over it (`track`) and yields one `FlowStep` per
frame read: the tracked frame and, where both frames show the face in one shot, the dense flow
from the aligned crop of the frame k positions earlier in the stream (reference="sliding") or
of the stream's first face (reference="first") to this frame's crop. Only a ring of the last
k + 1 tracked frames is kept, so memory does not grow with the video's length.

When the crop transform changes (a new shot), the buffered frames are cropped again with the
new transform, so the flow runs on without a gap; `FlowStep.new_shot` marks the frame where a
consumer rebuilds what it derives from the shot's landmarks (region masks, ROI boxes).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from mekit.errors import MekitError
from mekit.spot.input.track import FaceTrack, TrackConfig, TrackedFrame
from mekit.spot.input.video import Frame, VideoReader

METHODS = ("farneback", "dis")
NO_SHOT = -2  # no shot seen yet (a tracked frame's shot is -1 without a face)


class FlowEngine:
    """Dense flow between two small grey crops, one solver kept across frames."""

    def __init__(self, method: str) -> None:
        if method not in METHODS:
            raise MekitError(f"flow method '{method}' is not one of {', '.join(METHODS)}")
        self.method = method
        self._dis = None
        if method == "dis":
            dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
            dis.setFinestScale(0)  # full resolution: the crops are small
            dis.setPatchSize(8)
            dis.setPatchStride(4)
            dis.setGradientDescentIterations(16)
            dis.setVariationalRefinementIterations(5)
            self._dis = dis

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """(H, W, 2) float32 flow from `first` to `second`, px."""
        if self._dis is not None:
            return self._dis.calc(first, second, None)
        return cv2.calcOpticalFlowFarneback(
            first, second, None, pyr_scale=0.5, levels=2, winsize=9, iterations=3, poly_n=5,
            poly_sigma=1.1, flags=0,
        )  # fmt: skip


@dataclass
class FrameSource:
    """A source opened for streaming: `frames` (not read yet), their rate `fps`, `name` for
    messages, the `reader` of a video or folder (None for frames given directly; it reports
    how the read went) and `total`, the frame count its header announces (None: unknown)."""

    frames: Iterable[Frame]
    fps: float
    name: str
    reader: VideoReader | None = None
    total: int | None = None


def open_frames(
    source: str | Path | Iterable,
    fps: float | None = None,
    *,
    start: int = 0,
    stop: int | None = None,
    name: str | None = None,
) -> FrameSource:
    """Open a video file or a folder of numbered frames (path), or frames given directly (an
    iterable of grey/BGR uint8 images, (index, image) pairs or `video.Frame`s; `fps` is then
    needed, as it is for a folder). `fps` overrides the video's own rate; `start`/`stop` bound
    the frame indices read from a path. Raises `MekitError` when no frame rate is known."""
    if isinstance(source, (str, Path)):
        reader = VideoReader(source, fps=fps)
        if not (reader.fps > 0):
            what = "a folder of frames" if reader.info.is_folder else "this video"
            raise MekitError(f"{source}: {what} has no frame rate; pass fps")
        frames = reader.frames(start, stop)
        return FrameSource(frames, reader.fps, name or str(source), reader, reader.info.n_frames)
    if not fps or fps <= 0:
        raise MekitError("frames given directly need their frame rate: pass fps")
    return FrameSource(_as_frames(source, float(fps)), float(fps), name or "frames")


@dataclass(frozen=True)
class FlowStep:
    """One frame of a `FlowStream`. tracked: the frame as the face track saw it. past: the
    frame the flow starts from (None before the ring is full). flow: (face_size, face_size, 2)
    float32 flow from past's aligned crop to tracked's, crop px; None where either frame lacks
    the face, they lie in different shots, or no shot has started. new_shot: tracked is the
    first frame with a face under a new crop transform (its landmarks define the shot)."""

    tracked: TrackedFrame
    past: TrackedFrame | None
    flow: np.ndarray | None
    new_shot: bool


@dataclass
class _Buffered:
    frame: TrackedFrame
    crop: np.ndarray | None
    shot: int


class FlowStream:
    """Streams the flow of one opened source, frame by frame (see the module doc).

    `k`: the flow offset in frames (ignored with reference="first"). `face_size`: the aligned
    crop's side, px (it replaces `track`'s). `method`: "farneback" or "dis" (`FlowEngine`).
    After (or during) iteration: `n_frames` frames read, `n_face` of them with a face.
    """

    def __init__(
        self,
        source: FrameSource,
        k: int,
        *,
        face_size: int,
        method: str = "farneback",
        reference: str = "sliding",
        track: TrackConfig | None = None,
        progress: bool = False,
    ) -> None:
        if reference not in ("sliding", "first"):
            raise MekitError(f"reference must be 'sliding' or 'first', got '{reference}'")
        config = track or TrackConfig()
        if config.face_size != face_size:
            config = TrackConfig(**{**config.__dict__, "face_size": int(face_size)})
        self.source, self.k, self.reference, self.progress = source, k, reference, progress
        self.tracker = FaceTrack(source.fps, config, name=source.name)
        self.engine = FlowEngine(method)
        self.n_frames = self.n_face = 0

    def __iter__(self) -> Iterator[FlowStep]:
        ring: deque[_Buffered] = deque(maxlen=self.k + 1)
        first: _Buffered | None = None  # reference="first": the stream's first face
        shot = NO_SHOT
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # small images: OpenCV's thread pool costs more than it saves
        bar = tqdm(
            total=self.source.total,
            desc=Path(self.source.name).name,
            unit="frame",
            disable=not self.progress,
            leave=False,
        )
        try:
            for tracked in self.tracker.run(self.source.frames):
                bar.update()
                self.n_frames += 1
                self.n_face += bool(tracked.face_ok)
                current = _Buffered(tracked, tracked.crop, tracked.shot)
                new_shot = bool(tracked.face_ok and tracked.shot != shot)
                if new_shot:
                    shot = tracked.shot
                    self._recrop([*ring, *([first] if first is not None else [])], shot)
                ring.append(current)
                if self.reference == "first":
                    if first is None and tracked.face_ok:
                        first = current
                    past = first
                else:
                    past = ring[0] if len(ring) == self.k + 1 else None
                flow = None
                if (
                    shot != NO_SHOT
                    and past is not None
                    and past.crop is not None
                    and current.crop is not None
                    and past.shot == current.shot
                ):
                    flow = self.engine(past.crop, current.crop)
                yield FlowStep(tracked, past.frame if past is not None else None, flow, new_shot)
        finally:
            bar.close()
            cv2.setNumThreads(threads)

    def _recrop(self, items: Iterable[_Buffered], shot: int) -> None:
        """Crop buffered frames again with the current shot's transform."""
        cropper = self.tracker.cropper
        if cropper is None:
            return
        for item in items:
            if item.shot != shot and item.frame.face_ok:
                item.crop = cropper(item.frame.image)
                item.shot = shot


def _as_frames(source: Iterable, fps: float) -> Iterator[Frame]:
    """Frames given directly as `Frame`s: images and (index, image) pairs are timed by their
    position in the stream."""
    for position, item in enumerate(source):
        if isinstance(item, Frame):
            yield item
        elif isinstance(item, np.ndarray):
            yield Frame(position, item, position / fps)
        else:
            yield Frame(int(item[0]), item[1], position / fps)
