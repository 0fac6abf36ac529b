"""Spotting accuracy on synthetic data: intervals in long videos, apex inside annotated clips.

A synthetic corpus (`mekit.synth`, default seed 0) holds long videos at 30 and 200 fps, each
with 6 micro- and 2 macro-expressions among blinks, quick head shifts, slow head drift, flicker,
sensor noise and H.264 compression, and CASME II-layout clips at 200 fps with their apex in
ground_truth.csv. For each long video: `compute_signals` (default settings) then the
unsupervised `spot_intervals` (default `SpotConfig`), scored with the MEGC rules
(`mekit.spot.metrics`: one-to-one matching at IoU >= 0.5, TP/FP/FN summed over the corpus,
micro and macro separately). For each clip: the aligned onset..offset frames (dlib landmarks,
`mekit.faces.align_frames`) go to `apex_in_clip`, against the annotated apex.

    python benchmarks/spot_accuracy.py [--seed 0] [--videos 8] [--subjects 8] [--clips 6]

Honest figures: the `SpotConfig` and `ApexConfig` defaults were tuned on development seeds 1, 3
and 101, never on the seed reported here (the script says so if you pass one of those).

Targets (issue 7): interval F1 >= 0.85 (IoU >= 0.5) with no blink reported as an expression;
apex error <= 3 frames at 200 fps on synthetic clips.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mekit.faces import FaceConfig, FaceLandmarker, align_frames
from mekit.spot.input.signals import compute_signals
from mekit.spot.metrics import Interval, apex_summary, match_corpus, spotting_report
from mekit.spot.spotters import SpotConfig, apex_in_clip, spot_details
from mekit.synth import SynthConfig, generate_corpus

DEV_SEEDS = (1, 3, 101)  # the seeds the defaults were tuned on


def spot_videos(folder: Path, config: SpotConfig) -> dict:
    """Spot every long video of `folder`; return predictions, truths and side counts."""
    intervals = pd.read_csv(folder / "intervals.csv", dtype={"subject": str})
    distractors = pd.read_csv(folder / "distractors.csv")
    preds, truth, fps_of, vetoed = {}, {}, {}, {}
    blink_hits = shift_hits = frames = 0
    seconds = {"signals": 0.0, "spotter": 0.0}
    for path in sorted(folder.glob("*.mp4")):
        name = path.stem
        t0 = time.perf_counter()
        signals = compute_signals(path, progress=False)
        t1 = time.perf_counter()
        result = spot_details(signals, config)
        seconds["signals"] += t1 - t0
        seconds["spotter"] += time.perf_counter() - t1
        frames += len(signals)
        fps_of[name] = signals.fps
        preds[name] = [
            Interval(p.onset, p.offset, p.kind, p.apex, p.score) for p in result.intervals
        ]
        rows = intervals[intervals.video == name]
        truth[name] = [
            Interval(int(r.onset), int(r.offset), r.type, int(r.apex)) for r in rows.itertuples()
        ]
        for v in result.vetoed:
            vetoed[v.reason] = vetoed.get(v.reason, 0) + 1
        mine = distractors[distractors.video == name]
        for p in result.intervals:
            hit = mine[(mine.frame_start <= p.offset) & (p.onset <= mine.frame_end)]
            blink_hits += int((hit.kind == "blink").any())
            shift_hits += int((hit.kind == "head_shift").any())
    n_blinks = int((distractors.kind == "blink").sum())
    n_shifts = int((distractors.kind == "head_shift").sum())
    return dict(
        preds=preds,
        truth=truth,
        fps=fps_of,
        vetoed=vetoed,
        blink_hits=blink_hits,
        shift_hits=shift_hits,
        n_blinks=n_blinks,
        n_shifts=n_shifts,
        frames=frames,
        seconds=seconds,
    )


def print_scores(title: str, preds: dict, truth: dict) -> None:
    report = spotting_report(preds, truth)
    print(f"{title}")
    print("  kind      TP   FP   FN  precision  recall     F1")
    for kind in ("micro", "macro", "overall"):
        s = report[kind]
        print(
            f"  {kind:<8} {s.tp:3d}  {s.fp:3d}  {s.fn:3d}      {s.precision:.3f}   "
            f"{s.recall:.3f}  {s.f1:.3f}"
        )


def clip_apex_errors(out: Path) -> pd.DataFrame:
    """apex_in_clip on every clip of the corpus at `out`, and the midpoint baseline."""
    truth = pd.read_csv(out / "ground_truth.csv", dtype={"subject": str})
    landmarker = FaceLandmarker()
    rows = []
    for r in truth.itertuples():
        folder = out / f"sub{r.subject}" / r.clip
        numbers = range(r.onset, r.offset + 1)
        frames = [cv2.imread(str(folder / f"img{n}.jpg")) for n in numbers]
        aligned = align_frames(frames, landmarker, FaceConfig())
        if aligned is None:
            print(f"  {r.subject}/{r.clip}: no face found on the onset frame; skipped")
            continue
        index, _ = apex_in_clip(np.stack(aligned.frames), aligned.landmarks)
        rows.append(
            {
                "clip": f"{r.subject}/{r.clip}",
                "frames": len(frames),
                "blink": isinstance(r.blink_frames, str) and bool(r.blink_frames),
                "error": abs(r.onset + index - r.apex),
                "midpoint_error": abs((r.onset + r.offset) // 2 - r.apex),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="synthetic corpus seed (default 0)")
    parser.add_argument("--videos", type=int, default=8, help="long videos, half at 30 fps")
    parser.add_argument("--subjects", type=int, default=8, help="clip subjects (and identities)")
    parser.add_argument("--clips", type=int, default=6, help="clips per subject (200 fps)")
    parser.add_argument("--keep", type=Path, help="write the corpus here instead of a temp dir")
    args = parser.parse_args()

    print(
        f"synthetic corpus seed {args.seed}; SpotConfig/ApexConfig defaults were tuned on "
        f"development seeds {', '.join(map(str, DEV_SEEDS))}"
    )
    if args.seed in DEV_SEEDS:
        print(f"WARNING: seed {args.seed} is a development seed: these figures are not held out")
    config = SynthConfig(
        subjects=max(args.subjects, 1),
        clips_per_subject=args.clips,
        seed=args.seed,
        long_video_fps=tuple(30.0 if v % 2 == 0 else 200.0 for v in range(args.videos)),
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "corpus"
        t0 = time.perf_counter()
        summary = generate_corpus(out, config, progress=False)
        print(
            f"generated {summary.n_clips} clips and {len(summary.long_videos)} long videos of "
            f"{config.long_video_seconds:g} s in {time.perf_counter() - t0:.0f} s"
        )

        spot = SpotConfig()
        res = spot_videos(out / "long_videos", spot)
        preds, truth = res["preds"], res["truth"]
        n_truth = sum(len(t) for t in truth.values())
        print(
            f"\nInterval spotting: {len(preds)} videos, {n_truth} expressions, "
            f"{res['n_blinks']} blinks, {res['n_shifts']} head shifts, IoU >= 0.5"
        )
        print_scores("all videos", preds, truth)
        for rate in sorted(set(res["fps"].values())):
            keep = [v for v, f in res["fps"].items() if f == rate]
            print_scores(f"{rate:g} fps", {v: preds[v] for v in keep}, {v: truth[v] for v in keep})
        print(
            f"spotted intervals overlapping a blink: {res['blink_hits']} (target 0); "
            f"overlapping a head shift: {res['shift_hits']}"
        )
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(res["vetoed"].items())) or "none"
        print(f"candidates vetoed: {reasons}")
        pairs = [p for m in match_corpus(preds, truth).values() for p in m.pairs]
        apex = apex_summary(pairs)
        if apex.n:
            print(
                f"apex error of the true positives (frames): mean {apex.mean:.1f}, median "
                f"{apex.median:.1f}, max {apex.max}"
            )
        sig, spt = res["seconds"]["signals"], res["seconds"]["spotter"]
        print(
            f"time: signals {sig:.1f} s ({res['frames'] / sig:.0f} frames/s), spotter "
            f"{spt * 1000:.0f} ms for {res['frames']} frames"
        )

        errors = clip_apex_errors(out)
        e = errors["error"].to_numpy()
        mid = errors["midpoint_error"].to_numpy()
        print(
            f"\nApex in annotated clips ({len(errors)} clips at {config.fps:g} fps, "
            f"{int(errors.blink.sum())} with a blink): apex_in_clip with landmarks"
        )
        print(
            f"  error (frames): mean {e.mean():.2f}, median {np.median(e):.1f}, max {e.max()}, "
            f"within 3 frames {100 * (e <= 3).mean():.0f} % (target: <= 3)"
        )
        print(
            f"  baseline, midpoint of onset..offset: mean {mid.mean():.2f}, median "
            f"{np.median(mid):.1f}, max {mid.max()}"
        )


if __name__ == "__main__":
    main()
