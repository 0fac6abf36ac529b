"""Option groups several commands share, and how their values become settings.

`corpus_options` (--corpus and what reads it, `reading_options`), `spot_settings_options`
(--config/--set of the spotter); `experiment_config`, `spot_settings`, `sources`, `cache` and
`seeds` turn the parsed values into the library's settings objects, with errors that name the
option to change.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mekit.errors import MekitError

if TYPE_CHECKING:
    from mekit.pipeline import CorpusSource, ExperimentConfig
    from mekit.spot.input.signals import SignalConfig
    from mekit.spot.spotters import SpotConfig

CORPUS_HELP = (
    "corpus folder as distributed (layout detected, or named: casme2=/data/CASME2); repeat for "
    "several corpora (composite, cross-dataset)"
)


def reading_options(p: argparse.ArgumentParser, layout: str) -> None:
    """How a corpus folder is read: --sheet, its layout (the option `layout`, also spelt
    --corpus-type) and --corrections."""
    p.add_argument("--sheet", help="annotation sheet (default: found in the corpus folder)")
    p.add_argument(
        layout,
        "--corpus-type",
        dest=layout.removeprefix("--"),
        help="layout of the corpus (default: detected; see the README's corpora table)",
    )
    p.add_argument("--corrections", help="CSV of annotation corrections (id,field,value,reason)")


def corpus_options(
    p: argparse.ArgumentParser,
    *,
    required: bool = True,
    corpus_help: str = CORPUS_HELP,
    settings: bool = True,
) -> None:
    """--corpus and what reads it (sheet, layout, corrections, workers, feature cache,
    progress); with `settings`, --config and --set for the run's settings too."""
    p.add_argument(
        "--corpus", required=required, action="append", metavar="[LAYOUT=]PATH", help=corpus_help
    )
    reading_options(p, "--dataset")
    p.add_argument("--workers", type=int, help="processes (default 2)")
    if settings:
        p.add_argument("--config", help="TOML file: top-level keys and [face] [features] [train]")
        p.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override a setting, e.g. --set train.epochs=100 --set features.method=farneback",
        )
    p.add_argument(
        "--cache", help="feature cache folder (default ~/.cache/mekit/features or $MEKIT_CACHE)"
    )
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def spot_settings_options(p: argparse.ArgumentParser) -> None:
    """--config and --set of the spotter ([spot] and [signals] sections)."""
    p.add_argument("--config", help="TOML file with [spot] and [signals] sections")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set spot.min_z=4 --set signals.k=3 (spot.*: the "
        "spotter, see SpotConfig; signals.*: k, face_size, method)",
    )


def spot_settings(args: argparse.Namespace) -> tuple[SpotConfig, SignalConfig]:
    """(SpotConfig, SignalConfig) from --config FILE.toml ([spot], [signals]) and --set
    spot.KEY=VALUE / signals.KEY=VALUE (and spot's --p)."""
    from mekit.config import from_mapping, load_toml, merge, parse_overrides
    from mekit.spot.input.signals import SignalConfig
    from mekit.spot.spotters import SpotConfig

    values = load_toml(Path(args.config)) if getattr(args, "config", None) else {}
    values = merge(values, parse_overrides(getattr(args, "set", None) or []))
    if getattr(args, "p", None) is not None:
        values = merge(values, {"spot": {"p": args.p}})
    unknown = sorted(set(values) - {"spot", "signals"})
    if unknown:
        raise MekitError(
            f"unknown setting section(s) {', '.join(unknown)}: use spot.KEY (the spotter, e.g. "
            "spot.min_z=4) or signals.KEY (signals.k, signals.face_size, signals.method)"
        )
    for section in ("spot", "signals"):
        if not isinstance(values.get(section, {}), dict):
            raise MekitError(f"'{section}' must be a section, e.g. {section}.KEY=VALUE")
    spot = from_mapping(SpotConfig, values.get("spot", {}), "spot.")
    return spot, from_mapping(SignalConfig, values.get("signals", {}), "signals.")


def experiment_config(args: argparse.Namespace) -> ExperimentConfig:
    """The run's settings: the recipe, then --config, then the options, then --set."""
    from mekit.config import load_toml, merge, parse_overrides
    from mekit.pipeline import ExperimentConfig

    values = {}
    if getattr(args, "recipe", None):
        from mekit.train.recipes import load_recipe

        values = load_recipe(args.recipe).settings
    if args.config:
        values = merge(values, load_toml(Path(args.config)))
    keys = ("dataset", "labels", "model", "workers", "protocol", "k", "engine", "executor")
    given = {k: getattr(args, k, None) for k in keys}
    if getattr(args, "ray_address", None):
        given["ray_address"] = args.ray_address
    values = merge(values, {k: v for k, v in given.items() if v is not None})
    if getattr(args, "selection", None):
        values = merge(values, {"train": {"selection": args.selection}})
    if getattr(args, "init", None):
        values = merge(values, {"train": {"init_from": str(args.init)}})
    for key in ("device", "precision"):
        if getattr(args, key, None):
            values = merge(values, {"train": {key: getattr(args, key)}})
    if getattr(args, "allow_missing", False):
        values = merge(values, {"allow_missing": True})
    return ExperimentConfig.from_dict(merge(values, parse_overrides(args.set or [])))


def sources(args: argparse.Namespace) -> list[CorpusSource]:
    """One `CorpusSource` per --corpus (with --sheet, which needs a single corpus)."""
    from mekit.pipeline import CorpusSource

    if len(args.corpus) > 1 and args.sheet:
        raise MekitError(
            "--sheet applies to one corpus; with several, keep each sheet in its folder"
        )
    return [CorpusSource.parse(c, args.sheet) for c in args.corpus]


def seeds(text: str | None) -> list[int] | None:
    """--seeds "1,2,3" as integers (None when not given)."""
    if not text:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise MekitError(f"--seeds '{text}': give comma-separated integers, e.g. 1,2,3") from None


def cache(args: argparse.Namespace) -> Path | None:
    """The feature cache folder of --cache / --no-cache (default `api.default_cache_dir()`)."""
    from mekit.api import default_cache_dir

    return None if args.no_cache else Path(args.cache or default_cache_dir())
