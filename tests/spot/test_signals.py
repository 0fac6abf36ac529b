"""Per-frame motion signals: events of a synthetic long video show up where its tables say,
blinks in the eye signals, memory holds k + 1 frames, and broken inputs give clear results."""

from __future__ import annotations

import math
import weakref
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from mekit.errors import MekitError
from mekit.spot.input.signals import (
    REGIONS,
    MotionSignals,
    compute_signals,
    default_k,
    region_masks,
)
from mekit.spot.input.video import VideoWarning
from mekit.synth import SynthConfig
from mekit.synth.long_video import write_long_video
from mekit.synth.subjects import subject_identity

FPS = 50.0
LONG = SynthConfig(
    subjects=1,
    long_video_fps=(FPS,),
    long_video_seconds=4.0,
    micro_per_video=2,
    macro_per_video=1,
    amplitude_px=(1.5, 3.0),
    duration_ms=(200.0, 400.0),
    macro_duration_ms=(500.0, 800.0),
)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """A 4 s, 50 fps synthetic long video (192 px): 2 micro, 1 macro, a blink, a head shift,
    with drift, flicker and noise; and its signals."""
    folder = tmp_path_factory.mktemp("long")
    path, intervals, distractors = write_long_video(folder, 0, LONG, progress=False)
    return path, intervals, distractors, compute_signals(path, progress=False)


def quiet_mask(signals: MotionSignals, intervals, distractors) -> np.ndarray:
    """Frames whose window t-k..t holds no event nor distractor."""
    quiet = np.ones(len(signals), bool)
    quiet[: signals.k] = False
    for r in intervals:
        quiet[r["onset"] : r["offset"] + signals.k + 1] = False
    for r in distractors:
        quiet[r["frame_start"] : r["frame_end"] + signals.k + 1] = False
    return quiet


def test_layout_of_the_signals(long_video):
    path, _, _, s = long_video
    n = round(LONG.long_video_seconds * FPS)
    assert len(s) == n and s.fps == FPS and s.k == default_k(FPS) == 10
    assert np.array_equal(s.frame, np.arange(n))
    assert s.time_s == pytest.approx(np.arange(n) / FPS)
    assert set(s.regions) == set(REGIONS)
    for values in (*s.regions.values(), s.strain, s.eye_motion, s.head, s.ear):
        assert values.shape == (n,) and values.dtype == np.float32
    assert s.face_ok.all() and (s.shot == 0).all()
    assert np.isnan(s.strain[: s.k]).all() and np.isfinite(s.strain[s.k :]).all()
    assert (~s.valid[: s.k]).all() and s.valid[s.k :].all()
    assert s.complete and not s.variable_fps and s.notes == ()
    assert s.source == str(path) and s.reference == "sliding" and s.face_size == 64


def test_expressions_peak_inside_their_intervals(long_video):
    _, intervals, distractors, s = long_video
    quiet = quiet_mask(s, intervals, distractors)
    assert quiet.sum() > 40
    for r in intervals:
        window = slice(r["onset"], r["offset"] + s.k + 1)
        # the region that moves most, against its own quiet level
        ratios = {
            name: np.nanmax(values[window]) / values[quiet].max()
            for name, values in s.regions.items()
        }
        best = max(ratios, key=ratios.get)
        assert ratios[best] > 2.5, (r, ratios)
        assert np.nanmax(s.strain[window]) > 1.4 * s.strain[quiet].max(), r
        peak = r["onset"] + int(np.nanargmax(s.regions[best][window]))
        assert r["onset"] <= peak <= r["offset"] + s.k
        aus = set(r["aus"].split("+"))
        if aus & {"12", "15", "10"}:  # lip-corner and upper-lip AUs: the mouth moves
            assert ratios["mouth"] > 2.5, (r, ratios)
        if aus & {"1", "2", "4"}:  # brow AUs: the brows move
            assert ratios["brows"] > 2.5, (r, ratios)


