"""Recipes: named, shipped training settings (`mekit recipes`, `mekit train --recipe NAME`).

A recipe is a TOML file of experiment settings as `mekit train --config` takes them (top-level
keys such as `model` and `engine`, tables `[train]`, `[average]`, `[features]`...) plus a
one-line `description`. Its hyperparameters are fixed in the file: nothing in a recipe is
chosen per test subject. Command-line options and `--set` override it.

Shipped recipes live in `mekit/train/recipe_files/NAME.toml`; `load_recipe` also takes the
path of a recipe file of one's own.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mekit.errors import MekitError

_PACKAGE = "mekit.train"
_FOLDER = "recipe_files"
# What a recipe must not fix: the data and the protocol are the caller's.
_FORBIDDEN = ("dataset", "protocol", "allow_missing", "k")


@dataclass(frozen=True)
class Recipe:
    """A named recipe: `settings` is the mapping an `ExperimentConfig` is built from."""

    name: str
    description: str
    settings: dict[str, Any]


def _shipped() -> dict[str, Any]:
    folder = resources.files(_PACKAGE).joinpath(_FOLDER)
    return {
        entry.name.removesuffix(".toml"): entry
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    }


def recipe_names() -> list[str]:
    """Names of the shipped recipes, sorted."""
    return sorted(_shipped())


def parse_recipe(name: str, text: str) -> Recipe:
    """A recipe from its TOML text; `MekitError` naming what to fix when it is malformed."""
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise MekitError(f"recipe {name!r} is not valid TOML: {e}") from None
    description = values.pop("description", None)
    if not isinstance(description, str) or not description.strip():
        raise MekitError(f'recipe {name!r} needs a one-line description = "..."')
    if "\n" in description.strip():
        raise MekitError(f"recipe {name!r}: the description must be one line")
    fixed = [key for key in _FORBIDDEN if key in values]
    if fixed:
        raise MekitError(
            f"recipe {name!r} sets {', '.join(fixed)}: the data and the protocol belong to the "
            "command line (--protocol, --k, --allow-missing), not to a recipe"
        )
    return Recipe(name=name, description=description.strip(), settings=values)


def load_recipe(name_or_path: str) -> Recipe:
    """A shipped recipe by name, or a recipe file (`path/to/NAME.toml`)."""
    shipped = _shipped()
    if name_or_path in shipped:
        return parse_recipe(name_or_path, shipped[name_or_path].read_text(encoding="utf-8"))
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return parse_recipe(path.stem, path.read_text(encoding="utf-8"))
    raise MekitError(
        f"unknown recipe {name_or_path!r}; shipped recipes: {', '.join(sorted(shipped))} "
        "(`mekit recipes` describes them), or give the path of a .toml recipe file"
    )


def list_recipes() -> list[Recipe]:
    """Every shipped recipe, sorted by name."""
    return [load_recipe(name) for name in recipe_names()]
