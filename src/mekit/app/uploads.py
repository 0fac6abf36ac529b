"""Receiving an uploaded video: streamed to disk under a size limit, then checked to be a video.

The multipart body is parsed as it arrives (python-multipart's streaming parser), so a file over
the limit is refused after at most one chunk past it, never after it has all been spooled. A
file is accepted when its extension is in `VIDEO_EXTENSIONS`, its first bytes are those of a
video container (ISO BMFF/QuickTime, AVI, Matroska/WebM), its container header announces a
video within `VideoLimits` (frame size, frame count, duration) and PyAV decodes a frame of it.
A body that sends nothing for `idle_timeout_s` is dropped (408), so stalled uploads do not hold
the server's connections and files.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
FIELD = "file"
# Room for the multipart boundaries and part headers on top of the file itself.
ENVELOPE_BYTES = 64 * 1024
_QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")


class UploadError(Exception):
    """An upload refused with HTTP `status` and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class VideoLimits:
    """The largest video accepted: frame side (px, the longer one), frames, duration (s)."""

    max_frame_side: int = 3840
    max_frames: int = 108_000
    max_duration_s: float = 1800.0


@dataclass(frozen=True)
class Upload:
    path: Path  # where the file was written (the server's name, not the user's)
    filename: str  # the name the browser sent, unsanitised: for display only
    extension: str  # lower case, one of VIDEO_EXTENSIONS
    size: int  # bytes


def extension_of(filename: str) -> str:
    """The lower-case extension if it is a video one; raise UploadError 415 otherwise."""
    suffix = Path(filename.replace("\\", "/")).suffix.lower()
    if suffix not in VIDEO_EXTENSIONS:
        raise UploadError(
            415,
            f"'{suffix or filename}' is not a supported video type; "
            f"upload one of {', '.join(VIDEO_EXTENSIONS)}",
        )
    return suffix


def container_of(head: bytes) -> str | None:
    """The container family that the first 12 bytes of a file announce, or None."""
    if head[4:8] == b"ftyp" or head[4:8] in _QUICKTIME_ATOMS:
        return "iso-bmff"  # .mp4 .m4v .mov
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"  # .mkv .webm
    return None


def over_limits(stream, container, limits: VideoLimits) -> str | None:
    """Why the video stream is over `limits`, from the container header alone; None if not.

    Frame count: the stream's own, else duration x frame rate. Duration: the stream's, else
    the container's."""
    ctx = stream.codec_context
    width, height = (int(ctx.width or 0), int(ctx.height or 0)) if ctx is not None else (0, 0)
    if max(width, height) > limits.max_frame_side:
        return (
            f"its frames are {width}x{height} pixels, more than the {limits.max_frame_side} "
            "px on the longer side this server takes (mekit serve --max-frame-side)"
        )
    duration = 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    if duration > limits.max_duration_s:
        return (
            f"it lasts {duration:.0f} s, longer than the {limits.max_duration_s:g} s this server "
            "takes (mekit serve --max-duration-s)"
        )
    rate = stream.average_rate or stream.guessed_rate
    frames = int(stream.frames or 0)
    if not frames and rate and duration > 0 and math.isfinite(float(rate)):
        frames = int(duration * float(rate))
    if frames > limits.max_frames:
        return (
            f"it has {frames} frames, more than the {limits.max_frames} this server takes "
            "(mekit serve --max-frames)"
        )
    return None


