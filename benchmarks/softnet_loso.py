"""The learned (SOFTNet) spotter, leave-one-subject-out on synthetic long videos.

Writes `--videos` synthetic long videos (`mekit.synth`, seed `--seed`, half at 30 fps and
half at 200 fps, each with micro- and macro-expressions among blinks, head shifts, drift,
flicker and noise; one subject per video), then runs `mekit.spot.learned.run.train_spotters`
with the default `SpotterConfig` (nothing tuned on these videos): per kind, each video is
scored by the model of the fold that held its subject out. Prints the MEGC scores (IoU >= 0.5,
one-to-one) per kind and combined, and the time taken. The unsupervised spotter's figures on
synthetic long videos are `benchmarks/spot_accuracy.py`'s.

    python benchmarks/softnet_loso.py [--videos 8] [--seed 0] [--epochs 10] [--workers 1]
        [--keep DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from mekit.spot.learned.run import train_spotters
from mekit.spot.learned.spotter import SpotterConfig
from mekit.synth import SynthConfig
from mekit.synth.long_video import write_long_videos
from mekit.train.executors import make_executor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8, help="long videos (one subject each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=SpotterConfig.epochs)
    parser.add_argument("--workers", type=int, default=1, help="LOSO folds in N processes")
    parser.add_argument("--keep", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    config = SynthConfig(
        subjects=args.videos,
        clips_per_subject=1,
        seed=args.seed,
        long_video_fps=tuple(30.0 if v % 2 == 0 else 200.0 for v in range(args.videos)),
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        t0 = time.perf_counter()
        write_long_videos(work / "long_videos", config, progress=False)
        made = time.perf_counter() - t0
        print(
            f"{args.videos} synthetic long videos of {config.long_video_seconds:g} s (seed "
            f"{args.seed}, 30 and 200 fps, {config.micro_per_video} micro + "
            f"{config.macro_per_video} macro each) in {made:.0f} s"
        )
        run = train_spotters(
            work,
            work / "run",
            replace(SpotterConfig(), epochs=args.epochs),
            progress=False,
            executor=make_executor("local", args.workers),
        )
    print(f"SOFTNet LOSO over {len(run.subjects)} subjects (IoU >= 0.5), {run.seconds:.0f} s:")
    print(f"  {'kind':<8}{'TP':>5}{'FP':>5}{'FN':>5}{'precision':>11}{'recall':>8}{'F1':>7}")
    for kind, s in run.scores.items():
        print(
            f"  {kind:<8}{s['tp']:>5}{s['fp']:>5}{s['fn']:>5}{s['precision']:>11.3f}"
            f"{s['recall']:>8.3f}{s['f1']:>7.3f}"
        )


if __name__ == "__main__":
    main()