def test_blinks_show_in_eye_motion_and_eye_aspect_ratio(long_video):
    _, intervals, distractors, s = long_video
    quiet = quiet_mask(s, intervals, distractors)
    blinks = [r for r in distractors if r["kind"] == "blink"]
    assert blinks
    for r in blinks:
        closing = slice(r["frame_start"], r["frame_end"] + 1)
        window = slice(r["frame_start"], r["frame_end"] + s.k + 1)
        assert np.nanmax(s.eye_motion[window]) > 10 * np.abs(s.eye_motion[quiet]).max()
        assert np.nanmin(s.eye_motion[window]) < -5 * np.abs(s.eye_motion[quiet]).max()  # reopen
        assert np.nanmax(s.regions["eyes"][window]) > 10 * s.regions["eyes"][quiet].max()
        assert np.nanmin(s.ear[closing]) < np.median(s.ear[quiet]) - 0.06
        # the lids' motion does not leak into the lower face through the rigid correction:
        # what reaches the mouth is a small share of the eyes' motion (or within the quiet
        # frames' spread, when coding noise is larger than that share)
        leak = np.nanmax(s.regions["mouth"][window])
        eyes = np.nanmax(s.regions["eyes"][window])
        assert leak < max(3 * s.regions["mouth"][quiet].max(), 0.1 * eyes), (leak, eyes)


def test_head_shift_is_taken_out_as_rigid_motion(long_video):
    _, intervals, distractors, s = long_video
    quiet = quiet_mask(s, intervals, distractors)
    for r in (r for r in distractors if r["kind"] == "head_shift"):
        window = slice(r["frame_start"], r["frame_end"] + s.k + 1)
        assert np.nanmax(s.head[window]) > 5 * s.head[quiet].max()
        assert np.nanmax(s.regions["mouth"][window]) < 2.5 * s.regions["mouth"][quiet].max()


def test_save_and_load_round_trip(long_video, tmp_path):
    *_, s = long_video
    back = MotionSignals.load(s.save(tmp_path / "signals.npz"))
    assert (back.fps, back.k, back.reference, back.source) == (s.fps, s.k, s.reference, s.source)
    np.testing.assert_array_equal(back.strain, s.strain)
    np.testing.assert_array_equal(back.region_matrix(), s.region_matrix())
    assert back.face_ok.dtype == bool and back.notes == s.notes


# --- streaming, short clips and broken inputs -------------------------------------------------


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return cv2.cvtColor(subject_identity(0, SynthConfig()).neutral(), cv2.COLOR_BGR2GRAY)


def talking(face: np.ndarray, n: int) -> list[np.ndarray]:
    """n frames of `face` on a 256 x 224 canvas, the lower face sliding a little now and then."""
    frames = []
    for i in range(n):
        shift = 1.5 * math.sin(i / 3.0) if (i // 10) % 2 else 0.0
        warped = face.copy()
        lower = slice(120, 192)
        warped[lower] = cv2.warpAffine(
            face[lower], np.float32([[1, 0, shift], [0, 1, 0]]), (192, 72),
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip
        canvas = np.full((224, 256), 90, np.uint8)
        canvas[16:208, 32:224] = warped
        frames.append(canvas)
    return frames


def write_mp4(path, frames, fps=25, pts_ms=None, options=None):
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "12", "g": "10"}
        if pts_ms is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, "gray")
            if pts_ms is not None:
                frame.pts, frame.time_base = int(pts_ms[i]), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_only_k_plus_one_frames_are_held(face):
    k, frames = 4, talking(face, 40)
    alive: list[weakref.ref] = []
    most = 0

    def stream():
        nonlocal most
        for image in frames:
            copy = image.copy()  # a fresh array per frame, as a decoder gives
            alive.append(weakref.ref(copy))
            most = max(most, sum(r() is not None for r in alive))
            yield copy

    s = compute_signals(stream(), fps=25.0, k=k, progress=False)
    assert len(s) == 40 and s.valid[k:].all()
    assert most <= k + 3  # the ring buffer (k + 1), the frame in hand, the next one


