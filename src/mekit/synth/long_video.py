"""Long videos for spotting: micro and macro expressions among blinks and head movements.

Each video shows one subject's identity for `long_video_seconds` at one of `long_video_fps`,
holding `micro_per_video` micro-expressions (amplitude `amplitude_px`, duration `duration_ms`)
and `macro_per_video` macro-expressions (`macro_amplitude_px`, `macro_duration_ms`), each
returning to neutral at its offset, placed without overlap among distractors (blinks, quick head
shifts) on top of slow head drift, flicker and noise. Frames are streamed into an H.264 (yuv420p)
MP4 through PyAV. Frame indices in the CSVs are 0-based positions in the video.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mekit.errors import MekitError
from mekit.synth.aus import blink_field, expression_field, format_aus, sample_aus
from mekit.synth.config import SynthConfig
from mekit.synth.outputs import write_csv
from mekit.synth.render import FrameRenderer
from mekit.synth.subjects import LONG_VIDEO, stream, subject_id, subject_identity
from mekit.synth.timeline import (
    blink_profile,
    expression_profile,
    head_shift,
    head_track,
    smooth_track,
)

log = logging.getLogger(__name__)

INTERVAL_COLUMNS = ("video", "subject", "fps", "onset", "apex", "offset", "type", "emotion", "aus")
DISTRACTOR_COLUMNS = ("video", "frame_start", "frame_end", "kind")
# Reproducible and clean: this libx264's macroblock-tree rate control (mbtree, with its SIMD
# code) gives different bytes for the same frames from run to run, and the same seed must give
# the same file; without mbtree, a low crf and no psy/adaptive quantisation keep the coding
# noise of a still face well below the 1-3 px motions the videos are about.
H264_OPTIONS = {"crf": "8", "preset": "fast", "x264-params": "mbtree=0:psy=0:aq-mode=0"}
MIN_GAP_S = 0.3


@dataclass(frozen=True)
class VideoEvent:
    """Something that happens in a long video over frames start..start+length (0-based).

    kind: micro | macro | blink | head_shift.
    """

    kind: str
    start: int
    length: int
    emotion: str = ""
    aus: tuple[int, ...] = ()
    amplitude: float = 0.0
    apex: int = 0  # offset from start
    vector: tuple[float, float] = (0.0, 0.0)  # head_shift translation, px
    closure: float = 0.0  # blink strength


def _frames(ms: float, fps: float) -> int:
    return int(round(ms * fps / 1000.0))


def plan_video(config: SynthConfig, fps: float, rng: np.random.Generator) -> list[VideoEvent]:
    """Events of one video, in time order, apart by `MIN_GAP_S` where the video has room."""
    n = int(round(config.long_video_seconds * fps))
    drafts: list[dict] = []
    offset = int(rng.integers(len(config.emotions)))
    kinds = ["micro"] * config.micro_per_video + ["macro"] * config.macro_per_video
    for k, kind in enumerate(kinds):
        ms, amp = (
            (config.duration_ms, config.amplitude_px)
            if kind == "micro"
            else (config.macro_duration_ms, config.macro_amplitude_px)
        )
        emotion = config.emotions[(offset + k) % len(config.emotions)]
        length = max(2, _frames(rng.uniform(*ms), fps))
        apex = int(np.clip(round(rng.uniform(*config.apex_fraction) * length), 1, length - 1))
        drafts.append(
            dict(
                kind=kind,
                length=length,
                emotion=emotion,
                aus=sample_aus(emotion, rng),
                amplitude=float(rng.uniform(*amp)),
                apex=apex,
            )
        )
    if config.nuisances:
        for _ in range(max(1, round(config.long_video_seconds / 3)) if config.blink_prob else 0):
            length = max(3, _frames(rng.uniform(*config.blink_ms), fps))
            drafts.append(dict(kind="blink", length=length, closure=float(rng.uniform(0.7, 1))))
        for _ in range(max(1, round(config.long_video_seconds / 8)) if config.drift_px else 0):
            length = max(2, _frames(rng.uniform(150, 400), fps))
            angle, size = rng.uniform(0, 2 * np.pi), rng.uniform(2.0, 4.0)
            vector = (float(size * np.cos(angle)), float(size * np.sin(angle)))
            drafts.append(dict(kind="head_shift", length=length, vector=vector))
    busy = sum(d["length"] + 1 for d in drafts)
    # Gaps of MIN_GAP_S where there is room, shorter (down to one frame) where there is not.
    gap = min(max(1, int(round(MIN_GAP_S * fps))), (n - busy) // (len(drafts) + 1))
    free = n - busy - (len(drafts) + 1) * gap
    if gap < 1 or free < 0:
        raise MekitError(
            f"synth.long_video_seconds={config.long_video_seconds} is too short for "
            f"{len(drafts)} events at {fps:g} fps; raise it or lower micro_per_video / "
            "macro_per_video"
        )
    order = rng.permutation(len(drafts))
    spare = np.floor(rng.dirichlet(np.ones(len(drafts) + 1)) * free).astype(int)
    events, cursor = [], 0
    for slot, k in enumerate(order):
        cursor += gap + int(spare[slot])
        events.append(VideoEvent(start=cursor, **drafts[int(k)]))
        cursor += drafts[int(k)]["length"] + 1
    return events


def check_long_videos(config: SynthConfig) -> None:
    """Raise `MekitError` if some video cannot hold its events (planning is cheap)."""
    for v, fps in enumerate(config.long_video_fps):
        plan_video(config, fps, stream(config.seed, LONG_VIDEO, v))


def write_long_video(
    folder: Path, index: int, config: SynthConfig, progress: bool = True
) -> tuple[Path, list[dict], list[dict]]:
    """Write video `index` (fps `config.long_video_fps[index]`) into `folder`.

    Returns its path, its intervals rows and its distractor rows.
    """
    import av

    fps = config.long_video_fps[index]
    subject = index % config.subjects
    name = f"lv{index + 1:02d}_sub{subject_id(subject)}_{fps:g}fps".replace(".", "p")
    rng = stream(config.seed, LONG_VIDEO, index)
    events = plan_video(config, fps, rng)
    path = folder / f"{name}.mp4"
    n = int(round(config.long_video_seconds * fps))
    frames = _video_frames(subject, config, fps, n, events, rng)
    bar = tqdm(frames, total=n, desc=name, unit="frame", disable=not progress, leave=False)
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        video.width = video.height = config.frame_size
        video.pix_fmt = "yuv420p"
        video.options = dict(H264_OPTIONS)
        video.codec_context.thread_count = 1  # threaded x264 is not byte-reproducible
        for image in bar:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(video.encode())
    intervals, distractors = [], []
    for e in events:
        if e.kind in ("micro", "macro"):
            intervals.append(
                {
                    "video": name,
                    "subject": subject_id(subject),
                    "fps": f"{fps:g}",
                    "onset": e.start,
                    "apex": e.start + e.apex,
                    "offset": e.start + e.length,
                    "type": e.kind,
                    "emotion": e.emotion,
                    "aus": format_aus(e.aus),
                }
            )
        else:
            last = e.start + e.length - (1 if e.kind == "blink" else 0)
            distractors.append(
                {"video": name, "frame_start": e.start + 1, "frame_end": last, "kind": e.kind}
            )
    log.info("long video %s: %d frames, %d events", path, n, len(events))
    return path, intervals, distractors


def write_long_video_tables(
    folder: Path, results: list[tuple[Path, list[dict], list[dict]]]
) -> tuple[Path, ...]:
    """intervals.csv and distractors.csv of the videos' results, in video order."""
    write_csv(folder / "intervals.csv", INTERVAL_COLUMNS, [r for _, i, _ in results for r in i])
    write_csv(folder / "distractors.csv", DISTRACTOR_COLUMNS, [r for _, _, d in results for r in d])
    return tuple(path for path, _, _ in results)


