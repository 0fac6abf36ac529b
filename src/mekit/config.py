"""Frozen per-stage configs: build from TOML mappings, apply `section.key=value` overrides."""

from __future__ import annotations

import dataclasses
import enum
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from mekit.errors import MekitError

T = TypeVar("T")


def from_mapping(cls: type[T], values: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a mapping, recursing into nested dataclass fields.

    Unknown keys raise a `MekitError` naming the key and the valid ones.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise MekitError(f"unknown setting '{where}{key}'; valid: {', '.join(sorted(fields))}")
        kwargs[key] = _coerce(hints[key], value, f"{where}{key}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_mapping(hint, value, where + ".")  # type: ignore[arg-type]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in hint)
            raise MekitError(f"setting '{where}' is {value!r}; choose from {choices}") from None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return value
    if origin is tuple and isinstance(value, list | tuple):
        return tuple(value)
    if hint in (int, float, str, bool, Path) and not isinstance(value, hint):
        try:
            if hint is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return hint(value)
        except (TypeError, ValueError):
            raise MekitError(f"setting '{where}' wants {hint.__name__}, got {value!r}") from None
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON/TOML-ready dict of a (nested) dataclass config."""

    def plain(v: Any) -> Any:
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["train.epochs=50", "features.method=farneback"]` -> nested dict (values parsed as TOML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise MekitError(f"override '{item}' should look like section.key=value")
        dotted, raw = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = out
        *parents, leaf = dotted.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise MekitError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise MekitError(f"config file {path} is not valid TOML: {e}") from None