def test_motion_is_measured_where_the_face_moves(face):
    s = compute_signals(talking(face, 60), fps=25.0, k=2, progress=False)
    moving = np.array([(i // 10) % 2 == 1 for i in range(60)])
    mouth = s.regions["mouth"]
    assert np.nanmedian(mouth[moving & s.valid]) > 4 * np.nanmedian(mouth[~moving & s.valid])
    # the upper face did not move
    assert np.nanmedian(s.regions["brows"][moving & s.valid]) < np.nanmedian(mouth[moving])


def test_reference_first_compares_with_the_first_frame(face):
    frames = talking(face, 8)
    s = compute_signals(frames, fps=200.0, reference="first", progress=False)
    assert s.k == 0 and s.reference == "first" and s.valid.all()
    assert s.regions["mouth"][0] < 0.05  # frame 0 against itself


def test_a_clip_shorter_than_k_is_a_clear_error(face):
    with pytest.raises(MekitError, match="reference='first'"):
        compute_signals(talking(face, 8), fps=200.0, progress=False)  # k = 40


def test_truncated_video_keeps_partial_signals(face, tmp_path):
    path = write_mp4(tmp_path / "full.mp4", talking(face, 80), options={"movflags": "+faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    with pytest.warns(VideoWarning, match="reading stopped"):
        s = compute_signals(cut, k=2, progress=False)
    assert 10 < len(s) < 80 and not s.complete
    assert any("stopped after" in note for note in s.notes)
    assert s.valid[2:].all()


def test_variable_frame_rate_times_come_from_timestamps(face, tmp_path):
    steps = [40] * 15 + [80] * 10 + [40] * 14
    pts = np.concatenate([[0], np.cumsum(steps)])
    path = write_mp4(tmp_path / "vfr.mp4", talking(face, len(pts)), pts_ms=pts)
    with pytest.warns(VideoWarning, match="variable frame rate"):
        s = compute_signals(path, k=2, progress=False)
    assert s.variable_fps and any("variable frame rate" in n for n in s.notes)
    assert s.time_s == pytest.approx(pts / 1000.0)


def test_video_without_a_face_is_an_error_naming_it(tmp_path):
    rng = np.random.default_rng(0)
    frames = [cv2.GaussianBlur(rng.integers(0, 255, (120, 160), np.uint8), (0, 0), 2)] * 20
    path = write_mp4(tmp_path / "wall.mp4", frames)
    with pytest.raises(MekitError, match=r"wall\.mp4: no face found in 20 frames"):
        compute_signals(path, progress=False)


def test_bad_arguments():
    with pytest.raises(MekitError, match="pass fps"):
        compute_signals([np.zeros((8, 8), np.uint8)])
    with pytest.raises(MekitError, match="flow method"):
        compute_signals([np.zeros((8, 8), np.uint8)], fps=30, method="magic")
    with pytest.raises(MekitError, match="at least 1"):
        compute_signals([np.zeros((8, 8), np.uint8)], fps=30, k=0)


def test_region_masks_sit_on_the_face():
    lm = np.array(subject_identity(0, SynthConfig()).landmarks, np.float64)
    masks = region_masks(lm, 192)
    for name, mask in masks.regions.items():
        assert mask.any(), name
    ys = {n: np.nonzero(m)[0].mean() for n, m in masks.regions.items()}
    assert ys["brows"] < ys["eyes"] < ys["nose"] < ys["mouth"]
    assert not (masks.regions["eyes"] & masks.face).any()  # strain leaves the eyes out
    assert not (masks.reference & masks.regions["eyes"]).any()
    assert np.allclose(masks.weights.sum(axis=1), 1.0)


def test_folder_of_frames_needs_its_rate_and_keeps_its_numbers(face, tmp_path):
    for i, image in enumerate(talking(face, 24)):
        cv2.imwrite(str(tmp_path / f"img{i + 101}.png"), image)
    with pytest.raises(MekitError, match="has no frame rate; pass fps"):
        compute_signals(tmp_path, progress=False)
    s = compute_signals(tmp_path, fps=25.0, k=2, progress=False)
    assert np.array_equal(s.frame, np.arange(101, 125))
    assert s.time_s == pytest.approx(np.arange(24) / 25.0)
    assert s.valid[2:].all() and s.complete
