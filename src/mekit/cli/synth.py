"""`mekit synth`: write a synthetic CASME II-layout corpus, with long videos for spotting."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("synth", help="write a synthetic CASME II-layout corpus with long videos")
    p.add_argument("out", help="output folder (must be empty or absent)")
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--clips-per-subject", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=200.0)
    p.add_argument("--no-long-videos", action="store_true", help="skip the spotting videos")
    p.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it holds a synthetic corpus"
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mekit.synth import SynthConfig, generate_corpus

    config = SynthConfig(
        subjects=args.subjects,
        clips_per_subject=args.clips_per_subject,
        seed=args.seed,
        fps=args.fps,
        long_videos=not args.no_long_videos,
    )
    summary = generate_corpus(
        Path(args.out), config, progress=not args.quiet, overwrite=args.overwrite
    )
    print(
        f"wrote {summary.n_clips} clips ({summary.n_frames} frames) and "
        f"{len(summary.long_videos)} long videos to {summary.out} in {summary.seconds:.1f} s\n"
        f"coding sheet: {summary.sheet}"
    )
    return 0
