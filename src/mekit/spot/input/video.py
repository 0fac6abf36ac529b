"""Streaming video input for spotting: one grey frame at a time, never the whole video.

A source is a video file (anything FFmpeg reads, through PyAV) or a folder of numbered image
frames (CASME II / CAS(ME)^2 / SAMM layouts, listed with `mekit.data.records.numbered_frames`).

Frame index: in a video, the 0-based position of the frame in presentation order; in a folder,
the number in the file name (`img46.jpg` -> 46), so annotations keep their numbering. Frame time
(`Frame.time_s`): seconds since the source's first frame; in a video from the presentation
timestamps (so a variable frame rate gives true times), in a folder (number - first number) /
fps, with the rate given to `VideoReader` (NaN without one).

Grey frames come straight from the decoder's luma plane (Y of YUV), with no colour conversion:
that costs nothing where `to_ndarray(format="gray")` costs more than the rest of the front end.

Problems:
- missing file, not a video, no video stream, nothing decodable: `MekitError` naming the file;
- an empty file, a file in no video format, a damaged or truncated MP4 without its index, a
  codec this FFmpeg cannot decode: `MekitError` naming that cause;
- corrupt data mid-stream (or a truncated file, found by the frame count or the duration the
  container's header announces): reading stops there with a `VideoWarning` that says how many
  frames were read; the frames before it are kept (`VideoReader.stopped` holds the message);
- variable frame rate (presentation times not evenly spaced): a `VideoWarning`, and
  `VideoInfo.variable_fps` / `VideoReader.variable_fps` set; times come from the timestamps.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mekit.data.records import numbered_frames
from mekit.errors import MekitError

log = logging.getLogger(__name__)

# Presentation intervals further than this from the median interval mean a variable frame rate
# (one timestamp tick of slack is always allowed, for rounded time bases).
VFR_TOLERANCE = 0.1
# A truncated file loses up to this many frames before its cut (those whose references are
# gone): uneven steps there are the cut's, not a variable frame rate.
TRUNCATION_FRAMES = 8
# Pixel formats whose first plane is the 8-bit luma: read directly as the grey frame.
LUMA_FORMATS = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}
)

FULL_RANGE = 2  # AVCOL_RANGE_JPEG
VIDEO_TO_FULL = np.clip(np.rint((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)


class VideoWarning(UserWarning):
    """Part of a video could not be used; the results cover the rest (the message says which)."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source before decoding it.

    fps: nominal frame rate (the stream's average rate; NaN for a folder, whose rate the caller
    gives). n_frames: frames in the source; exact when `n_frames_exact` (every packet was
    counted, or the folder listed), else the container's estimate. variable_fps: presentation
    intervals vary by more than `VFR_TOLERANCE` (known after a packet scan; False otherwise).
    """

    path: Path
    fps: float
    n_frames: int
    width: int
    height: int
    variable_fps: bool = False
    n_frames_exact: bool = False
    is_folder: bool = False
    duration_header_s: float = 0.0  # the container's own duration (0: none given)

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps if self.fps > 0 else math.nan


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index and time (see the module doc), grey image (H, W) uint8."""

    index: int
    image: np.ndarray
    time_s: float


def open_video(path: str | Path, scan: bool = True) -> VideoInfo:
    """Probe `path` (video file or folder of numbered frames) without decoding it.

    With `scan` (default) every packet's timestamp is read (demuxing only, about 100k packets/s)
    for an exact frame count and the variable-frame-rate check; otherwise the container's
    header estimate is used. Raises `MekitError` naming the file for a missing file, a file
    that is not a video or a video without a video stream.
    """
    path = Path(path)
    if path.is_dir():
        return _folder_info(path)
    import av

    container = _open_container(path)
    with container:
        stream = _video_stream(container, path)
        fps = _stream_fps(stream)
        n_frames = int(stream.frames or 0)
        exact = False
        variable = False
        if scan:
            stamps: list[int] = []
            try:
                for packet in container.demux(stream):
                    if packet.size and packet.pts is not None:
                        stamps.append(int(packet.pts))
                    elif packet.size:
                        stamps.append(-1)
                exact = True
            except av.error.FFmpegError as error:
                log.info("%s: packet scan stopped early: %s", path, error)
            if exact or len(stamps) > n_frames:
                n_frames = len(stamps)
            known = np.sort(np.array([s for s in stamps if s >= 0], dtype=np.int64))
            if len(known) > 2 and stream.time_base is not None:
                variable = is_variable_rate(
                    known * float(stream.time_base), float(stream.time_base)
                )
        if n_frames <= 0 and fps > 0:
            seconds = _duration_s(container, stream)
            n_frames = int(round(seconds * fps)) if seconds > 0 else 0
        info = VideoInfo(
            path=path,
            fps=fps,
            n_frames=n_frames,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            variable_fps=variable,
            n_frames_exact=exact,
            duration_header_s=_header_duration_s(container, stream),
        )
    if variable:
        _warn(f"{path}: variable frame rate; frame times come from the timestamps")
    return info


