"""Spotting on real video: micro events per minute on talking heads, the share of the aligned
face filled from outside tightly cropped frames, and the time per video.

Real material lives beside the project, never in it (`../shared/realdata`, see its README):

- `talking/`: real talking-head videos (speech, head motion, compression; nothing coded as a
  micro-expression). Each is analysed by `mekit.app.analyze.analyze_video` (unsupervised
  spotter with its defaults, then recognition; no annotated.mp4), in a fresh process that
  reports its wall time and peak memory. What it reports as micro-expressions are, to a first
  approximation, false alarms. Target (issue 16): at most 1 micro-expression per minute over
  the set, analysis at least 2x real time on 2 cores.
- `casme2-tight/`: tightly cropped CASME II frames (the face fills the frame). For each frame,
  dlib landmarks and the alignment transform (`mekit.faces.align_frames`, 128 px, and the
  spotter's 64 px crop): the share of the aligned face whose source lies outside the image
  (what a warp would fill with repeated border pixels). Target: 0 %. And `compute_signals`
  over the folder at 200 fps must find the face in every frame.

    python benchmarks/real_video.py [--talking ../shared/realdata/talking]
        [--tight ../shared/realdata/casme2-tight] [--model MODEL]

Either folder missing: that part is skipped with a message (exit 0). The model: `--model`, else
as `mekit analyze` finds one, else an untrained STSTNet (the same computation; its emotions
mean nothing). Tune nothing on these files alone: more videos of both kinds are held back.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analyze_throughput import find_model  # the same model, or an untrained STSTNet

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TALKING = ROOT.parent / "shared" / "realdata" / "talking"
DEFAULT_TIGHT = ROOT.parent / "shared" / "realdata" / "casme2-tight"
VIDEOS = (".mp4", ".mov", ".mkv", ".avi", ".webm")


def child(video: str, model: str, out: str) -> None:
    """In a fresh process: analyse `video`, print one JSON line."""
    from mekit.app.analyze import AnalyzeConfig, analyze_video

    wall, cpu = time.perf_counter(), time.process_time()
    analysis = analyze_video(Path(video), Path(out), Path(model), AnalyzeConfig(video=False))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    kinds = [e.kind for e in analysis.events]
    print(
        json.dumps(
            {
                "duration_s": analysis.video.duration_s,
                "frames": analysis.video.n_frames,
                "wall_s": wall,
                "cpu_s": cpu,
                "stages": analysis.timings,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "micro": kinds.count("micro"),
                "macro": kinds.count("macro"),
                "in_speech": sum(e.during == "speech" for e in analysis.events),
            }
        )
    )


def talking(folder: Path, model: Path, work: Path) -> None:
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEOS)
    print(f"\nTalking heads: {len(videos)} videos in {folder}")
    header = (
        f"{'video':<22}{'s':>6}{'wall s':>8}{'x real':>8}{'cpu s':>7}{'spot s':>8}{'recog s':>8}"
    )
    header += f"{'peak MB':>9}{'micro':>7}{'macro':>7}{'speech':>8}"
    print(header)
    print("-" * len(header))
    print(f"(load average before: {', '.join(f'{v:.1f}' for v in os.getloadavg())})")
    total_s = total_wall = total_cpu = 0.0
    micro = macro = 0
    for video in videos:
        command = [sys.executable, __file__, "--child", str(video), "--model", str(model)]
        command += ["--out", str(work / video.stem)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(f"{video.name:<22} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        stages = r["stages"]
        total_s, total_wall = total_s + r["duration_s"], total_wall + r["wall_s"]
        total_cpu += r["cpu_s"]
        micro, macro = micro + r["micro"], macro + r["macro"]
        print(
            f"{video.name[:21]:<22}{r['duration_s']:>6.1f}{r['wall_s']:>8.1f}"
            f"{r['duration_s'] / r['wall_s']:>8.2f}{r['cpu_s']:>7.1f}"
            f"{stages.get('spotting', 0):>8.1f}{stages.get('recognising', 0):>8.1f}"
            f"{r['peak_mb']:>9.0f}{r['micro']:>7}"
            f"{r['macro']:>7}{r['in_speech']:>8}",
            flush=True,
        )
    if total_s:
        print(
            f"all: {total_s:.1f} s of video in {total_wall:.1f} s ({total_s / total_wall:.2f}x "
            f"real time; CPU {total_cpu:.1f} s, {total_s / total_cpu:.2f}x); {micro} micro "
            f"({60 * micro / total_s:.1f} per minute, target <= 1), {macro} macro"
        )


def tight(folder: Path) -> None:
    import cv2
    import numpy as np

    from mekit.faces import FaceConfig, FaceLandmarker, align_frames
    from mekit.faces.align import alignment_matrix, outside_share
    from mekit.spot.input.signals import compute_signals

    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png", ".bmp"))
    print(f"\nTight crops: {len(frames)} frames in {folder}")
    landmarker = FaceLandmarker()
    shares, no_face = [], 0
    for path in frames:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        clip = align_frames([image], landmarker, FaceConfig(size=128))
        if clip is None:
            no_face += 1
            continue
        landmarks = landmarker(image)
        spot_matrix = alignment_matrix(landmarks, FaceConfig(size=64), image.shape)
        shares.append(
            (
                outside_share(clip.matrix, image.shape, 128),
                outside_share(spot_matrix, image.shape, 64),
            )
        )
    if shares:
        share = np.array(shares) * 100
        print(
            f"aligned face filled from outside the image: 128 px (recognition) mean "
            f"{share[:, 0].mean():.1f} %, max {share[:, 0].max():.1f} %; 64 px (spotting) mean "
            f"{share[:, 1].mean():.1f} %, max {share[:, 1].max():.1f} % (target 0 %)"
        )
    print(f"no face found (prepare's detector): {no_face} of {len(frames)}")
    t0 = time.perf_counter()
    signals = compute_signals(folder, fps=200.0, progress=False)
    print(
        f"spot's face track at 200 fps: face in {int(signals.face_ok.sum())} of {len(signals)} "
        f"frames, k = {signals.k}, {int(signals.valid.sum())} motion values, "
        f"{time.perf_counter() - t0:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--talking", type=Path, default=DEFAULT_TALKING)
    parser.add_argument("--tight", type=Path, default=DEFAULT_TIGHT)
    parser.add_argument("--model", help="model file (default: as mekit analyze finds one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.out)
        return
    if not args.talking.is_dir() and not args.tight.is_dir():
        print(f"skipped: no real data at {args.talking} or {args.tight} (see the docstring)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.talking.is_dir():
            talking(args.talking, find_model(args.model, work), work)
        else:
            print(f"skipped: no talking-head videos at {args.talking}")
        if args.tight.is_dir():
            tight(args.tight)
        else:
            print(f"skipped: no tightly cropped frames at {args.tight}")


if __name__ == "__main__":
    main()
