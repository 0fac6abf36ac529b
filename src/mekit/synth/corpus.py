"""The synthetic CASME II-shaped corpus: clip schedule, frames on disk, sheet, ground truth.

Layout under OUT:
  subNN/EPxx_yy/img{n}.jpg       frames; n runs on from a random first number, and each folder
                                 holds a few lead-in frames before onset and lead-out after offset
  CASME2-coding-synthetic.xlsx   the coding sheet (real frame numbers of the folder)
  ground_truth.csv               one row per clip: AUs, amplitude, timing, base face, blinks
  synth.json                     resolved config and mekit version
  long_videos/                   spotting videos (see `mekit.synth.long_video`)

Every clip draws from its own random stream (`mekit.synth.subjects.stream`), so the bytes do not
depend on the order or the number of threads that render them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mekit.errors import MekitError
from mekit.synth.aus import blink_field, expression_field, format_aus, sample_aus
from mekit.synth.config import SynthConfig
from mekit.synth.long_video import check_long_videos, write_long_video, write_long_video_tables
from mekit.synth.outputs import write_csv, write_json, write_sheet
from mekit.synth.render import FrameRenderer, encode_jpeg
from mekit.synth.subjects import CLIP, SCHEDULE, stream, subject_id, subject_identity
from mekit.synth.timeline import blink_profile, expression_profile, head_track

log = logging.getLogger(__name__)

SHEET_NAME = "CASME2-coding-synthetic.xlsx"
GROUND_TRUTH_COLUMNS = (
    "subject",
    "clip",
    "emotion",
    "aus",
    "onset",
    "apex",
    "offset",
    "apex_displacement_px",
    "duration_ms",
    "base_face",
    "mirrored",
    "blink_frames",
    "first_frame",
    "last_frame",
)


@dataclass(frozen=True)
class SynthSummary:
    """What `generate_corpus` wrote; `seconds` is the wall time it took."""

    out: Path
    sheet: Path
    n_clips: int
    n_frames: int
    long_videos: tuple[Path, ...]
    seconds: float
    ground_truth: Path | None = None


@dataclass(frozen=True)
class ClipPlan:
    """One clip's draws. onset/apex/offset/blink_start index frames 0..n_frames-1."""

    subject: int
    index: int
    name: str
    emotion: str
    aus: tuple[int, ...]
    intensities: tuple[float, ...]
    amplitude: float
    first_frame: int
    n_frames: int
    onset: int
    apex: int
    offset: int
    residual: float
    blink_start: int | None
    blink_length: int
    blink_closure: float
    jpeg_quality: int
    noise_sigma: float
    flicker: float


def _frames(ms: float, fps: float) -> int:
    return int(round(ms * fps / 1000.0))


def subject_schedule(subject: int, config: SynthConfig) -> list[tuple[str, str]]:
    """(clip name, emotion) per clip: emotions round-robin over the clips, then shuffled."""
    rng = stream(config.seed, SCHEDULE, subject)
    n = config.clips_per_subject
    emotions = [config.emotions[j % len(config.emotions)] for j in range(n)]
    order = rng.permutation(n)
    takes = rng.integers(1, 6, size=n)
    return [(f"EP{j + 1:02d}_{int(takes[j]):02d}", emotions[int(order[j])]) for j in range(n)]