def is_variable_rate(times_s: np.ndarray, tick_s: float = 0.0) -> bool:
    """Whether sorted presentation times are unevenly spaced (see `VFR_TOLERANCE`)."""
    steps = np.diff(np.asarray(times_s, dtype=np.float64))
    steps = steps[steps > 0]
    if len(steps) < 2:
        return False
    median = float(np.median(steps))
    return bool(np.any(np.abs(steps - median) > VFR_TOLERANCE * median + tick_s))


class VideoReader:
    """Streams the frames of one source; after (or during) iteration its attributes report
    how the read went.

    n_read: frames yielded so far. stopped: None, or the reason reading ended before the end
    of the source (corrupt data, truncated file, unreadable image). variable_fps: the frame
    times seen so far are unevenly spaced.
    """

    def __init__(
        self, path: str | Path, threads: str | None = "AUTO", fps: float | None = None
    ) -> None:
        self.path = Path(path)
        self.threads = threads
        self.info = open_video(self.path, scan=False)
        self.fps = float(fps) if fps else self.info.fps  # a folder's rate comes from here
        self.n_read = 0
        self.stopped: str | None = None
        self.variable_fps = False
        self._last_time: float | None = None
        self._step: float | None = None
        self._uneven_at: int | None = None  # frames read when the first uneven step came

    @property
    def complete(self) -> bool:
        return self.stopped is None

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[Frame]:
        """Frames with start <= index < stop (stop None: to the end)."""
        if self.info.is_folder:
            yield from self._folder_frames(start, stop)
        else:
            yield from self._video_frames(start, stop)

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def _video_frames(self, start: int, stop: int | None) -> Iterator[Frame]:
        import av

        with _open_container(self.path) as container:
            stream = _video_stream(container, self.path)
            if self.threads:
                stream.thread_type = self.threads
            tick = float(stream.time_base) if stream.time_base is not None else 0.0
            declared = int(stream.frames or 0)  # the container's own count (MP4 has one)
            fps = self.fps
            first_pts: int | None = None
            index = -1
            done = False

            def emit(decoded) -> Iterator[Frame]:
                nonlocal first_pts, index
                for frame in decoded:
                    index += 1
                    if first_pts is None and frame.pts is not None:
                        first_pts = int(frame.pts)
                    if index < start:
                        continue
                    if stop is not None and index >= stop:
                        return
                    if frame.pts is not None and first_pts is not None and tick > 0:
                        time_s = (int(frame.pts) - first_pts) * tick
                    else:
                        time_s = index / fps if fps > 0 else math.nan
                    self._check_rate(time_s, tick)
                    self.n_read += 1
                    yield Frame(index, grey_plane(frame), time_s)

            try:
                for packet in container.demux(stream):
                    try:
                        decoded = packet.decode()
                    except av.error.FFmpegError as error:
                        self._stop(f"corrupt data at packet pts {packet.pts}: {error}")
                        break
                    yield from emit(decoded)
                    if stop is not None and index >= stop - 1:
                        done = True
                        break
            except av.error.FFmpegError as error:
                self._stop(f"the stream cannot be read further: {error}")
            if not done:
                try:  # frames the decoder still holds (it lags a few packets behind)
                    yield from emit(stream.codec_context.decode(None))
                except av.error.FFmpegError as error:
                    log.info("%s: decoder flush failed: %s", self.path, error)
        if self.stopped is None and stop is None and index + 1 < declared - max(2, 0.01 * declared):
            self._truncated(f"the file ends after {index + 1} of {declared} frames (truncated?)")
        elif self.stopped is None and stop is None and not declared:
            # No frame count (Matroska, WebM): the duration in the header says what is missing.
            expected_s, step = self.info.duration_header_s, 1.0 / fps if fps > 0 else 0.0
            end_s = self._last_time + step if self._last_time is not None else 0.0
            if expected_s > 0 and end_s < expected_s - max(2 * step, 0.01 * expected_s):
                self._truncated(
                    f"the file ends at {end_s:.2f} s of the {expected_s:.2f} s its header "
                    "announces (truncated?)"
                )
        if self.n_read == 0 and self.stopped is not None:
            raise MekitError(f"{self.path}: no frame could be decoded ({self.stopped})")

    def _folder_frames(self, start: int, stop: int | None) -> Iterator[Frame]:
        numbers, paths = numbered_frames(self.path)
        fps = self.fps
        for number, file in zip(numbers, paths, strict=True):
            if number < start or (stop is not None and number >= stop):
                continue
            image = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
            if image is None:
                self._stop(f"{file.name} cannot be read as an image")
                return
            self.n_read += 1
            yield Frame(number, image, (number - numbers[0]) / fps if fps > 0 else math.nan)

    def _check_rate(self, time_s: float, tick: float) -> None:
        last, self._last_time = self._last_time, time_s
        if last is None or self.variable_fps or not math.isfinite(time_s):
            return
        step = time_s - last
        if step <= 0:
            return
        if self._step is None:
            self._step = 1.0 / self.info.fps if self.info.fps > 0 else step
        if abs(step - self._step) > VFR_TOLERANCE * self._step + tick:
            self.variable_fps = True
            self._uneven_at = self.n_read
            _warn(
                f"{self.path}: variable frame rate (a step of {step * 1000:.1f} ms where "
                f"{self._step * 1000:.1f} ms was expected); frame times come from the timestamps"
            )

    def _truncated(self, reason: str) -> None:
        """Stop with `reason`; uneven frame steps seen only just before the cut are frames the
        cut took (the decoder drops those whose references are gone), not a variable rate."""
        if self._uneven_at is not None and self.n_read - self._uneven_at <= TRUNCATION_FRAMES:
            self.variable_fps = False
        self._stop(reason)

    def _stop(self, reason: str) -> None:
        self.stopped = reason
        _warn(f"{self.path}: reading stopped after {self.n_read} frames: {reason}")


