"""Frozen per-stage configs checked when they are made; built from TOML, `section.key=value`.

Every config class is a frozen dataclass that subclasses `Config`: its `__post_init__` checks
each field against its type hint (a choice is a `Choice` enum, so `"focal"` becomes `Loss.FOCAL`
and a wrong value names the setting and the valid choices), then runs the class's `check`
(ranges via `check_range`, rules between fields). An invalid config cannot be constructed.

`from_mapping` builds one from a TOML/JSON mapping or `--set` overrides: the same checks, plus
the conversions a text source needs ("1e-3" -> float, "yes" -> bool, a list -> tuple, a table
-> the nested config). `to_dict` writes it back with plain strings for choices.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import numbers
import os
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from mekit.errors import MekitError

T = TypeVar("T")
_PARSE = "mekit.parse"
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


class Config:
    """Base of mekit's frozen dataclass configs; an invalid one cannot be constructed.

    `class TrainConfig(Config, section="train")`: `section` prefixes the setting names in
    errors ("train.epochs"). A subclass puts its ranges and cross-field rules in `check`; a field
    that takes several spellings (a list or "0.25,0.75") declares its parser with `parsed_field`.
    """

    section: ClassVar[str] = ""

    def __init_subclass__(cls, section: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if section:
            cls.section = section

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if _PARSE in f.metadata:
                value = f.metadata[_PARSE](value)
            checked = _convert(hints[f.name], value, self.setting(f.name), parse=False)
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        self.check()

    def check(self) -> None:
        """Ranges and rules between fields; raise `MekitError` naming the setting to change."""

    def setting(self, name: str) -> str:
        """How field `name` is written in errors and in `--set`: "train.epochs"."""
        return f"{self.section}.{name}" if self.section else name


class Choice(enum.StrEnum):
    """The choices of a setting. A member compares equal to, formats and reprs as its string,
    so `config.loss == "focal"`, messages and written files read as they did with strings."""

    def __repr__(self) -> str:
        return repr(self.value)


def choice_enum(name: str, values: Iterable[str], module: str) -> Any:
    """A `Choice` enum of `values` that a module keeps as a tuple next to their implementation
    ("cross-dataset" -> member CROSS_DATASET). `module`: the caller's `__name__`, so configs
    holding a member pickle (process pools, Ray)."""
    members = {v.upper().replace("-", "_"): v for v in values}
    return Choice(name, members, module=module)  # type: ignore[call-overload]


def parsed_field(parse: Callable[[Any], Any], default: Any) -> Any:
    """A dataclass field whose value goes through `parse` (raising `MekitError`) before the
    type check, in the constructor and in `from_mapping` (so `parse` must take its own output)."""
    return dataclasses.field(default=default, metadata={_PARSE: parse})


def check_range(
    config: Config,
    name: str,
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Raise `MekitError` unless `lo <= config.name <= hi` (`<` on an open side; NaN fails)."""
    value = getattr(config, name)
    above = lo < value if lo_open else lo <= value
    below = value < hi if hi_open else value <= hi
    if above and below:
        return
    if hi == math.inf:
        wanted = f"{'>' if lo_open else '>='} {lo:g}"
    elif lo == -math.inf:
        wanted = f"{'<' if hi_open else '<='} {hi:g}"
    else:
        wanted = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    raise MekitError(f"{config.setting(name)} must be {wanted}, got {value!r}")


def choices(kind: type[enum.Enum]) -> str:
    """The values of a choice enum, for messages: "ce, focal"."""
    return ", ".join(str(m.value) for m in kind)


