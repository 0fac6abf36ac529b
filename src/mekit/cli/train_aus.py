"""`mekit train-aus`: train the action-unit model on mekit's synthetic AU flows only.

With the defaults it rewrites the packaged model bit-for-bit (`python -m mekit.app.au_training`
is the same command); `mekit.train.au_model.AUDetector.load(OUT)` reads what it writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "train-aus",
        help="train the action-unit model on synthetic faces only (no real data)",
        description="Train the action-unit model on mekit's synthetic AU flows only. With the "
        "defaults it rewrites the packaged model bit-for-bit: mekit train-aus "
        "--out src/mekit/models/weights/au-motion --seed 0. A stopped run continues when the "
        "same command is run again.",
    )
    # Unset options keep the packaged model's settings (`AUTrainConfig`, PACKAGED_RENDERED),
    # read when it runs: building the parser must not import torch.
    p.add_argument("--out", type=Path, required=True, help="model stem (.safetensors + .json)")
    p.add_argument("--seed", type=int, help="seed of the samples, weights and batch order (0)")
    p.add_argument("--n-train", type=int, help="synthetic training samples (default: packaged)")
    p.add_argument("--epochs", type=int, help="training epochs (default: packaged)")
    p.add_argument(
        "--n-val", type=int, help="synthetic samples the threshold is chosen on (default: 3000)"
    )
    p.add_argument(
        "--rendered",
        type=float,
        help="share of the samples whose flow TV-L1 measures on rendered faces, about 50 ms "
        "each (default 0.5, the packaged model's; 0: all written)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes making the samples (the same samples for any number; default 1; "
        "the packaged model's take about 37 minutes with 2)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mekit.app.au_training import PACKAGED_RENDERED, AUTrainConfig, train_au_model
    from mekit.synth.au_flows import AUFlowConfig
    from mekit.train.checkpoint import model_paths

    given = {
        "seed": args.seed,
        "n_train": args.n_train,
        "n_val": args.n_val,
        "epochs": args.epochs,
    }
    config = AUTrainConfig(**{k: v for k, v in given.items() if v is not None})
    rendered = PACKAGED_RENDERED if args.rendered is None else args.rendered
    data = AUFlowConfig(seed=config.seed, rendered=rendered)
    summary = train_au_model(args.out, config, data, args.workers)
    print(
        f"synthetic macro F1 {summary['synthetic_macro_f1']:.3f} at threshold "
        f"{summary['threshold']}; wrote {model_paths(args.out)[0]}"
    )
    return 0