def write_long_videos(folder: Path, config: SynthConfig, progress: bool = True) -> tuple[Path, ...]:
    """Write every video of `config.long_video_fps` and the two tables; return video paths."""
    folder.mkdir(parents=True, exist_ok=True)
    results = [
        write_long_video(folder, v, config, progress) for v in range(len(config.long_video_fps))
    ]
    return write_long_video_tables(folder, results)


def _video_frames(
    subject: int,
    config: SynthConfig,
    fps: float,
    n: int,
    events: list[VideoEvent],
    rng: np.random.Generator,
):
    """Yield the video's n frames (S, S, 3) uint8 BGR one at a time."""
    identity = subject_identity(subject, config)
    renderer = FrameRenderer(identity)
    shape = identity.face.shape[:2]
    lm = identity.landmarks
    active = np.full(n, -1)
    share = np.zeros(n)
    lids = np.zeros(n)
    fields: dict[int, np.ndarray] = {}
    pose = np.zeros((n, 3))
    if config.nuisances:
        smooth = fps  # changes over about a second
        pose = head_track(rng, n, config.long_drift_px, config.rotation_deg, smooth)
        pose[:, 2] = smooth_track(rng, n, config.rotation_deg, smooth)
    blink = blink_field(lm, shape)
    for k, e in enumerate(events):
        end = min(n, e.start + e.length + 1)
        if e.kind in ("micro", "macro"):
            fields[k] = expression_field(
                dict(zip(e.aus, rng.uniform(0.6, 1.0, len(e.aus)), strict=True)),
                lm,
                shape,
                e.amplitude,
            )
            profile = expression_profile(e.length + 1, 0, e.apex, e.length, 0.0)
            active[e.start : end] = k
            share[e.start : end] = profile[: end - e.start]
        elif e.kind == "blink":
            lids += blink_profile(n, e.start, e.length, e.closure)
        elif e.kind == "head_shift":
            pose[:, :2] += head_shift(n, e.start, e.length, e.vector)
    noise = float(rng.uniform(*config.noise_sigma)) if config.nuisances else 0.0
    flicker = config.flicker * float(rng.uniform(0.5, 1.0)) if config.nuisances else 0.0
    for i in range(n):
        field = None
        if active[i] >= 0 and share[i] > 0:
            field = fields[int(active[i])] * np.float32(share[i])
        if lids[i] > 0:
            lid = blink * np.float32(lids[i])
            field = lid if field is None else field + lid
        gain = 1.0 + flicker * float(rng.uniform(-1, 1)) if flicker else 1.0
        yield renderer.render(field, tuple(pose[i]), gain, noise, rng)
