"""The learned spotter as commands: train it on long videos, spot with it.

    train_spotters(root, out)          # `mekit train --corpus ROOT --model softnet --out RUN`
    spot_with_spotters(video, [RUN])   # `mekit spot VIDEO --spotter RUN`

`train_spotters` reads the long videos of a corpus (CAS(ME)^2, SAMM Long Videos, SMIC-E, or the
synthetic long videos of `mekit synth`), and for each expression kind (micro, macro): computes
the SOFTNet flow windows (cached in RUN/windows/, so an interrupted or repeated run reads them
back), scores every video with the model of the leave-one-subject-out fold that held its subject
out, and then trains the kind's final model on every video (RUN/spotter_KIND.safetensors +
.json). The LOSO scores (MEGC, IoU >= 0.5, per kind and for both kinds combined) go to
RUN/scores.json and RUN/summary.md: they are the estimate of how the saved models spot unseen
people. No fold's model, threshold or epoch is chosen on its test subject: the schedule is fixed.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mekit.data.schema import LongVideo  # noqa: E402
from mekit.errors import MekitError  # noqa: E402
from mekit.fileio import atomic_write  # noqa: E402
from mekit.spot.input.video import open_video  # noqa: E402
from mekit.spot.learned.loso import loso_spotting, spot_curves  # noqa: E402
from mekit.spot.learned.spotter import (  # noqa: E402
    SpotterConfig,
    combine_kinds,
    load_spotter,
    save_spotter,
    score_source,
    smooth_scores,
    spot_from_scores,
    train_spotter,
)
from mekit.spot.learned.windows import (  # noqa: E402
    SpotterVideo,
    expression_k_s,
    k_for,
    load_windows,
    long_videos_in,
    save_windows,
    video_windows,
)
from mekit.spot.metrics import Interval, spotting_scores  # noqa: E402
from mekit.train.executors import FoldExecutor  # noqa: E402

log = logging.getLogger(__name__)

KINDS = ("micro", "macro")


@dataclass(frozen=True)
class SpotterRun:
    out: Path
    n_videos: int
    subjects: tuple[str, ...]
    scores: dict[str, dict[str, float]]  # micro / macro / overall (combined) -> tp, fp, ...
    models: dict[str, Path]  # kind -> sidecar of the final model
    seconds: float


def _windows(video, k_s: float, cache: Path, layout: str, face_size: int) -> SpotterVideo:
    path = cache / f"{video.id}_{k_for(video.fps, k_s)}_{layout}_{face_size}.npz"
    if path.is_file():
        return load_windows(path)
    data = video_windows(video, k_s=k_s, layout=layout, face_size=face_size)
    # Complete files only (written aside, then renamed): a killed run resumes cleanly.
    atomic_write(path, lambda tmp: save_windows(data, tmp))
    return data


def _fold_windows(
    held_out: str,
    *,
    videos: Sequence[LongVideo],
    fold_k_s: dict[str, float],
    windows: Callable[[LongVideo, float], SpotterVideo],
) -> list[SpotterVideo]:
    """Every video's windows for the LOSO fold that holds out subject `held_out`, with that
    fold's k (`fold_k_s`). A module-level function (with `partial`): folds may run in worker
    processes."""
    return [windows(v, fold_k_s[held_out]) for v in videos]


def _fold_k_s(videos: Sequence[LongVideo], kind: str, subjects: Sequence[str]) -> dict[str, float]:
    """{held-out subject: k in seconds (the window, and the length of predicted intervals) from
    the other subjects' annotations only}: the held-out subject's must not shape its own score."""
    out = {}
    for held_out in subjects:
        training = [v for v in videos if v.subject != held_out]
        try:
            out[held_out] = expression_k_s(training, kind)
        except MekitError:
            raise MekitError(
                f"without subject {held_out}, the long videos have no {kind}-expression to learn "
                "from, so that LOSO fold cannot be trained"
            ) from None
    return out


def train_spotters(
    root: Path,
    out: Path,
    config: SpotterConfig = SpotterConfig(),
    *,
    kinds: Sequence[str] = KINDS,
    layout: str = "rois",
    face_size: int = 84,
    progress: bool = True,
    executor: FoldExecutor | None = None,
) -> SpotterRun:
    """LOSO-score and then train one SOFTNet spotter per kind on the long videos of `root`.

    `config` gives the training settings (its `kind` is replaced by each of `kinds`).
    `executor`: where the LOSO folds run (default here, one after another). Each finished fold
    is saved in OUT/folds_KIND/, so a rerun into the same folder resumes."""
    t0 = time.perf_counter()
    root, out = Path(root), Path(out)
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise MekitError(f"spotter kinds must be among {', '.join(KINDS)}, got {list(kinds)}")
    videos = long_videos_in(root)
    subjects = tuple(sorted({v.subject for v in videos}))
    if len(subjects) < 2:
        raise MekitError(
            f"{root}: the long videos show {len(subjects)} subject(s); leave-one-subject-out "
            "needs at least 2 (e.g. `mekit synth DIR --subjects 4`)"
        )
    out.mkdir(parents=True, exist_ok=True)
    truth = {v.id: [Interval.from_event(e, v.id) for e in v.events] for v in videos}
    predicted: dict[str, dict[str, list[Interval]]] = {}
    scores: dict[str, dict[str, float]] = {}
    models: dict[str, Path] = {}
    settings: dict[str, dict] = {}
    for kind in kinds:
        present = [e for v in videos for e in v.events if e.kind == kind]
        if not present:
            log.warning("%s: no %s-expression in the long videos; no %s spotter", root, kind, kind)
            continue
        cfg = replace(config, kind=kind)
        predicted[kind], scores[kind], models[kind], settings[kind] = _train_kind(
            videos, truth, cfg, out, root, subjects, layout, face_size, progress, executor
        )
    if not models:
        raise MekitError(f"{root}: the long videos have no annotated expression to learn from")
    combined = {
        v.id: combine_kinds(
            predicted.get("micro", {}).get(v.id, []), predicted.get("macro", {}).get(v.id, [])
        )
        for v in videos
    }
    scores["overall"] = spotting_scores(combined, truth, 0.5).to_dict()
    _write_predictions(out / "loso_intervals.csv", combined)
    seconds = time.perf_counter() - t0
    (out / "scores.json").write_text(
        json.dumps({"scores": scores, "settings": settings, "root": str(root)}, indent=2)
    )
    _write_summary(out, root, len(videos), subjects, scores, models, seconds)
    return SpotterRun(out, len(videos), subjects, scores, models, seconds)


def _train_kind(
    videos: Sequence[LongVideo],
    truth: dict[str, list[Interval]],
    cfg: SpotterConfig,
    out: Path,
    root: Path,
    subjects: tuple[str, ...],
    layout: str,
    face_size: int,
    progress: bool,
    executor: FoldExecutor | None,
) -> tuple[dict[str, list[Interval]], dict[str, float], Path, dict]:
    """One kind's spotter (`cfg.kind`): the LOSO intervals of every video and their scores
    (each fold's k from its training subjects only), then the model trained on every video,
    saved in `out`; also the settings scores.json records. Returns (intervals, scores,
    sidecar, settings)."""
    kind = cfg.kind
    cache = out / "windows"
    fold_k_s = _fold_k_s(videos, kind, subjects)
    fold_windows = partial(
        _fold_windows,
        videos=videos,
        fold_k_s=fold_k_s,
        windows=partial(_windows, cache=cache, layout=layout, face_size=face_size),
    )
    curves = loso_spotting(
        videos,  # subjects and ids; each fold's windows come from fold_windows
        cfg,
        progress=progress,
        windows_for_fold=fold_windows,
        executor=executor,
        checkpoint_dir=out / f"folds_{kind}",
    )
    predicted = spot_curves(curves, cfg)
    k_s = expression_k_s(videos, kind)  # the final model learns from every video
    data = [_windows(v, k_s, cache, layout, face_size) for v in videos]
    kind_truth = {name: [t for t in ts if t.kind == kind] for name, ts in truth.items()}
    scores = spotting_scores(predicted, kind_truth, 0.5, kind=kind).to_dict()
    windows = {"k_s": k_s, "size": 42, "face_size": face_size, "layout": layout}
    model = train_spotter(data, cfg, progress=progress)
    weights, sidecar = save_spotter(
        out / f"spotter_{kind}",
        model,
        windows=windows,
        config=cfg,
        kind=kind,
        trained_on=str(root),
        videos=len(videos),
        subjects=list(subjects),
        loso_scores=scores,
    )
    settings = {
        "k_s": k_s,
        "fold_k_s": fold_k_s,  # the LOSO folds', each from its training subjects only
        "config": asdict(cfg),
        "windows": windows,
    }
    return predicted, scores, sidecar, settings


def _write_predictions(path: Path, by_video: dict[str, list[Interval]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "onset", "apex", "offset", "kind", "score"])
        for name, intervals in sorted(by_video.items()):
            for i in intervals:
                writer.writerow([name, i.onset, i.apex, i.offset, i.kind, f"{i.score:.3f}"])


def _write_summary(out, root, n_videos, subjects, scores, models, seconds) -> None:
    lines = [
        "# SOFTNet spotter: leave-one-subject-out",
        "",
        f"{n_videos} long videos of {len(subjects)} subjects in `{root}`; every video scored by "
        "the model of the fold that held its subject out; fixed schedule (no selection on the "
        "test subject). MEGC spotting: a spotted interval is a true positive when IoU >= 0.5 "
        "with a true one, each matched once.",
        "",
        "| kind | TP | FP | FN | precision | recall | F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, s in scores.items():
        lines.append(
            f"| {kind} | {s['tp']} | {s['fp']} | {s['fn']} | {s['precision']:.3f} | "
            f"{s['recall']:.3f} | {s['f1']:.3f} |"
        )
    lines += ["", "Models trained on every video (use with `mekit spot VIDEO --spotter DIR`):"]
    lines += [f"- {kind}: `{path.name}`" for kind, path in models.items()]
    lines += ["", f"Time: {seconds:.0f} s."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def spotter_files(paths: Sequence[Path]) -> list[Path]:
    """Sidecars named by `paths`: spotter files, or run folders holding spotter_*.json."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(p.glob("spotter_*.json"))
            if not inside:
                raise MekitError(
                    f"{p}: no spotter_*.json in the folder; train one with "
                    "`mekit train --corpus LONG_VIDEOS --model softnet --out DIR`"
                )
            found += inside
        else:
            found.append(p)
    return found


@dataclass(frozen=True)
class LearnedSpots:
    """What trained spotters found in one video: the intervals (micro spots inside macro ones
    dropped) and, per kind, (frames, scores, k, p, min_score) of its score curve."""

    fps: float
    intervals: list[Interval]
    curves: dict[str, tuple[np.ndarray, np.ndarray, int, float, float]]


def learned_spots(
    video: Path,
    spotters: Sequence[Path],
    *,
    fps: float | None = None,
    progress: bool = False,
) -> LearnedSpots:
    """Spot `video` with trained SOFTNet spotters (files or run folders; one per kind)."""
    video = Path(video)
    loaded = [load_spotter(p) for p in spotter_files(spotters)]
    if fps is None:
        fps = open_video(video, scan=False).fps
    if not fps > 0:
        raise MekitError(f"{video}: no frame rate known (a folder of frames?); give --fps")
    by_kind: dict[str, list[Interval]] = {}
    curves = {}
    for spotter in loaded:
        meta = spotter.meta
        kind = meta.get("kind") or (meta.get("config") or {}).get("kind") or "micro"
        w = spotter.windows
        k = int(w["k"]) if "k" in w else k_for(fps, float(w["k_s"]))
        frames, scores = score_source(
            spotter.model,
            video,
            k,
            fps=fps,
            face_size=int(w.get("face_size", 84)),
            layout=w.get("layout", "rois"),
            name=video.stem,
            progress=progress,
        )
        cfg = meta.get("config") or {}
        p = float(cfg.get("p", SpotterConfig.p))
        floor = float(cfg.get("min_score", SpotterConfig.min_score))
        by_kind[kind] = spot_from_scores(
            frames, scores, fps, k, p, kind=kind, min_score=floor, video=video.stem
        )
        curves[kind] = (frames, scores, k, p, floor)
    intervals = combine_kinds(by_kind.get("micro", []), by_kind.get("macro", []))
    return LearnedSpots(float(fps), intervals, curves)


def spot_with_spotters(
    video: Path,
    spotters: Sequence[Path],
    out: Path,
    *,
    fps: float | None = None,
    progress: bool = True,
) -> list[Interval]:
    """`learned_spots`, written into `out`: NAME.intervals.csv, NAME.intervals.json and NAME.png
    (scores, thresholds, intervals); returns the intervals."""
    video, out = Path(video), Path(out)
    found = learned_spots(video, spotters, fps=fps, progress=progress)
    fps, intervals, curves = found.fps, found.intervals, found.curves
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "video": video.stem,
            "onset": i.onset,
            "apex": i.apex,
            "offset": i.offset,
            "onset_s": round(i.onset / fps, 3),
            "apex_s": round(i.apex / fps, 3) if i.apex is not None else None,
            "offset_s": round(i.offset / fps, 3),
            "kind": i.kind,
            "score": round(i.score, 3),
        }
        for i in intervals
    ]
    with (out / f"{video.stem}.intervals.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["video"])
        writer.writeheader()
        writer.writerows(rows)
    (out / f"{video.stem}.intervals.json").write_text(
        json.dumps({"video": video.stem, "fps": fps, "spotter": "softnet", "intervals": rows})
    )
    _plot(out / f"{video.stem}.png", video.stem, fps, curves, intervals)
    return intervals


def _plot(path: Path, name: str, fps: float, curves: dict, intervals: list[Interval]) -> None:
    fig, ax = plt.subplots(figsize=(11, 3.2), dpi=100)
    colours = {"micro": "tab:green", "macro": "tab:blue"}
    for kind, (frames, scores, k, p, floor) in curves.items():
        grid, agg = smooth_scores(frames, scores, k)
        ax.plot(grid / fps, agg, color=colours.get(kind, "k"), lw=1.2, label=f"{kind} score")
        good = np.isfinite(agg)
        if good.any():
            mean, top = float(agg[good].mean()), float(agg[good].max())
            t = max(mean + p * (top - mean), floor)
            ax.axhline(t, color=colours.get(kind, "k"), ls="--", lw=0.8)
    for i in intervals:
        ax.axvspan(i.onset / fps, i.offset / fps, color=colours.get(i.kind, "grey"), alpha=0.2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("SOFTNet score (smoothed)")
    ax.set_title(f"{name}: {len(intervals)} spotted (dashed: thresholds)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
