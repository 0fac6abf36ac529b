"""`mekit pretrain`: a model pretrained on macro expressions (FER2013, CK+) or on mekit's
synthetic AU flows, as a model file a micro-expression run starts from (`--init`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mekit.errors import MekitError

IMAGE_MODEL = "resnet18_dual_attention"
FLOW_MODEL = "mobilevitv3_xxs"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "pretrain",
        help="pretrain a model on macro expressions (--images) or synthetic AU flows (--synthetic)",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="fer2013.csv, a CK+ folder or label/*.png")
    source.add_argument(
        "--synthetic",
        action="store_true",
        help="mekit's synthetic AU flows (no data needed): the model learns to name the AUs",
    )
    p.add_argument(
        "--model", help=f"the model (default {IMAGE_MODEL} with --images, {FLOW_MODEL} else)"
    )
    p.add_argument("--out", required=True, help="model file to write (.safetensors + .json)")
    p.add_argument(
        "--input-norm",
        default="none",
        help="--synthetic: per-sample normalisation the fine-tuning run uses (average.input_norm)",
    )
    p.add_argument(
        "--device",
        help="where it trains: auto (default: a CUDA GPU, else MPS, else the CPU), cpu, cuda, "
        "cuda:N or mps (train.device)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto (default: bf16 autocast on a GPU, fp32 on the CPU); train.precision",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="train.* settings with --images; pretrain.* (samples, epochs, batch_size, lr, "
        "weight_decay, seed, memory_format) with --synthetic",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mekit.config import parse_overrides

    overrides = parse_overrides(args.set or [])
    if args.synthetic:
        return _synthetic(args, overrides)
    return _images(args, overrides)


def _only(overrides: dict, section: str) -> dict:
    unknown = set(overrides) - {section}
    if unknown:
        raise MekitError(
            f"this pretraining takes only {section}.* settings, not {', '.join(sorted(unknown))}"
        )
    return overrides.get(section, {})


def _hardware(args: argparse.Namespace) -> dict[str, str]:
    """--device and --precision where given: train.device and train.precision."""
    return {key: getattr(args, key) for key in ("device", "precision") if getattr(args, key)}


def _images(args: argparse.Namespace, overrides: dict) -> int:
    from mekit.config import from_mapping, merge
    from mekit.pipeline import run_pretrain
    from mekit.train import TrainConfig

    model = args.model or IMAGE_MODEL
    settings = merge({"epochs": 30}, _only(overrides, "train"))
    train = from_mapping(TrainConfig, merge(settings, _hardware(args)))
    outcome = run_pretrain(Path(args.images), Path(args.out), model, train)
    print(
        f"pretrained {model} on {outcome.n_train} images ({len(outcome.labels)} classes: "
        f"{', '.join(outcome.labels)}); held-out {outcome.score} {outcome.held_out_score:.3f} "
        f"on {outcome.n_held_out} images\nmodel file: {outcome.model_path}\n"
        f"fine-tune with: mekit train --corpus DIR --model {model} "
        f"--init {outcome.model_path}"
    )
    return 0


def _synthetic(args: argparse.Namespace, overrides: dict) -> int:
    from mekit.config import from_mapping
    from mekit.pipeline.config import SyntheticPretrainConfig
    from mekit.pipeline.pretrain import run_synthetic_pretrain

    model = args.model or FLOW_MODEL
    config = from_mapping(SyntheticPretrainConfig, _only(overrides, "pretrain"))
    hardware = _hardware(args)
    outcome = run_synthetic_pretrain(model, Path(args.out), config, args.input_norm, **hardware)
    print(
        f"pretrained {model} on {outcome.n_train} synthetic AU flows ({len(outcome.labels)} "
        f"AUs); synthetic held-out {outcome.score} {outcome.held_out_score:.3f} on "
        f"{outcome.n_held_out} flows\nmodel file: {outcome.model_path}\n"
        f"fine-tune with: mekit train --corpus DIR --model {model} --init {outcome.model_path}"
        + (f" --set average.input_norm={args.input_norm}" if args.input_norm != "none" else "")
    )
    return 0
