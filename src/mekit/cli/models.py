"""`mekit models`: the registered models with their input and parameter count."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("models", help="list the models with their input and parameter count")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mekit.models import count_params, create_model, list_models
    from mekit.train.inputs import feature_kind_for

    print(f"{'name':<28}{'input':<20}{'shape (C,[T,]H,W)':<20}{'features':<16}{'params':>10}")
    for spec in list_models():
        n = count_params(create_model(spec.name, num_classes=3))
        shape = "x".join(map(str, spec.input_shape))
        kind = feature_kind_for(spec).value
        print(f"{spec.name:<28}{spec.input_kind:<20}{shape:<20}{kind:<16}{n:>10,}")
    print(f"{'lbptop_svm':<28}{'lbptop':<20}{'5x5x1 blocks':<20}{'lbptop':<16}{'(svm)':>10}")
    return 0
