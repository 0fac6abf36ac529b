"""`mekit compare`: a table of several finished runs side by side."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("compare", help="table of several runs side by side")
    p.add_argument("run_dirs", nargs="+")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mekit.train.runs import compare_table

    print(compare_table([Path(d) for d in args.run_dirs]))
    return 0
