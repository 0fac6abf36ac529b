"""Writers for the corpus's tables: the CASME II-shaped coding sheet, CSVs and synth.json.

All writers produce identical bytes for identical content (no timestamps), so a corpus
regenerated from the same seed is byte-for-byte the same.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mekit.data.casme2 import SHEET_HEADER

_FIXED_TIME = "2000-01-01T00:00:00Z"


def write_sheet(path: Path, rows: Iterable[Sequence[Any]]) -> Path:
    """CASME II-style coding sheet: `SHEET_HEADER` (blank 3rd and 7th cells), then `rows`."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    sheet.append(list(SHEET_HEADER))
    for row in rows:
        sheet.append(list(row))
    buffer = io.BytesIO()
    book.save(buffer)
    path.write_bytes(_deterministic_zip(buffer.getvalue()))
    return path


def _deterministic_zip(data: bytes) -> bytes:
    """Re-pack an xlsx with fixed entry dates and document times."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for item in src.infolist():
            content = src.read(item.filename)
            if item.filename == "docProps/core.xml":
                text = content.decode("utf-8")
                text = re.sub(
                    r"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)",
                    lambda m: m.group(1) + _FIXED_TIME + m.group(3),
                    text,
                )
                content = text.encode("utf-8")
            info = zipfile.ZipInfo(item.filename, date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, content)
    return out.getvalue()


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """CSV with `header` columns, one line per mapping, '\\n' line ends."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(header), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path
