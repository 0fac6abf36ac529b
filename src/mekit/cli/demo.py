"""`mekit demo`: the whole pipeline on a synthetic corpus, then an analysis with its model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mekit.cli.console import StageBars, print_outcome


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="run the whole pipeline on a synthetic corpus (no data needed)")
    p.add_argument("--out", default="demo_out", help="folder for corpus, cache and report")
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--clips-per-subject", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument(
        "--no-analysis",
        action="store_true",
        help="skip `mekit analyze` of a synthetic video with the demo model",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mekit.pipeline import run_demo

    print(
        f"mekit demo: synthetic corpus of {args.subjects} subjects x {args.clips_per_subject} "
        "clips -> faces -> TV-L1 flow -> STSTNet -> LOSO (3 classes)"
    )
    t0 = time.perf_counter()
    outcome = run_demo(
        Path(args.out),
        args.subjects,
        args.clips_per_subject,
        args.seed,
        args.workers,
        progress=not args.quiet,
    )
    print_outcome(outcome, time.perf_counter() - t0)
    if outcome.model_path is None:
        return 0
    print(f"demo model (trained on synthetic data only): {outcome.model_path}")
    if args.no_analysis:
        print("analyse a video with it: mekit analyze VIDEO")
        return 0
    _analyse_demo_video(args, outcome.model_path)
    return 0


def _analyse_demo_video(args: argparse.Namespace, model: Path) -> None:
    from mekit.app.demo import demo_analysis

    print("\nmekit analyze on a synthetic 30 fps video with planted expressions:")
    with StageBars(enabled=not args.quiet) as bars:
        demo = demo_analysis(
            Path(args.out), model, progress=bars.progress if bars.enabled else None
        )
    a, sc = demo.analysis, demo.scores
    found = ", ".join(f"{e.kind} {e.onset_s:.2f}-{e.offset_s:.2f} s {e.emotion}" for e in a.events)
    print(
        f"  {demo.video.name}: {a.video.duration_s:.0f} s, {len(a.events)} events spotted "
        f"({found or 'none'}); {len(demo.truth)} planted\n"
        f"  spotting against the planted events (IoU >= 0.5): TP {sc.tp} FP {sc.fp} FN {sc.fn}, "
        f"F1 {sc.f1:.3f}; emotions of the matched ones: UF1 {demo.recognition_uf1:.3f}; "
        f"spot-then-recognise {demo.spot_then_recognise:.3f}\n"
        f"  report: {a.path('html')}  (the same for your own video: mekit analyze VIDEO)"
    )
