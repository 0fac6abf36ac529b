"""`mekit spot`: spot micro- and macro-expressions in videos (`mekit.api.spot`), with trained
SOFTNet spotters (--spotter), or each annotated clip's apex (--apex)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mekit.cli.options import spot_settings, spot_settings_options


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "spot", help="spot micro- and macro-expressions in a video or a folder of videos"
    )
    p.add_argument("source", help="a video file, a folder of numbered frames, or of videos")
    p.add_argument("--out", help="output folder (default spots/NAME)")
    p.add_argument(
        "--truth", help="intervals.csv to score against (default: one beside the videos)"
    )
    p.add_argument(
        "--fps", type=float, help="frame rate (needed for a folder of frames; overrides a corpus)"
    )
    p.add_argument("--p", type=float, help="threshold factor p of mean + p (max - mean)")
    p.add_argument(
        "--apex",
        action="store_true",
        help="SOURCE is a corpus of annotated clips: spot each clip's apex (apex.csv)",
    )
    p.add_argument("--corpus-type", help="with --apex: the corpus layout (default: detected)")
    spot_settings_options(p)
    p.add_argument(
        "--spotter",
        action="append",
        metavar="RUN_OR_FILE",
        help="spot with trained SOFTNet spotters (a `mekit train --model softnet` run folder or "
        "a spotter .json) instead of the unsupervised spotter",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _out(args: argparse.Namespace) -> Path:
    return Path(args.out) if args.out else Path("spots") / Path(args.source).stem


def run(args: argparse.Namespace) -> int:
    from mekit import api

    if args.apex:
        return _spot_apexes(args)
    if args.spotter:
        return _spot_learned(args)
    config, signal_config = spot_settings(args)
    out = _out(args)
    spotting = api.spot(
        args.source,
        out=out,
        config=config,
        signals=signal_config,
        truth=args.truth or None,
        fps=args.fps,
        progress=not args.quiet,
    )
    outcome = spotting.details
    for v in outcome.videos:
        kinds = [i.kind for i in v.result.intervals]
        print(
            f"{v.video}: {len(kinds)} spotted ({kinds.count('micro')} micro, "
            f"{kinds.count('macro')} macro), {len(v.result.vetoed)} vetoed "
            f"({', '.join(sorted({x.reason for x in v.result.vetoed})) or 'none'})"
        )
        times = dict(zip(v.signals.frame.tolist(), v.signals.time_s.tolist(), strict=True))
        for i in v.result.intervals:
            at = times.get(i.onset, float("nan"))
            print(
                f"  {i.kind:<6} frames {i.onset}-{i.offset} (apex {i.apex}), "
                f"{at:.2f} s  score {i.score:.2f}" + (f"  (during {i.during})" if i.during else "")
            )
    for name, reason in outcome.failed:
        print(f"not spotted: {name}: {reason}")
    if outcome.scores:
        print("\nMEGC spotting (IoU >= 0.5):")
        for kind in ("micro", "macro", "overall"):
            sc = outcome.scores[kind]
            print(
                f"  {kind:<8} TP {sc['tp']:>3} FP {sc['fp']:>3} FN {sc['fn']:>3}  "
                f"P {sc['precision']:.3f}  R {sc['recall']:.3f}  F1 {sc['f1']:.3f}"
            )
    print(f"outputs: {out}/ (NAME.intervals.csv, NAME.png, spots.json, summary.md)")
    return 0


def _spot_learned(args: argparse.Namespace) -> int:
    from mekit.spot.learned.run import spot_with_spotters

    out = _out(args)
    source = Path(args.source)
    intervals = spot_with_spotters(source, args.spotter, out, fps=args.fps, progress=not args.quiet)
    print(f"{source.stem}: {len(intervals)} spotted by the SOFTNet spotter")
    for i in intervals:
        print(f"  {i.kind:<6} frames {i.onset}-{i.offset} (apex {i.apex})  score {i.score:.2f}")
    print(f"outputs: {out}/ (NAME.intervals.csv, NAME.intervals.json, NAME.png)")
    return 0


def _spot_apexes(args: argparse.Namespace) -> int:
    import csv

    import numpy as np

    from mekit.data.corpora import load_corpus
    from mekit.spot.apex import spot_apexes

    layout, loaded = load_corpus(Path(args.source), args.corpus_type)
    _, found, failed = spot_apexes(loaded.samples, "spot-all", progress=not args.quiet)
    out = _out(args)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "apex.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "given_apex", "given_source", "spotted_apex", "error_frames"])
        for a in found:
            error = abs(a.spotted - a.given) if a.given_source == "annotated" else ""
            writer.writerow([a.id, a.given, a.given_source, a.spotted, error])
    errors = np.array([abs(a.spotted - a.given) for a in found if a.given_source == "annotated"])
    print(f"{layout}: apex spotted in {len(found)} clips, {len(failed)} failed")
    if len(errors):
        print(
            f"against the {len(errors)} annotated apexes: mean error {errors.mean():.2f} frames, "
            f"median {np.median(errors):.0f}, max {errors.max()}, "
            f"within 3 frames {np.mean(errors <= 3):.0%}"
        )
    for s in failed:
        print(f"  {s.id}: {s.reason}")
    print(f"apex.csv: {out / 'apex.csv'}")
    return 0
