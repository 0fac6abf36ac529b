"""`mekit recipes`: the shipped training recipes (`mekit train --recipe NAME`)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("recipes", help="list the shipped training recipes (mekit train --recipe)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mekit.train.recipes import list_recipes

    recipes = list_recipes()
    width = max(len(r.name) for r in recipes)
    for recipe in recipes:
        print(f"{recipe.name:<{width}}  {recipe.description}")
    print("train with one: mekit train --corpus DIR --recipe NAME (options and --set override it)")
    return 0
