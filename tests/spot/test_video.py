"""Streaming video input: frame counts, rates, times, frame folders, and every way a file fails."""

from __future__ import annotations

import math
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from mekit.errors import MekitError
from mekit.spot.input.video import (
    VideoReader,
    VideoWarning,
    grey_plane,
    is_variable_rate,
    iter_frames,
    open_video,
)

W, H = 64, 48


def level(i: int) -> int:
    """Grey level of test frame i: distinct for every frame, far from clipping."""
    return 40 + (i * 7) % 170


def write_video(path, n=30, fps=25, pts_ms=None, options=None, codec="libx264"):
    """n uniform grey frames (frame i at `level(i)`), H.264 in MP4; `pts_ms` gives each
    frame's timestamp in ms (a variable frame rate)."""
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": "10"}  # near-lossless, so grey levels survive
        if pts_ms is not None:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), level(i), np.uint8), "bgr24")
            if pts_ms is not None:
                frame.pts, frame.time_base = int(pts_ms[i]), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_open_and_read_a_video(tmp_path):
    path = write_video(tmp_path / "clip.mp4", n=30, fps=25)
    info = open_video(path)
    assert (info.fps, info.n_frames, info.width, info.height) == (25.0, 30, W, H)
    assert info.n_frames_exact and not info.variable_fps and not info.is_folder
    assert info.duration_s == pytest.approx(1.2)
    frames = list(iter_frames(path))
    assert [i for i, _ in frames] == list(range(30))
    for i, image in frames:
        assert image.shape == (H, W) and image.dtype == np.uint8
        assert abs(float(image.mean()) - level(i)) < 3  # right frame, in the right order


def test_start_stop_and_times(tmp_path):
    path = write_video(tmp_path / "clip.mp4", n=30, fps=25)
    reader = VideoReader(path)
    frames = list(reader.frames(start=10, stop=14))
    assert [f.index for f in frames] == [10, 11, 12, 13]
    assert [f.time_s for f in frames] == pytest.approx([0.40, 0.44, 0.48, 0.52])
    assert reader.complete and reader.n_read == 4
    assert abs(float(frames[0].image.mean()) - level(10)) < 3


def test_grey_frame_matches_a_grey_conversion_of_the_colour_frame(tmp_path):
    path = write_video(tmp_path / "clip.mp4", n=3)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        grey = cv2.cvtColor(frame.to_ndarray(format="bgr24"), cv2.COLOR_BGR2GRAY)
        assert np.abs(grey_plane(frame).astype(int) - grey).max() <= 2


def test_variable_frame_rate_is_reported_and_times_follow_timestamps(tmp_path):
    steps = [40] * 10 + [80] * 5 + [40] * 10  # a stretch at half the rate
    pts = np.concatenate([[0], np.cumsum(steps)])
    path = write_video(tmp_path / "vfr.mp4", n=len(pts), fps=25, pts_ms=pts)
    with pytest.warns(VideoWarning, match="variable frame rate"):
        info = open_video(path)
    assert info.variable_fps
    reader = VideoReader(path)
    with pytest.warns(VideoWarning, match="variable frame rate"):
        times = [f.time_s for f in reader.frames()]
    assert reader.variable_fps
    assert times == pytest.approx(pts / 1000.0)


def test_is_variable_rate():
    assert not is_variable_rate(np.arange(100) / 200.0)
    assert not is_variable_rate(np.round(np.arange(100) * 1000 / 29.97) / 1000, 0.001)
    assert is_variable_rate(np.r_[np.arange(50), 50.5 + np.arange(50)] / 30.0)


def test_truncated_file_keeps_the_frames_before_the_cut(tmp_path):
    # The index at the front (faststart), as streaming-friendly MP4s have it: the file is still
    # readable up to where it was cut.
    path = write_video(tmp_path / "full.mp4", n=120, options={"movflags": "+faststart"})
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    reader = VideoReader(cut)
    with pytest.warns(VideoWarning, match="reading stopped after"):
        frames = list(reader.frames())
    assert 0 < len(frames) < 120
    assert not reader.complete and reader.n_read == len(frames)
    assert [f.index for f in frames] == list(range(len(frames)))
    for f in frames:
        assert abs(float(f.image.mean()) - level(f.index)) < 3


