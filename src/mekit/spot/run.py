"""`mekit spot` end to end: signals -> intervals -> files, for one video or a folder of them.

For each video: `NAME.intervals.csv` (onset, apex, offset in frames and seconds, kind, score),
`NAME.vetoed.csv` (candidates dropped as blinks, head motion or no face, with the reason),
`NAME.png` (the motion curve, its threshold, spotted intervals, vetoes and, when known, the
true events) and `NAME.signals.npz` (the per-frame signals, to re-spot without re-reading).
When ground truth is available (an `intervals.csv` beside the videos, as `mekit synth` and the
long-video corpora give), `scores.json` and `summary.md` hold the MEGC spotting scores, micro
and macro separately, summed over the videos.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mekit.errors import MekitError  # noqa: E402
from mekit.spot.input.signals import MotionSignals, SignalConfig, compute_signals  # noqa: E402
from mekit.spot.metrics import Interval, apex_summary, match_corpus, spotting_report  # noqa: E402
from mekit.spot.spotters import SpotConfig, SpotResult, spot_details  # noqa: E402

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
COLUMNS = (
    *("video", "onset", "apex", "offset", "onset_s", "apex_s", "offset_s", "kind", "score"),
    "during",  # "speech" when the person was speaking (a brow/eye event), else empty
)


@dataclass(frozen=True)
class VideoSpots:
    video: str
    source: Path
    result: SpotResult
    signals: MotionSignals
    truth: tuple[Interval, ...] | None


@dataclass(frozen=True)
class SpotOutcome:
    out: Path
    videos: tuple[VideoSpots, ...]
    scores: dict[str, dict[str, float]] | None  # micro / macro / overall, when truth is known
    failed: tuple[tuple[str, str], ...]  # (video, reason) of videos that could not be read


def find_videos(source: Path) -> list[Path]:
    """`source` itself (a video file or a folder of frames), or the videos in a folder."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise MekitError(f"{source} does not exist; give a video file or a folder of videos")
    videos = sorted(p for p in source.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    for sub in ("long_videos",):  # a `mekit synth` corpus
        if not videos and (source / sub).is_dir():
            videos = sorted(p for p in (source / sub).iterdir() if p.suffix in VIDEO_SUFFIXES)
    return videos or [source]  # a folder of frames


def read_truth(csv_path: Path) -> dict[str, tuple[Interval, ...]]:
    """Ground-truth intervals by video stem from an intervals.csv (video, onset, apex, offset,
    type[, emotion]) as `mekit synth` writes it (0-based frames)."""
    by_video: dict[str, list[Interval]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            by_video.setdefault(row["video"], []).append(
                Interval(
                    int(row["onset"]),
                    int(row["offset"]),
                    kind=row.get("type", "micro") or "micro",
                    apex=int(row["apex"]) if row.get("apex") not in (None, "", "-1") else None,
                    video=row["video"],
                    emotion=row.get("emotion", "") or "",
                )
            )
    return {v: tuple(sorted(i, key=lambda x: x.onset)) for v, i in by_video.items()}


LONG_VIDEO_LAYOUTS = ("casme_sq", "samm_lv", "smic_e")


@dataclass(frozen=True)
class _Job:
    name: str
    source: Path  # a video file or a folder of numbered frames
    fps: float | None
    truth: tuple[Interval, ...] | None


def corpus_jobs(root: Path, fps: float | None = None) -> list[_Job] | None:
    """One job per long video of a long-video corpus (CAS(ME)^2, SAMM Long Videos, SMIC-E),
    with its annotated events as the truth; None when `root` is not such a corpus. `fps`
    overrides the corpus's frame rate (e.g. a resampled copy)."""
    from mekit.data.corpora import detect_layout, load_corpus

    try:
        layout = detect_layout(root)
    except MekitError:
        return None
    if layout not in LONG_VIDEO_LAYOUTS:
        return None
    _, loaded = load_corpus(root, layout)
    jobs = []
    for v in loaded.videos:
        name = v.id.replace("/", "_")
        source = v.video if v.video is not None else v.frames[0].parent
        truth = tuple(
            Interval(e.onset, e.offset, kind=e.kind, apex=e.apex, video=name, emotion=e.emotion)
            for e in v.events
        )
        jobs.append(_Job(name, Path(source), fps or v.fps, truth))
    return jobs


def spot(
    source: Path,
    out: Path,
    config: SpotConfig = SpotConfig(),
    *,
    truth_csv: Path | None = None,
    fps: float | None = None,
    progress: bool = True,
    signal_config: SignalConfig = SignalConfig(),
) -> SpotOutcome:
    """Spot every video of `source` (a video, a folder of frames or of videos, or a long-video
    corpus) into `out`; score against the truth when there is one. `signal_config`: the motion
    signals' flow offset, crop size and flow method."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = corpus_jobs(Path(source), fps) if Path(source).is_dir() and not truth_csv else None
    if jobs is None:
        videos = find_videos(Path(source))
        truth_csv = truth_csv or _truth_beside(videos[0])
        truth = read_truth(truth_csv) if truth_csv else {}
        jobs = [_Job(p.stem, p, fps, truth.get(p.stem, ()) if truth else None) for p in videos]
    done: list[VideoSpots] = []
    failed: list[tuple[str, str]] = []
    for job in jobs:
        name, path = job.name, job.source
        try:
            signals = compute_signals(
                path,
                fps=job.fps,
                k=signal_config.k,
                face_size=signal_config.face_size,
                method=signal_config.method,
                progress=progress,
                name=name,
            )
        except MekitError as e:  # one unreadable or faceless video must not stop the rest
            log.error("%s: %s", name, e)
            failed.append((name, str(e)))
            continue
        result = spot_details(signals, config)
        for w in result.warnings:
            if w not in signals.notes:  # those were logged where they arose
                log.warning("%s: %s", name, w)
        spots = VideoSpots(name, path, result, signals, job.truth)
        _write_video(out, spots)
        done.append(spots)
    if not done:
        reasons = "; ".join(f"{v}: {r}" for v, r in failed)
        raise MekitError(f"no video of {source} could be spotted ({reasons})")
    scores = _score(done) if any(v.truth is not None for v in done) else None
    _write_summary(out, done, scores, failed, config)
    return SpotOutcome(out, tuple(done), scores, tuple(failed))


def _truth_beside(video: Path) -> Path | None:
    candidate = video.parent / "intervals.csv"
    return candidate if candidate.is_file() else None


def _score(done: Sequence[VideoSpots]) -> dict[str, dict[str, float]]:
    predicted = {v.video: list(v.result.intervals) for v in done}
    truth = {v.video: list(v.truth or ()) for v in done}
    report = spotting_report(predicted, truth)
    scores = {kind: s.to_dict() for kind, s in report.items()}
    pairs = [p for m in match_corpus(predicted, truth).values() for p in m.pairs]
    apex = apex_summary(pairs)
    scores["apex_error_frames"] = apex.to_dict()
    return scores


def _write_video(out: Path, spots: VideoSpots) -> None:
    times = dict(zip(spots.signals.frame.tolist(), spots.signals.time_s.tolist(), strict=True))

    def seconds(frame: int | None) -> str:
        return "" if frame is None or frame not in times else f"{times[frame]:.3f}"

    with open(out / f"{spots.video}.intervals.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i in spots.result.intervals:
            writer.writerow(
                [spots.video, i.onset, i.apex, i.offset, seconds(i.onset), seconds(i.apex)]
                + [seconds(i.offset), i.kind, f"{i.score:.3f}", i.during]
            )
    with open(out / f"{spots.video}.vetoed.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "onset", "offset", "reason"])
        for v in spots.result.vetoed:
            writer.writerow([spots.video, v.interval.onset, v.interval.offset, v.reason])
    spots.signals.save(out / f"{spots.video}.signals.npz")
    plot_spots(spots, out / f"{spots.video}.png")


def plot_spots(spots: VideoSpots, path: Path) -> Path:
    """The combined motion curve with the threshold, spotted intervals (green: micro, blue:
    macro), vetoed candidates (red) and, when known, the true events (grey bars above)."""
    signals = spots.signals
    frames = signals.frame
    if signals.reference == "sliding":  # value t is the motion from t - k to t: on the events'
        frames = frames - signals.k / 2.0  # time base (see `signals.curve_times`)
    result = spots.result
    fig, ax = plt.subplots(figsize=(12, 3.2), dpi=100)
    if len(result.z):
        ax.plot(frames, result.z, lw=0.8, color="black", label="motion contrast")
        ax.axhline(result.threshold, color="orange", lw=1, ls="--", label="threshold")
    colours = {"micro": "tab:green", "macro": "tab:blue"}
    for i in result.intervals:
        ax.axvspan(i.onset, i.offset, color=colours.get(i.kind, "tab:purple"), alpha=0.3)
    for v in result.vetoed:
        ax.axvspan(v.interval.onset, v.interval.offset, color="tab:red", alpha=0.15)
    top = float(np.nanmax(result.z)) if len(result.z) and np.isfinite(result.z).any() else 1.0
    for t in spots.truth or ():
        ax.plot([t.onset, t.offset], [top * 1.08] * 2, lw=5, color="grey", solid_capstyle="butt")
    ax.set_xlabel("frame")
    ax.set_ylabel("noise units")
    n_truth = "" if spots.truth is None else f", {len(spots.truth)} true (grey)"
    ax.set_title(
        f"{spots.video}: {len(result.intervals)} spotted (green micro, blue macro), "
        f"{len(result.vetoed)} vetoed (red){n_truth}",
        fontsize=9,
    )
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _write_summary(
    out: Path,
    done: Sequence[VideoSpots],
    scores: dict[str, dict[str, float]] | None,
    failed: Sequence[tuple[str, str]],
    config: SpotConfig,
) -> None:
    rows = [
        {
            "video": v.video,
            "frames": int(len(v.signals.frame)),
            "fps": float(v.signals.fps),
            "k": int(v.signals.k),
            "spotted": [
                {
                    "onset": i.onset,
                    "apex": i.apex,
                    "offset": i.offset,
                    "kind": i.kind,
                    "score": round(float(i.score), 4),
                    "during": i.during,
                }
                for i in v.result.intervals
            ],
            "vetoed": [
                {"onset": x.interval.onset, "offset": x.interval.offset, "reason": x.reason}
                for x in v.result.vetoed
            ],
            "complete": bool(getattr(v.signals, "complete", True)),
        }
        for v in done
    ]
    (out / "spots.json").write_text(
        json.dumps({"videos": rows, "failed": dict(failed), "scores": scores}, indent=2) + "\n"
    )
    lines = ["# Spotting", "", "| video | frames | fps | spotted | micro | macro | vetoed |"]
    lines.append("|---|---|---|---|---|---|---|")
    for v in done:
        kinds = [i.kind for i in v.result.intervals]
        lines.append(
            f"| {v.video} | {len(v.signals.frame)} | {v.signals.fps:g} | {len(kinds)} | "
            f"{kinds.count('micro')} | {kinds.count('macro')} | {len(v.result.vetoed)} |"
        )
    if scores:
        lines += [
            "",
            "MEGC spotting scores (IoU >= 0.5, one match per truth, counts summed "
            "over the videos):",
            "",
            "| kind | TP | FP | FN | precision | recall | F1 |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind in ("micro", "macro", "overall"):
            s = scores[kind]
            lines.append(
                f"| {kind} | {s['tp']} | {s['fp']} | {s['fn']} | {s['precision']:.3f} | "
                f"{s['recall']:.3f} | {s['f1']:.3f} |"
            )
    for name, reason in failed:
        lines.append(f"\nnot spotted: {name}: {reason}")
    lines += ["", f"settings: p = {config.p}", ""]
    (out / "summary.md").write_text("\n".join(lines))
