"""The unsupervised interval spotter, the blink and head-motion vetoes, and apex spotting.

Most tests build `MotionSignals` by hand: each region's value at frame t is |D(t) - D(t - k)|
(the motion from frame t - k to t, as `compute_signals` measures it) of a known displacement
D(t), over a noisy floor like that of real flow magnitudes. Two slower tests run the whole
chain on synthetic videos and clips.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pandas as pd
import pytest

from mekit.errors import MekitError
from mekit.spot.input.signals import REGIONS, MotionSignals
from mekit.spot.metrics import Interval, iou, match_intervals
from mekit.spot.spotters import (
    ApexConfig,
    SpotConfig,
    apex_in_clip,
    spot_apex,
    spot_details,
    spot_intervals,
    threshold,
)
from mekit.synth.timeline import blink_profile, expression_profile, head_shift

FPS = 100.0
K = 20  # 0.2 s, as compute_signals' default


@dataclasses.dataclass
class Event:
    onset: int
    apex: int
    offset: int
    px: dict[str, float]  # apex displacement per region, px


def build(
    n: int = 1500,
    events: tuple[Event, ...] = (),
    blinks: tuple[tuple[int, int], ...] = (),
    shifts: tuple[tuple[int, int, float], ...] = (),
    fps: float = FPS,
    k: int = K,
    seed: int = 0,
    first_frame: int = 0,
    reference: str = "sliding",
) -> MotionSignals:
    """Signals of a video with these expressions, blinks (start, length) and head shifts
    (start, length, px). A blink moves the eyes by 2 px and leaks 8 % of that into the other
    regions (flow smoothing); a head shift leaks 5 %."""
    rng = np.random.default_rng(seed)
    disp = {r: np.zeros(n) for r in REGIONS}
    for e in events:
        profile = expression_profile(n, e.onset, e.apex, e.offset)
        for region, px in e.px.items():
            disp[region] += px * profile
    lids = np.zeros(n)
    for start, length in blinks:
        lids += blink_profile(n, start, length)
    disp["eyes"] += 2.0 * lids
    for region in ("brows", "mouth", "cheeks", "nose"):
        disp[region] += 0.16 * lids
    head = np.zeros(n)
    for start, length, px in shifts:
        head += head_shift(n, start, length, (px, 0.0))[:, 0]

    def lagged(x: np.ndarray) -> np.ndarray:
        if reference == "first":
            return np.abs(x - x[0])
        out = np.full(n, np.nan)
        out[k:] = np.abs(x[k:] - x[:-k])
        return out

    def floor() -> np.ndarray:  # a region's mean flow magnitude over still frames
        return 0.03 + rng.normal(0.0, 0.004, n)

    head_motion = lagged(head)
    regions = {r: (lagged(d) + floor()).astype(np.float32) for r, d in disp.items()}
    for r in regions:
        regions[r] += np.nan_to_num(0.05 * head_motion).astype(np.float32)
    valid = np.isfinite(regions["brows"])
    ear = (0.3 * (1 - 0.8 * np.clip(lids, 0, 1)) + rng.normal(0, 0.003, n)).astype(np.float32)
    return MotionSignals(
        frame=np.arange(first_frame, first_frame + n, dtype=np.int64),
        time_s=np.arange(n) / fps,
        fps=fps,
        k=0 if reference == "first" else k,
        regions=regions,
        strain=np.where(valid, 0.01, np.nan).astype(np.float32),
        eye_motion=np.zeros(n, np.float32),
        head=(head_motion + floor()).astype(np.float32),
        ear=ear,
        face_ok=np.ones(n, dtype=bool),
        shot=np.zeros(n, dtype=np.int32),
        reference=reference,
    )


MICRO = Event(300, 312, 330, {"mouth": 1.0, "cheeks": 0.6})  # 300 ms
MACRO = Event(800, 900, 1000, {"brows": 1.5, "eyes": 0.8})  # 2 s
BLINK = (550, 20)  # frames 551..569


def found(intervals: list[Interval], truth: Event) -> list[Interval]:
    return [p for p in intervals if iou(p, (truth.onset, truth.offset)) >= 0.5]


def overlaps(p: Interval, start: int, end: int) -> bool:
    return p.onset <= end and start <= p.offset


# -- interval spotting ----------------------------------------------------------------------


def test_two_expressions_and_a_blink_give_the_two_intervals():
    signals = build(events=(MICRO, MACRO), blinks=(BLINK,))
    result = spot_details(signals)
    intervals = list(result.intervals)
    assert len(intervals) == 2
    (micro,) = found(intervals, MICRO)
    (macro,) = found(intervals, MACRO)
    assert micro.kind == "micro" and macro.kind == "macro"
    assert abs(micro.apex - MICRO.apex) <= 6 and abs(macro.apex - MACRO.apex) <= 15
    assert not any(overlaps(p, BLINK[0], BLINK[0] + BLINK[1]) for p in intervals)
    # the blink is not dropped silently: it is listed with its reason
    assert [v.reason for v in result.vetoed] == ["blink"]
    assert overlaps(result.vetoed[0].interval, BLINK[0], BLINK[0] + BLINK[1])
    assert result.blink[BLINK[0] + 5 : BLINK[0] + 15].all()
    assert spot_intervals(signals) == intervals


def test_a_blink_only_video_gives_nothing():
    signals = build(blinks=((200, 15), (700, 25), (1200, 20)))
    result = spot_details(signals)
    assert result.intervals == ()
    assert [v.reason for v in result.vetoed] == ["blink"] * 3


def test_a_blink_is_vetoed_even_without_an_ear_signal():
    signals = dataclasses.replace(build(blinks=((700, 25),)), ear=None)
    result = spot_details(signals)
    assert result.intervals == ()
    assert [v.reason for v in result.vetoed] == ["blink"]


def test_noise_alone_gives_nothing():
    for seed in range(5):
        assert spot_intervals(build(seed=seed)) == []


def test_micro_and_macro_by_duration():
    events = (
        Event(200, 205, 212, {"mouth": 1.0}),  # 120 ms
        Event(500, 515, 535, {"brows": 1.0}),  # 350 ms
        Event(900, 950, 1010, {"cheeks": 1.5}),  # 1.1 s
    )
    intervals = spot_intervals(build(events=events))
    assert len(intervals) == 3
    assert [p.kind for p in sorted(intervals, key=lambda p: p.onset)] == ["micro", "micro", "macro"]
    for e in events:
        assert len(found(intervals, e)) == 1
    for p in intervals:
        ms = (p.offset - p.onset) / FPS * 1000
        assert (ms <= 500) == (p.kind == "micro")


def test_a_small_expression_next_to_a_large_one_is_still_found():
    small = Event(300, 308, 320, {"mouth": 0.25})  # 8x smaller than the macro
    intervals = spot_intervals(build(events=(small, MACRO)))
    assert len(found(intervals, small)) == 1 and len(found(intervals, MACRO)) == 1


def test_a_head_movement_is_vetoed():
    signals = build(events=(MICRO,), shifts=((700, 30, 3.0),))
    result = spot_details(signals)
    assert len(result.intervals) == 1 and found(list(result.intervals), MICRO)
    assert [v.reason for v in result.vetoed] == ["head motion"]


def test_an_untracked_face_suppresses_its_frames_and_says_so():
    signals = build(events=(MICRO, MACRO))
    lost = np.zeros(len(signals), dtype=bool)
    lost[780:1100] = True  # the face left the frame during the macro-expression
    for r in signals.regions.values():
        r[lost] = np.nan
    signals = dataclasses.replace(signals, face_ok=~lost)
    result = spot_details(signals)
    assert len(result.intervals) == 1 and found(list(result.intervals), MICRO)
    assert any("no tracked face" in w for w in result.warnings)
    assert not result.usable[lost].any()


def test_no_face_at_all_is_a_warning_not_a_silent_empty_result():
    signals = build(events=(MICRO,))
    signals = dataclasses.replace(signals, face_ok=np.zeros(len(signals), dtype=bool))
    result = spot_details(signals)
    assert result.intervals == ()
    assert result.warnings and "no frame" in result.warnings[0]


def test_the_notes_of_a_partial_read_come_through_with_what_was_found():
    note = "stopped after 1500 frames: corrupt packet"
    signals = dataclasses.replace(build(events=(MICRO,)), complete=False, notes=(note,))
    result = spot_details(signals)
    assert found(list(result.intervals), MICRO)
    assert note in result.warnings


def test_frame_numbers_and_scores():
    signals = build(events=(MICRO, MACRO), first_frame=1000)
    intervals = spot_intervals(signals)
    shifted = Event(MICRO.onset + 1000, MICRO.apex + 1000, MICRO.offset + 1000, {})
    assert len(found(intervals, shifted)) == 1
    for p in intervals:
        assert 0.5 < p.score < 1.0
        assert p.onset <= p.apex <= p.offset


def test_a_short_expression_at_30_fps():
    # 3 frames at 30 fps, k = 6: the rise and its copy k frames later merge into one
    event = Event(100, 101, 103, {"mouth": 1.5})
    intervals = spot_intervals(build(n=400, events=(event,), fps=30.0, k=6))
    assert len(intervals) == 1
    assert iou(intervals[0], (event.onset, event.offset)) >= 0.5
    assert intervals[0].kind == "micro"


def test_matches_the_truth_on_a_busier_hand_built_video():
    rng = np.random.default_rng(3)
    events, t = [], 100
    for j in range(8):
        length = int(rng.integers(15, 45)) if j % 3 else int(rng.integers(80, 150))
        region = ("mouth", "brows", "cheeks")[j % 3]
        events.append(Event(t, t + length // 3, t + length, {region: float(rng.uniform(0.4, 2))}))
        t += length + int(rng.integers(40, 80))
    signals = build(n=t + 100, events=tuple(events), blinks=((events[2].offset + 15, 20),))
    truth = [Interval(e.onset, e.offset) for e in events]
    pred = [dataclasses.replace(p, kind="micro") for p in spot_intervals(signals)]
    m = match_intervals(pred, truth)
    assert m.tp >= 7 and m.fp <= 1


def test_threshold_is_softnet_rule_with_a_cap_and_a_floor():
    z = np.array([0.0, 0.0, 2.0, 6.0])
    config = SpotConfig(p=0.5, z_cap=100.0, min_z=0.1)
    assert threshold(z, config) == pytest.approx(2.0 + 0.5 * (6.0 - 2.0))
    capped = threshold(np.array([0.0, 0.0, 0.0, 1000.0]), SpotConfig(p=0.5, z_cap=8, min_z=0.1))
    assert capped == pytest.approx(2.0 + 0.5 * (8.0 - 2.0))
    assert threshold(np.zeros(10), SpotConfig(min_z=4.0)) == 4.0


@pytest.mark.parametrize(
    "change",
    [
        {"p": 1.5},
        {"combine": "sum"},
        {"low_fraction": 0.0},
        {"region_weights": (("eyes", 1.0),)},
        {"micro_max_ms": 5000.0},
        {"blink_dominance": 1.0},
        {"extend": -1.0},
    ],
)
def test_bad_settings_are_named(change):
    with pytest.raises(MekitError, match=f"spot.{next(iter(change))}"):
        spot_intervals(build(n=200), SpotConfig(**change))


def test_bad_signals_are_refused_clearly():
    signals = build(n=200)
    with pytest.raises(MekitError, match="reference"):
        spot_intervals(build(n=200, reference="first"))
    short = dict(signals.regions, mouth=signals.regions["mouth"][:-1])
    with pytest.raises(MekitError, match="mouth"):
        spot_intervals(dataclasses.replace(signals, regions=short))
    with pytest.raises(MekitError, match="fps"):
        spot_intervals(dataclasses.replace(signals, fps=0.0))
    with pytest.raises(MekitError, match="regions"):
        spot_intervals(dataclasses.replace(signals, regions={"nose": signals.regions["nose"]}))


def test_mean_combination_also_finds_the_events():
    signals = build(events=(MICRO, MACRO), blinks=(BLINK,))
    intervals = spot_intervals(signals, SpotConfig(combine="mean"))
    assert len(found(intervals, MICRO)) == 1 and len(found(intervals, MACRO)) == 1


# -- apex -----------------------------------------------------------------------------------


def test_spot_apex_from_sliding_signals():
    signals = build(events=(MICRO, MACRO), blinks=(BLINK,))
    assert abs(spot_apex(signals, MICRO.onset, MICRO.offset) - MICRO.apex) <= 4
    assert abs(spot_apex(signals, MACRO.onset, MACRO.offset) - MACRO.apex) <= 10
    with pytest.raises(MekitError, match="before onset"):
        spot_apex(signals, 20, 10)
    with pytest.raises(MekitError, match="outside"):
        spot_apex(signals, 5000, 5100)


def test_spot_apex_from_signals_against_the_first_frame():
    event = Event(20, 45, 90, {"mouth": 1.0, "brows": 0.5})
    signals = build(n=110, events=(event,), blinks=((60, 20),), reference="first")
    assert abs(spot_apex(signals) - event.apex) <= 2
    assert abs(spot_apex(signals, 30, 100) - event.apex) <= 2


def test_apex_in_clip_refuses_bad_frames():
    with pytest.raises(MekitError, match="frames"):
        apex_in_clip(np.zeros((4, 8), np.uint8))
    with pytest.raises(MekitError, match="uint8"):
        apex_in_clip(np.zeros((4, 8, 8), np.float32))
    with pytest.raises(MekitError, match="landmarks"):
        apex_in_clip(np.zeros((4, 32, 32), np.uint8), np.zeros((5, 2)))
    with pytest.raises(MekitError, match="rigid"):
        apex_in_clip(np.zeros((4, 32, 32), np.uint8), config=ApexConfig(rigid="x"))
    index, curve = apex_in_clip(np.zeros((1, 32, 32), np.uint8))
    assert index == 0 and curve.shape == (1,)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from mekit.synth import SynthConfig, generate_corpus

    config = SynthConfig(
        subjects=1,
        clips_per_subject=4,
        seed=5,
        amplitude_px=(1.0, 3.0),
        duration_ms=(100.0, 400.0),
        blink_prob=1.0,
        long_videos=False,
    )
    return generate_corpus(tmp_path_factory.mktemp("clips") / "out", config, progress=False)


def test_apex_in_clip_finds_the_synthetic_apex_within_3_frames(clips):
    from mekit.faces import FaceConfig, FaceLandmarker, align_frames

    truth = pd.read_csv(clips.ground_truth, dtype={"subject": str})
    assert truth.blink_frames.notna().all()  # every clip has a blink to ignore
    landmarker = FaceLandmarker()
    for row in truth.itertuples():
        folder = clips.out / f"sub{row.subject}" / row.clip
        numbers = range(row.onset, row.offset + 1)
        frames = [cv2.imread(str(folder / f"img{n}.jpg")) for n in numbers]
        aligned = align_frames(frames, landmarker, FaceConfig())
        assert aligned is not None
        index, curve = apex_in_clip(np.stack(aligned.frames), aligned.landmarks)
        assert abs(row.onset + index - row.apex) <= 3, (row.clip, index, row.apex - row.onset)
        assert curve.shape == (len(frames),) and curve[0] == 0


# -- end to end -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_synthetic_long_video_gives_its_events(tmp_path):
    from mekit.spot.input.signals import compute_signals
    from mekit.synth import SynthConfig
    from mekit.synth.long_video import write_long_video

    config = SynthConfig(
        subjects=1,
        clips_per_subject=1,
        seed=0,
        long_video_fps=(30.0,),
        long_video_seconds=8.0,
        micro_per_video=3,
        macro_per_video=1,
        amplitude_px=(1.5, 3.0),
        blink_prob=1.0,
    )
    path, rows, distractors = write_long_video(tmp_path, 0, config, progress=False)
    assert any(d["kind"] == "blink" for d in distractors)
    result = spot_details(compute_signals(path, progress=False))
    truth = [Interval(r["onset"], r["offset"], r["type"], r["apex"]) for r in rows]
    by_kind = {
        kind: match_intervals(
            [p for p in result.intervals if p.kind == kind], [t for t in truth if t.kind == kind]
        )
        for kind in ("micro", "macro")
    }
    assert sum(m.tp for m in by_kind.values()) >= 3
    assert sum(m.fp for m in by_kind.values()) <= 1
    blinks = [(d["frame_start"], d["frame_end"]) for d in distractors if d["kind"] == "blink"]
    assert not any(overlaps(p, a, b) for p in result.intervals for a, b in blinks)
    assert any(v.reason == "blink" for v in result.vetoed)