def test_truncated_mp4_without_its_index_is_a_clear_error(tmp_path):
    path = write_video(tmp_path / "full.mp4", n=60)  # index written at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(MekitError, match=r"cut\.mp4.*not a readable video.*truncated"):
        open_video(cut)


def test_missing_not_a_video_and_no_video_stream(tmp_path):
    with pytest.raises(MekitError, match="nothing.mp4: no such file"):
        open_video(tmp_path / "nothing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(MekitError, match="notes.mp4: not a video: FFmpeg recognises no video"):
        list(iter_frames(text))
    audio = tmp_path / "sound.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(MekitError, match="sound.m4a: the file has no video stream"):
        open_video(audio)


def test_an_empty_file_is_named_empty_not_truncated(tmp_path):
    for name in ("empty.mp4", "empty.mkv"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(MekitError, match=rf"{name}: not a video: the file is empty") as info:
            open_video(tmp_path / name)
        assert "truncated" not in str(info.value)


def test_a_truncated_mkv_is_reported_as_truncated(tmp_path):
    """Matroska declares no frame count: the duration in its header shows the cut."""
    path = write_video(tmp_path / "full.mkv", n=100)
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    reader = VideoReader(cut)
    with pytest.warns(VideoWarning, match=r"ends at .* of the 4\.00 s its header announces"):
        frames = list(reader.frames())
    assert 0 < len(frames) < 100 and not reader.complete and "truncated" in reader.stopped
    assert not reader.variable_fps  # the frames the cut took are not a variable frame rate
    whole = VideoReader(path)
    assert len(list(whole.frames())) == 100 and whole.complete
    cut.write_bytes(data[: len(data) * 3 // 10])  # cut before its first whole frame
    with pytest.raises(MekitError, match=r"cut\.mkv: no frame could be decoded.*truncated"):
        list(VideoReader(cut).frames())


def test_an_unsupported_codec_is_named(tmp_path):
    path = write_video(tmp_path / "full.mkv", n=10)
    alien = tmp_path / "alien.mkv"  # the same file with a codec id FFmpeg has no decoder for
    alien.write_bytes(path.read_bytes().replace(b"V_MPEG4/ISO/AVC", b"V_MEKIT/NO/SUCH", 1))
    for call in (open_video, lambda p: list(iter_frames(p))):
        with pytest.raises(MekitError, match=r"alien\.mkv: .*codec is not supported"):
            call(alien)


def test_folder_of_numbered_frames(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for number in (5, 6, 7, 9, 10):  # numbering as in the file names, with a gap
        cv2.imwrite(str(folder / f"img{number}.png"), np.full((H, W), level(number), np.uint8))
    (folder / "notes.txt").write_text("ignored")
    info = open_video(folder)
    assert info.is_folder and info.n_frames == 5 and (info.width, info.height) == (W, H)
    frames = list(iter_frames(folder))
    assert [i for i, _ in frames] == [5, 6, 7, 9, 10]
    assert all(int(image[0, 0]) == level(i) for i, image in frames)
    assert [i for i, _ in iter_frames(folder, start=6, stop=10)] == [6, 7, 9]
    assert all(math.isnan(f.time_s) for f in VideoReader(folder).frames())  # no rate known
    times = [f.time_s for f in VideoReader(folder, fps=10).frames()]
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.4, 0.5])


def test_folder_with_an_unreadable_frame_stops_there(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for number in range(1, 6):
        cv2.imwrite(str(folder / f"{number:03d}.png"), np.full((H, W), 100, np.uint8))
    (folder / "004.png").write_bytes(b"not a png")
    reader = VideoReader(folder)
    with pytest.warns(VideoWarning, match="004.png cannot be read"):
        frames = list(reader.frames())
    assert [f.index for f in frames] == [1, 2, 3] and not reader.complete


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(MekitError, match="no numbered image frames"):
        open_video(tmp_path)
