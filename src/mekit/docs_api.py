"""docs/api.md from the docstrings of `mekit.api`: `python -m mekit.docs_api > docs/api.md`.

Standard library only (`inspect`): every name of `mekit.api.__all__` in its order, with its
signature and docstring, and each result class's properties and methods. tests/test_api.py
checks that the committed page equals what this prints, so the two cannot drift apart.
"""

from __future__ import annotations

import inspect
from typing import Any

HEADER = """# Python API

Generated from the docstrings of `mekit.api` by `python -m mekit.docs_api > docs/api.md`;
edit the docstrings, not this page.
"""
WIDTH = 88  # longer signatures get one parameter a line


def _doc(obj: Any) -> str:
    return inspect.getdoc(obj) or "(no docstring)"


def _one_line(obj: Any) -> str:
    return " ".join(_doc(obj).split())


def _parameter(p: inspect.Parameter) -> str:
    """`name: annotation = default` with the annotation as written (they are strings here)."""
    star = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
    text = star + p.name
    if p.annotation is not p.empty:
        text += f": {p.annotation}"
    if p.default is not p.empty:
        text += f" = {p.default!r}"
    return text


def signature(name: str, obj: Any) -> str:
    """`name(params) -> returns`, without `self`; one parameter a line when it is long."""
    sig = inspect.signature(obj)
    params: list[str] = []
    previous = None
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if previous == p.POSITIONAL_ONLY and p.kind != p.POSITIONAL_ONLY:
            params.append("/")
        if p.kind == p.KEYWORD_ONLY and previous not in (p.KEYWORD_ONLY, p.VAR_POSITIONAL):
            params.append("*")
        params.append(_parameter(p))
        previous = p.kind
    if previous == inspect.Parameter.POSITIONAL_ONLY:
        params.append("/")
    returns = "" if sig.return_annotation is sig.empty else f" -> {sig.return_annotation}"
    flat = f"{name}({', '.join(params)}){returns}"
    if len(flat) <= WIDTH:
        return flat
    return f"{name}(\n" + "".join(f"    {p},\n" for p in params) + f"){returns}"


def _members(cls: type) -> list[str]:
    """The class's own public properties and methods, in source order, one line each."""
    lines = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property) or hasattr(member, "attrname"):  # cached_property
            lines.append(f"- `.{name}`: {_one_line(member)}")
        elif inspect.isfunction(member):
            lines.append(f"- `.{signature(name, member)}`: {_one_line(member)}")
    return lines


def render() -> str:
    """The whole page, as Markdown."""
    from mekit import api

    intro = _doc(api).split("\n\n", 1)[1]
    parts = [HEADER, intro, "## Functions"]
    objects = [(name, getattr(api, name)) for name in api.__all__]
    for name, obj in objects:
        if inspect.isfunction(obj):
            code = f"```python\n{signature(name, obj)}\n```"
            parts += [f"### `mekit.api.{name}`", code, _doc(obj)]
    parts.append("## Results")
    for name, obj in objects:
        if inspect.isclass(obj):
            parts += [f"### `mekit.api.{name}`", _doc(obj)]
            parts += ["\n".join(_members(obj))] if _members(obj) else []
    return "\n\n".join(part.strip("\n") for part in parts) + "\n"


if __name__ == "__main__":
    print(render(), end="")
