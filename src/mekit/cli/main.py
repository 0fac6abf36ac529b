"""The `mekit` command: the parser (one module per command adds its own) and the entry point,
which sets up logging and turns errors into one line and an exit code."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from mekit import __version__
from mekit.cli import (
    analyze,
    compare,
    data,
    demo,
    evaluate,
    models,
    prepare,
    pretrain,
    recipes,
    serve,
    spot,
    synth,
    train,
    train_aus,
)
from mekit.errors import MekitError, describe_os_error

log = logging.getLogger("mekit")

# In the order `mekit --help` lists them.
COMMANDS = (
    demo,
    synth,
    train,
    train_aus,
    pretrain,
    spot,
    analyze,
    evaluate,
    compare,
    prepare,
    data,
    models,
    recipes,
    serve,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mekit",
        description="Facial micro-expression analysis: spot and recognise micro-expressions "
        "in videos; read the corpora, train and evaluate the models of the literature.",
    )
    parser.add_argument("--version", action="version", version=f"mekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `mekit ARGV`: 0 on success, 2 for an error the user can fix (one line on stderr,
    no traceback), 130 when interrupted; a command may return 1 (e.g. `data info --strict`)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # a video's problems are logged where they are found: once, not again as a Python warning
    from mekit.spot.input.video import VideoWarning

    warnings.simplefilter("ignore", VideoWarning)
    try:
        return int(args.func(args))
    except MekitError as e:
        print(f"mekit: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a write the command did not check itself: still one line
        print(f"mekit: error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nmekit: interrupted; finished samples are cached, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
