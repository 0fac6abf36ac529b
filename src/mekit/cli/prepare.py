"""`mekit prepare`: faces and features of a whole corpus into the cache (resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mekit.cli.options import cache, corpus_options, experiment_config, sources
from mekit.errors import MekitError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "prepare", help="compute faces + features for a whole corpus into the cache (resumable)"
    )
    corpus_options(p)
    p.add_argument(
        "--features",
        default="onset_apex",
        help="comma-separated kinds: onset_apex, keyframes, flow_clip, lbptop",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mekit.motion import FeatureKind
    from mekit.pipeline import prepare_corpus

    try:
        kinds = [FeatureKind(k.strip()) for k in args.features.split(",")]
    except ValueError:
        raise MekitError(
            f"--features '{args.features}': choose from {', '.join(k.value for k in FeatureKind)}"
        ) from None
    config = experiment_config(args)
    if len(args.corpus) != 1:
        raise MekitError("prepare takes one --corpus at a time")
    n, outcomes = prepare_corpus(
        sources(args)[0].path,
        kinds,
        config,
        sheet=Path(args.sheet) if args.sheet else None,
        cache_dir=cache(args),
        progress=not args.quiet,
    )
    print(f"{n} samples in {args.corpus}")
    print(f"{'feature':<12}{'shape':<18}{'done':>6}{'cached':>8}{'failed':>8}{'seconds':>9}")
    for o in outcomes:
        shape = "x".join(map(str, o.shape))
        print(
            f"{o.kind:<12}{shape:<18}{o.done:>6}{o.from_cache:>8}{len(o.skipped):>8}"
            f"{o.seconds:>9.1f}"
        )
    failed = {s.id: s.reason for o in outcomes for s in o.skipped}
    for sample_id, reason in failed.items():
        print(f"  skipped {sample_id}: {reason}")
    return 0