def iter_frames(
    path: str | Path, start: int = 0, stop: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, grey uint8 frame) for start <= index < stop, streamed from a video or folder.

    Stops with a `VideoWarning` at corrupt data (see the module doc); use `VideoReader` for
    frame times and to learn whether the read was complete.
    """
    for frame in VideoReader(path).frames(start, stop):
        yield frame.index, frame.image


def grey_plane(frame) -> np.ndarray:
    """The grey image (H, W) uint8 of a PyAV video frame: its luma plane, stretched from video
    range (16-235) to 0-255 where the stream uses video range, so it matches a grey conversion
    of the decoded colour image (within a grey level or two)."""
    name = frame.format.name
    if name not in LUMA_FORMATS:
        return frame.to_ndarray(format="gray")
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    rows = rows[:, : frame.width]
    if name == "gray" or name.startswith("yuvj") or frame.color_range == FULL_RANGE:
        return rows.copy()
    return cv2.LUT(rows, VIDEO_TO_FULL)


def _open_container(path: Path):
    import av

    if not path.exists():
        raise MekitError(f"{path}: no such file or folder")
    if not path.is_file():
        raise MekitError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise MekitError(f"{path}: not a video: the file is empty (0 bytes)")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as error:
        raise MekitError(f"{path}: {_unreadable_cause(path, error)}") from None


def _unreadable_cause(path: Path, error: Exception) -> str:
    """Why FFmpeg could not open `path`, from what its first bytes announce."""
    with open(path, "rb") as f:
        head = f.read(12)
    reason = getattr(error, "strerror", None) or str(error)
    if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return (
            f"not a readable video: an MP4/MOV file that is truncated or damaged ({reason}; "
            "its index, written at the end of the recording, is missing or unreadable)"
        )
    if head[:4] == b"\x1a\x45\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
        return f"not a readable video: a Matroska/WebM or AVI file that is damaged ({reason})"
    return f"not a video: FFmpeg recognises no video format in its content ({reason})"


def _video_stream(container, path: Path):
    if not container.streams.video:
        container.close()
        raise MekitError(f"{path}: the file has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # FFmpeg demuxes it but has no decoder for its codec
        container.close()
        raise MekitError(
            f"{path}: not a readable video: its video codec is not supported (this FFmpeg has "
            "no decoder for it)"
        )
    return stream


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0:
            return float(rate)
    return math.nan


def _duration_s(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def _header_duration_s(container, stream) -> float:
    """The video stream's duration as the container's header gives it (0.0: not given).

    The stream's own duration, else Matroska's per-stream DURATION tag, else the container's
    duration when the video is its only stream (an audio track may run longer)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    if tag:
        try:
            hours, minutes, seconds = str(tag).split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            pass
    if container.duration is not None and len(container.streams) == 1:
        return container.duration / 1_000_000
    return 0.0


def _folder_info(path: Path) -> VideoInfo:
    numbers, paths = numbered_frames(path)
    if not numbers:
        raise MekitError(f"{path}: no numbered image frames in the folder")
    first = cv2.imread(str(paths[0]), cv2.IMREAD_GRAYSCALE)
    if first is None:
        raise MekitError(f"{paths[0]}: cannot be read as an image")
    return VideoInfo(
        path=path,
        fps=math.nan,
        n_frames=len(numbers),
        width=int(first.shape[1]),
        height=int(first.shape[0]),
        n_frames_exact=True,
        is_folder=True,
    )


def _warn(message: str) -> None:
    log.warning(message)
    warnings.warn(message, VideoWarning, stacklevel=3)
