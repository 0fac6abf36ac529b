"""`mekit analyze`: spot and recognise the expressions in a video (`mekit.api.analyze`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from mekit.cli.console import StageBars
from mekit.cli.options import spot_settings, spot_settings_options

if TYPE_CHECKING:
    from mekit.app.result import Analysis


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "analyze", help="spot and recognise the expressions in a video: report, MP4, JSON, CSV"
    )
    p.add_argument("video", help="a video file (MP4, MOV, AVI, MKV, WebM)")
    p.add_argument(
        "--model",
        help="model file (.json/.safetensors) from `mekit train` (RUN/model.json); default "
        "$MEKIT_MODEL, else the demo model demo_out/model/demo-ststnet-synthetic.json",
    )
    p.add_argument("--out", help="output folder (default analyses/NAME)")
    p.add_argument(
        "--spotter",
        metavar="RUN_OR_FILE",
        help="find the events with trained SOFTNet spotters (`mekit train --model softnet` "
        "run folder) instead of the unsupervised spotter",
    )
    p.add_argument("--no-video", action="store_true", help="skip annotated.mp4")
    spot_settings_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mekit import api
    from mekit.app.analyze import AnalyzeConfig

    video = Path(args.video)
    out = Path(args.out) if args.out else Path("analyses") / video.stem
    spot, signals = spot_settings(args)
    config = AnalyzeConfig(
        spot=spot,
        face_size=signals.face_size,
        flow_method=signals.method,
        k=signals.k,
        video=not args.no_video,
    )
    with StageBars(enabled=not args.quiet) as bars:
        result = api.analyze(
            video,
            model=args.model or None,
            spotter=args.spotter or None,
            out=out,
            config=config,
            progress=bars.progress if bars.enabled else None,
        )
    _print_analysis(result.details, out)
    return 0


def _print_analysis(analysis: Analysis, out: Path) -> None:
    facts, model = analysis.video, analysis.model
    kinds = [e.kind for e in analysis.events]
    print(
        f"{facts.name}: {facts.duration_s:.1f} s, {facts.n_frames} frames at {facts.fps:g} "
        f"frames/s; {len(kinds)} events ({kinds.count('micro')} micro, "
        f"{kinds.count('macro')} macro) in {analysis.seconds:.1f} s"
    )
    print(f"model: {model.name} ({model.path}), trained on {model.trained_on}")
    if model.demo:
        print("  NOTE: the demo model, trained on synthetic data, not a real-world emotion model")
    if model.oracle:
        print("  WARNING: this model's recorded figures come from test-oracle epoch selection")
    if analysis.events:
        header = f"{'onset s':>8} {'apex s':>7} {'offset s':>9} {'score':>6}  emotion"
        print(f"  {'#':>3} {'kind':<6} {header}")
        for e in analysis.events:
            p = e.confidence
            share = f" ({100 * p:.0f} %)" if math.isfinite(p) else ""
            print(
                f"  {e.index:>3} {e.kind:<6} {e.onset_s:>8.2f} {e.apex_s:>7.2f} "
                f"{e.offset_s:>9.2f} {e.score:>6.2f}  {e.emotion}{share}"
                + (f"  (during {e.during})" if e.during else "")
            )
    for warning in analysis.warnings:
        print(f"warning: {warning}")
    print(f"outputs in {out}/:")
    for name in analysis.files.values():
        if name:
            print(f"  {name}")
    print(f"open {out / 'report.html'} to see the report")
