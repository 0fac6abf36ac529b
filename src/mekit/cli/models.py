"""`mekit models`: the registered models with their task, input and parameter count."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("models", help="list the models with their input and parameter count")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mekit.models import Task, count_params, create_model, list_models

    print(
        f"{'name':<28}{'task':<13}{'input':<20}{'shape (C,[T,]H,W)':<20}{'features':<16}"
        f"{'params':>10}"
    )
    for spec in list_models(task=None):
        classes = None if spec.task is Task.SPOTTING else 3
        n = count_params(create_model(spec.name, classes))
        shape = "x".join(map(str, spec.input_shape))
        print(
            f"{spec.name:<28}{spec.task.value:<13}{spec.input_kind:<20}{shape:<20}"
            f"{spec.features:<16}{n:>10,}"
        )
    print(
        f"{'lbptop_svm':<28}{'recognition':<13}{'lbptop':<20}{'5x5x1 blocks':<20}"
        f"{'lbptop':<16}{'(svm)':>10}"
    )
    return 0
