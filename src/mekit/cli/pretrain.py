"""`mekit pretrain`: an apex-image model pretrained on macro expressions (FER2013, CK+)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mekit.errors import MekitError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "pretrain", help="pretrain an image model on macro expressions (FER2013, CK+, a folder)"
    )
    p.add_argument("--images", required=True, help="fer2013.csv, a CK+ folder or label/*.png")
    p.add_argument("--model", default="resnet18_dual_attention", help="an apex-image model")
    p.add_argument("--out", required=True, help="model file to write (.safetensors + .json)")
    p.add_argument("--set", action="append", metavar="train.KEY=VALUE", help="training settings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mekit.config import from_mapping, merge, parse_overrides
    from mekit.pipeline import run_pretrain
    from mekit.train import TrainConfig

    overrides = parse_overrides(args.set or [])
    unknown = set(overrides) - {"train"}
    if unknown:
        raise MekitError(f"pretrain takes only train.* settings, not {', '.join(sorted(unknown))}")
    train = from_mapping(TrainConfig, merge({"epochs": 30}, overrides.get("train", {})))
    outcome = run_pretrain(Path(args.images), Path(args.out), args.model, train)
    print(
        f"pretrained {args.model} on {outcome.n_train} images ({len(outcome.labels)} classes: "
        f"{', '.join(outcome.labels)}); held-out accuracy {outcome.held_out_accuracy:.3f} "
        f"on {outcome.n_held_out} images\nmodel file: {outcome.model_path}\n"
        f"fine-tune with: mekit train --corpus DIR --model {args.model} "
        f"--init {outcome.model_path}"
    )
    return 0
