"""Annotation corrections as data: a CSV keyed by sample id, never edits in code by row position.

Columns: `id,field,value,reason`. `field` is one of onset, apex, offset, emotion, aus (the
value replaces the sheet's), or `exclude` (the sample is left out, with the reason). An empty
apex value means "not annotated" (the midpoint is used). Lines starting with '#' are comments.
Every correction applied is recorded, and corrections whose id matched no row are reported.
Ids are compared in their canonical spelling (`mekit.data.ids`), so `smic/s01/s01_ne_01` in a
corrections file matches a sample loaded as `smic/s1/s1_ne_01`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mekit.data.ids import canonical_id
from mekit.data.schema import RowError
from mekit.errors import MekitError

FIELDS = ("onset", "apex", "offset", "emotion", "aus", "exclude")
_FRAME_FIELDS = ("onset", "apex", "offset")


@dataclass(frozen=True)
class Correction:
    id: str
    field: str
    value: str
    reason: str


@dataclass
class Corrections:
    """Loaded corrections; `apply` is called by loaders for every row, by sample id."""

    items: tuple[Correction, ...] = ()
    source: str = ""
    applied: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def apply(self, sample_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """`fields` with this sample's corrections applied; raises for an `exclude`."""
        out = dict(fields)
        key = canonical_id(sample_id)
        for c in self.items:
            if c.id != sample_id and canonical_id(c.id) != key:
                continue
            self._seen.add(c.id)
            if c.field == "exclude":
                self.applied.append((c.id, "exclude", "", "excluded", c.reason))
                raise RowError(sample_id, f"excluded by correction ({self.source}): {c.reason}")
            old = out.get(c.field)
            new: Any = c.value
            if c.field in _FRAME_FIELDS:
                new = None if c.value.strip() in ("", "/") else int(float(c.value))
            out[c.field] = new
            if c.field == "apex" and new is not None:
                out["apex_source"] = "corrected"
            self.applied.append((c.id, c.field, _show(old), _show(new), c.reason))
        return out

    def unmatched(self) -> list[Correction]:
        """Corrections whose sample id no loader row had (probably a typo in the id)."""
        return [c for c in self.items if c.id not in self._seen]

    def excludes(self, sample_id: str) -> bool:
        """True when a correction excludes `sample_id` (matched by canonical id)."""
        key = canonical_id(sample_id)
        return any(
            c.field == "exclude" and (c.id == sample_id or canonical_id(c.id) == key)
            for c in self.items
        )


def load_corrections(path: Path | str) -> Corrections:
    path = Path(path)
    if not path.is_file():
        raise MekitError(f"corrections file {path} not found; check --corrections")
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    reader = csv.DictReader(lines)
    need = {"id", "field", "value", "reason"}
    if reader.fieldnames is None or need - set(reader.fieldnames):
        raise MekitError(f"{path}: the header must be id,field,value,reason")
    items = []
    for line, row in enumerate(reader, start=2):
        name = row["field"].strip().lower()
        if name not in FIELDS:
            raise MekitError(f"{path} line {line}: field '{row['field']}' is not one of {FIELDS}")
        if not row["reason"] or not row["reason"].strip():
            raise MekitError(f"{path} line {line}: every correction needs a reason")
        if name in _FRAME_FIELDS and row["value"].strip() not in ("", "/"):
            try:
                int(float(row["value"]))
            except ValueError:
                raise MekitError(
                    f"{path} line {line}: {name} '{row['value']}' is not a frame number"
                ) from None
        items.append(Correction(row["id"].strip(), name, row["value"] or "", row["reason"].strip()))
    return Corrections(tuple(items), source=str(path))


def _show(value: Any) -> str:
    return "" if value is None else str(value)