def probe_video(path: Path, limits: VideoLimits | None = None) -> tuple[int, str] | None:
    """None if PyAV opens `path`, its header is within `limits` and a video frame decodes;
    else (HTTP status, why not): 415 not a usable video, 413 over a limit. The reason never
    names `path` (the server's file)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 415, "it holds no video stream"
            stream = container.streams.video[0]
            if stream.codec_context is None:
                return 415, "its video codec is not supported"
            if limits is not None:
                over = over_limits(stream, container, limits)
                if over:
                    return 413, over
            for _ in container.decode(video=0):
                return None
            return 415, "no frame of it could be decoded"
    except Exception as e:  # any failure to demux or decode means: not a usable video
        why = getattr(e, "strerror", None) or str(e)
        why = why.replace(str(path), "the file").replace(path.name, "the file")
        return 415, f"it cannot be read as a video ({type(e).__name__}: {why})"


def check_video(path: Path, limits: VideoLimits | None = None) -> None:
    """Raise UploadError 415 unless `path` looks like a video and decodes as one, 413 if its
    header announces a video over `limits`."""
    with open(path, "rb") as f:
        head = f.read(12)
    if container_of(head) is None:
        raise UploadError(
            415, "the file is not a video: its content is not MP4, MOV, AVI, MKV or WebM"
        )
    refused = probe_video(path, limits)
    if refused:
        status, reason = refused
        prefix = "the video is too large" if status == 413 else "the file is not a usable video"
        raise UploadError(status, f"{prefix}: {reason}")


class _FilePart:
    """The callbacks of one multipart body: the `FIELD` file part goes to `dest`."""

    def __init__(self, dest: Path, max_bytes: int) -> None:
        self.dest = dest
        self.max_bytes = max_bytes
        self.filename: str | None = None
        self.extension = ""
        self.size = 0
        self.error: UploadError | None = None
        self._file = None
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._parts = 0

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._parts += 1
        if self._parts > 8 and self.error is None:
            self.error = UploadError(400, "too many form fields; send one field named 'file'")

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if name != FIELD or filename is None or self.error is not None:
            return
        if self.filename is not None:
            self.error = UploadError(400, "send one video at a time")
            return
        self.filename = filename.decode("utf-8", "replace")
        try:
            self.extension = extension_of(self.filename)
        except UploadError as e:
            self.error = e
            return
        self._file = open(self.dest, "wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is None or self.error is not None:
            return
        self.size += end - start
        if self.size > self.max_bytes:
            self.error = _too_large(self.max_bytes)
            return
        self._file.write(data[start:end])

    def _part_end(self) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _too_large(max_bytes: int) -> UploadError:
    return UploadError(
        413, f"the file is larger than the limit of {round(max_bytes / 2**20, 3):g} MB"
    )


async def _chunks(request: Request, idle_timeout_s: float | None):
    """The request body's chunks; UploadError 408 when none comes for `idle_timeout_s`."""
    stream = request.stream().__aiter__()
    while True:
        try:
            yield await asyncio.wait_for(stream.__anext__(), idle_timeout_s)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise UploadError(
                408, f"the upload stalled: nothing arrived for {idle_timeout_s:g} s"
            ) from None


async def receive_video(
    request: Request,
    dest: Path,
    max_bytes: int,
    limits: VideoLimits | None = None,
    idle_timeout_s: float | None = None,
) -> Upload:
    """Stream the `file` field of a multipart/form-data request into `dest` and check it.

    Raises UploadError (400 malformed or empty, 408 stalled for `idle_timeout_s`, 413 too large
    or over `limits`, 415 not a video); `dest` is removed then.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UploadError(415, "send the video as multipart/form-data in a field named 'file'")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + ENVELOPE_BYTES:
        raise _too_large(max_bytes)
    part = _FilePart(dest, max_bytes)
    parser = MultipartParser(boundary, part.callbacks())
    received = 0
    try:
        try:
            async for chunk in _chunks(request, idle_timeout_s):
                received += len(chunk)
                if received > max_bytes + ENVELOPE_BYTES:
                    raise _too_large(max_bytes)
                parser.write(chunk)
                if part.error is not None:
                    raise part.error
            parser.finalize()
        except ClientDisconnect:
            raise UploadError(400, "the upload was interrupted") from None
        except UploadError:
            raise
        except Exception as e:  # python-multipart's parse errors
            raise UploadError(400, f"malformed multipart body ({e})") from None
        finally:
            part.close()
        if part.filename is None:
            raise UploadError(400, "no file: send the video in a form field named 'file'")
        if part.size == 0:
            raise UploadError(400, "the uploaded file is empty")
        await run_in_threadpool(check_video, dest, limits)
    except BaseException:  # refused, disconnected or cancelled: leave nothing behind
        dest.unlink(missing_ok=True)
        raise
    return Upload(dest, part.filename, part.extension, part.size)
