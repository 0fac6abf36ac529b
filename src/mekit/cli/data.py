"""`mekit data info`: what a corpus holds and every problem in it (`mekit.api.load_corpus`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mekit.cli.options import reading_options


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("data", help="inspect corpora")
    data = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    p = data.add_parser(
        "info", help="what a corpus holds: counts per class and subject, and every problem"
    )
    p.add_argument("corpus_dir", help="the corpus folder as distributed")
    reading_options(p, "--corpus")
    p.add_argument("--labels", default="megc2019", help="label scheme (default megc2019)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any problem is found")
    p.set_defaults(func=run_info)


def run_info(args: argparse.Namespace) -> int:
    from mekit import api
    from mekit.data.inspect import format_summary

    if not args.verbose:  # every skipped row is in the report below; no need to log it twice
        logging.getLogger("mekit.data").setLevel(logging.ERROR)
    corpus = api.load_corpus(
        Path(args.corpus_dir),
        args.corpus,
        args.labels,
        sheet=args.sheet,
        corrections=args.corrections or None,
    )
    print(format_summary(corpus.summary, args.corpus_dir))
    return 1 if args.strict and corpus.summary.has_problems() else 0