def plan_clip(
    subject: int, index: int, name: str, emotion: str, config: SynthConfig, rng: np.random.Generator
) -> ClipPlan:
    """Draw a clip's AUs, amplitude, timing and nuisance levels from `rng`."""
    aus = sample_aus(emotion, rng)
    intensities = tuple(float(v) for v in rng.uniform(0.6, 1.0, size=len(aus)))
    amplitude = float(rng.uniform(*config.amplitude_px))
    span = max(2, _frames(rng.uniform(*config.duration_ms), config.fps))
    rise = int(np.clip(round(rng.uniform(*config.apex_fraction) * span), 1, span))
    lead_in = max(1, _frames(rng.uniform(*config.lead_ms), config.fps))
    lead_out = max(1, _frames(rng.uniform(*config.lead_ms), config.fps))
    residual = float(rng.uniform(*config.residual))
    first_frame = int(rng.integers(1, 301))
    onset = lead_in
    apex, offset = onset + rise, onset + span
    n_frames = offset + lead_out + 1

    nuisances = config.nuisances
    blink_start, blink_length, closure = None, 0, 0.0
    if nuisances and config.blink_prob > 0 and rng.random() < config.blink_prob:
        blink_length = max(3, _frames(rng.uniform(*config.blink_ms), config.fps))
        # Blink frames are start+1 .. start+length-1: all before onset, or all after apex.
        starts = [*range(0, onset - blink_length + 1), *range(apex, n_frames - 1)]
        blink_start = int(starts[int(rng.integers(len(starts)))])
        closure = float(rng.uniform(0.7, 1.0))
    return ClipPlan(
        subject=subject,
        index=index,
        name=name,
        emotion=emotion,
        aus=tuple(aus),
        intensities=intensities,
        amplitude=amplitude,
        first_frame=first_frame,
        n_frames=n_frames,
        onset=onset,
        apex=apex,
        offset=offset,
        residual=residual,
        blink_start=blink_start,
        blink_length=blink_length,
        blink_closure=closure,
        jpeg_quality=int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        if nuisances
        else 100,
        noise_sigma=float(rng.uniform(*config.noise_sigma)) if nuisances else 0.0,
        flicker=config.flicker * float(rng.uniform(0.5, 1.0)) if nuisances else 0.0,
    )


def render_clip(
    plan: ClipPlan,
    renderer: FrameRenderer,
    blink: np.ndarray,
    config: SynthConfig,
    rng: np.random.Generator,
    folder: Path,
) -> list[int]:
    """Write the clip's frames to `folder`; return the frame numbers where a blink shows."""
    n = plan.n_frames
    shape = renderer.identity.face.shape[:2]
    weights = dict(zip(plan.aus, plan.intensities, strict=True))
    apex_field = expression_field(weights, renderer.identity.landmarks, shape, plan.amplitude)
    share = expression_profile(n, plan.onset, plan.apex, plan.offset, plan.residual)
    lids = np.zeros(n)
    if plan.blink_start is not None:
        lids = blink_profile(n, plan.blink_start, plan.blink_length, plan.blink_closure)
    if config.nuisances:
        pose = head_track(rng, n, config.drift_px, config.rotation_deg, smooth=max(2.0, n / 2))
        gains = 1 + plan.flicker * rng.uniform(-1, 1, size=n)
    else:
        pose, gains = np.zeros((n, 3)), np.ones(n)
    folder.mkdir(parents=True, exist_ok=False)
    for i in range(n):
        field = None
        if share[i] > 0:
            field = apex_field * np.float32(share[i])
        if lids[i] > 0:
            lid = blink * np.float32(lids[i])
            field = lid if field is None else field + lid
        frame = renderer.render(field, tuple(pose[i]), float(gains[i]), plan.noise_sigma, rng)
        (folder / f"img{plan.first_frame + i}.jpg").write_bytes(
            encode_jpeg(frame, plan.jpeg_quality)
        )
    return [plan.first_frame + i for i in np.flatnonzero(lids > 0)]


def true_apex_field(config: SynthConfig, subject: int, clip: int) -> np.ndarray:
    """The expression displacement (H, W, 2) px, onset -> apex, of clip `clip` (0-based) of
    subject `subject` (0-based), as rendered before head motion: the true flow in clean mode."""
    name, emotion = subject_schedule(subject, config)[clip]
    plan = plan_clip(subject, clip, name, emotion, config, stream(config.seed, CLIP, subject, clip))
    identity = subject_identity(subject, config)
    weights = dict(zip(plan.aus, plan.intensities, strict=True))
    return expression_field(weights, identity.landmarks, identity.face.shape[:2], plan.amplitude)