def from_mapping(cls: type[T], values: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a mapping, recursing into nested dataclass fields.

    Values are converted to the field's type hint or refused with a `MekitError` naming the
    setting (`where` + key); unknown keys raise one naming the key and the valid ones.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise MekitError(f"unknown setting '{where}{key}'; valid: {', '.join(sorted(fields))}")
        if _PARSE in fields[key].metadata:
            value = fields[key].metadata[_PARSE](value)
        kwargs[key] = _convert(hints[key], value, f"{where}{key}", parse=True)
    return cls(**kwargs)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(hint: Any, value: Any, where: str, parse: bool) -> Any:
    """`value` checked against `hint`. `parse=False` (a constructor's arguments) accepts the
    value as given, a choice's string or a list for a tuple aside; `parse=True` (text sources)
    also converts strings to numbers, booleans and paths, ints to floats, tables to configs."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        return _union(hint, value, where, parse)
    if value is None:
        raise MekitError(f"setting '{where}' wants {_describe(hint)}, got None")
    if origin is typing.Literal:
        for arg in typing.get_args(hint):
            if value == arg and isinstance(value, bool) == isinstance(arg, bool):
                return arg
        listed = ", ".join(str(a) for a in typing.get_args(hint))
        raise MekitError(f"setting '{where}' is {value!r}; choose from {listed}")
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, hint):
            return value
        try:
            return hint(value)
        except ValueError:
            raise MekitError(
                f"setting '{where}' is {value!r}; choose from {choices(hint)}"
            ) from None
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):  # type: ignore[arg-type]
            return value
        if parse and isinstance(value, Mapping):
            return from_mapping(hint, value, where + ".")  # type: ignore[arg-type]
    elif origin is tuple or hint is tuple:
        if isinstance(value, list | tuple):
            return _elements(hint, value, where, parse)
    elif origin is list or hint is list:
        if isinstance(value, list) or (parse and isinstance(value, tuple)):
            return list(_elements(hint, value, where, parse))
    elif origin in (dict, Mapping) or hint in (dict, Mapping):
        if isinstance(value, Mapping):
            return value
    elif hint in (bool, int, float, str, Path):
        converted = _scalar(hint, value, parse)
        if converted is not None:
            return converted
    elif not isinstance(hint, type) or isinstance(value, hint):
        return value  # a hint this mechanism does not describe (a callable, an array): as given
    raise MekitError(f"setting '{where}' wants {_describe(hint)}, got {value!r}")


def _union(hint: Any, value: Any, where: str, parse: bool) -> Any:
    members = [a for a in typing.get_args(hint) if a is not type(None)]
    if value is None:
        if len(members) < len(typing.get_args(hint)):
            return None
        raise MekitError(f"setting '{where}' wants {_describe(hint)}, got None")
    # The value as given first, so "auto" stays a string in `bool | str`; then conversions.
    for converting in (False, True) if parse else (False,):
        for member in members:
            try:
                return _convert(member, value, where, converting)
            except MekitError:
                pass
    raise MekitError(f"setting '{where}' wants {_describe(hint)}, got {value!r}")


def _elements(hint: Any, value: list | tuple, where: str, parse: bool) -> tuple:
    args = typing.get_args(hint)
    if not args:
        return tuple(value)
    if typing.get_origin(hint) is list or args[-1] is Ellipsis:
        args = (args[0],) * len(value)
    elif len(args) != len(value):
        raise MekitError(f"setting '{where}' wants {_describe(hint)}, got {value!r}")
    return tuple(
        _convert(a, v, f"{where}[{i}]", parse)
        for i, (a, v) in enumerate(zip(args, value, strict=True))
    )


def _scalar(hint: type, value: Any, parse: bool) -> Any:
    """`value` as scalar type `hint`, or None when it is not one. bool is never a number."""
    if isinstance(value, bool):
        return value if hint is bool else None
    if hint is bool:
        text = value.lower() if parse and isinstance(value, str) else None
        return True if text in _TRUE else False if text in _FALSE else None
    if hint is int and isinstance(value, numbers.Integral):
        return value
    if hint is float and isinstance(value, numbers.Real):
        return float(value) if parse else value
    if hint is str and isinstance(value, str):
        return value
    if hint is Path and isinstance(value, str | os.PathLike):
        return Path(value) if parse else value
    if not parse:
        return None
    if hint is str and isinstance(value, int | float):
        return str(value)
    if hint in (int, float) and isinstance(value, str):
        try:
            return hint(value.strip())
        except ValueError:
            return None
    return None


def _describe(hint: Any) -> str:
    """A type hint in words, for messages: "int", "a list of float", "one of ce, focal"."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + choices(hint)
    if origin in (tuple, list) and args:
        if origin is list or args[-1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    return getattr(hint, "__name__", str(hint))


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON/TOML-ready dict of a (nested) dataclass config; choices as their plain strings."""

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