def _write_subject(
    s: int, config: SynthConfig, out: Path, bar: tqdm
) -> tuple[list[list[object]], list[dict[str, object]], int]:
    """Render subject `s`'s clips; return its sheet rows, ground-truth rows and frame count."""
    identity = subject_identity(s, config)
    renderer = FrameRenderer(identity)
    blink = blink_field(identity.landmarks, identity.face.shape[:2])
    sheet_rows: list[list[object]] = []
    truth: list[dict[str, object]] = []
    n_frames = 0
    for j, (name, emotion) in enumerate(subject_schedule(s, config)):
        rng = stream(config.seed, CLIP, s, j)
        plan = plan_clip(s, j, name, emotion, config, rng)
        blinks = render_clip(plan, renderer, blink, config, rng, out / f"sub{subject_id(s)}" / name)
        n_frames += plan.n_frames
        f0 = plan.first_frame
        onset, apex, offset = f0 + plan.onset, f0 + plan.apex, f0 + plan.offset
        aus = format_aus(plan.aus)
        sheet_rows.append([subject_id(s), name, None, onset, apex, offset, None, aus, emotion])
        truth.append(
            {
                "subject": subject_id(s),
                "clip": name,
                "emotion": emotion,
                "aus": aus,
                "onset": onset,
                "apex": apex,
                "offset": offset,
                "apex_displacement_px": f"{plan.amplitude:.4f}",
                "duration_ms": f"{(plan.offset - plan.onset) * 1000 / config.fps:.1f}",
                "base_face": identity.base_face,
                "mirrored": int(identity.mirrored),
                "blink_frames": ";".join(map(str, blinks)),
                "first_frame": f0,
                "last_frame": f0 + plan.n_frames - 1,
            }
        )
        bar.update(1)
    return sheet_rows, truth, n_frames


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise MekitError(f"output path {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise MekitError(
                f"output folder {out} exists and is not empty; choose a new folder or pass "
                "overwrite=True"
            )
        if not (out / "synth.json").exists():
            raise MekitError(
                f"refusing to overwrite {out}: it holds no synth.json, so it does not look like "
                "a synthetic corpus; choose a new folder"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _version() -> str:
    try:
        return version("mekit")
    except PackageNotFoundError:
        return "0+unknown"


def generate_corpus(
    out: Path,
    config: SynthConfig = SynthConfig(),  # noqa: B008  (frozen, so a shared default is safe)
    progress: bool = True,
    *,
    overwrite: bool = False,
    workers: int | None = None,
) -> SynthSummary:
    """Write the synthetic corpus described by `config` under `out`.

    Raises `MekitError` for a bad config, or when `out` is non-empty (unless `overwrite`, which
    only replaces a folder holding a previous synthetic corpus). `workers`: threads rendering
    subjects in parallel (default min(2, CPUs)); the output does not depend on it.
    """
    start = time.perf_counter()
    if config.long_videos:
        check_long_videos(config)  # fail before writing anything
    out = Path(out)
    _prepare(out, overwrite)
    total = config.subjects * config.clips_per_subject
    workers = max(1, workers or min(2, os.cpu_count() or 1))
    n_videos = len(config.long_video_fps) if config.long_videos else 0
    if n_videos:
        (out / "long_videos").mkdir()
    with (
        tqdm(total=total, desc="synth clips", unit="clip", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        # Threads: cv2 and numpy release the GIL; each subject and video has its own random
        # streams and files, so the bytes do not depend on scheduling.
        jobs = [pool.submit(_write_subject, s, config, out, bar) for s in range(config.subjects)]
        video_jobs = [
            pool.submit(write_long_video, out / "long_videos", v, config, progress)
            for v in range(n_videos)
        ]
        done = [job.result() for job in jobs]
        videos = [job.result() for job in video_jobs]
    sheet_rows = [row for rows, _, _ in done for row in rows]
    truth = [row for _, rows, _ in done for row in rows]
    n_frames = sum(n for _, _, n in done)
    sheet = write_sheet(out / SHEET_NAME, sheet_rows)
    truth_path = write_csv(out / "ground_truth.csv", GROUND_TRUTH_COLUMNS, truth)
    write_json(
        out / "synth.json",
        {
            "generator": "mekit.synth",
            "mekit_version": _version(),
            "regenerate": "mekit.synth.generate_corpus(out, SynthConfig(**config))",
            "config": dataclasses.asdict(config),
        },
    )
    video_paths = write_long_video_tables(out / "long_videos", videos) if n_videos else ()
    seconds = time.perf_counter() - start
    log.info("synthetic corpus: %d clips, %d frames in %.1f s -> %s", total, n_frames, seconds, out)
    return SynthSummary(out, sheet, total, n_frames, video_paths, seconds, truth_path)
