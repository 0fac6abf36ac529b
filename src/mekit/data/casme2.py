"""CASME II: raw (`subNN/EPxx_yy/imgN.jpg`) and official cropped (`Cropped/subNN/.../reg_imgN.jpg`)
layouts, read through the coding sheet (xlsx or the older xls).

The sheet's columns are Subject, Filename, (blank), OnsetFrame, ApexFrame, OffsetFrame, (blank),
Action Units, Estimated Emotion. A few apex cells hold '/': the clip's midpoint is used and the
sample says so (`apex_source="midpoint"`). Our synthetic corpus is written in this same layout.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from mekit.data.corpus_spec import Clip, ClipSheet, clip_corpus
from mekit.data.sheets import find_workbook
from mekit.errors import MekitError

FPS = 200.0
# The official sheet's header row, blank cells included (as written by our synthetic corpus).
SHEET_HEADER: tuple[str | None, ...] = (
    "Subject",
    "Filename",
    None,
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    None,
    "Action Units",
    "Estimated Emotion",
)
SHEET = ClipSheet(
    what="coding sheet",  # its column names are ClipSheet's defaults
    must_have=("onset", "offset"),
    repeat="same Subject and Filename as row {row}; delete one",
    number=lambda name: int(m.group(1)) if (m := _FRAME.match(name)) else None,
)
_FRAME = re.compile(r"^(?:reg_)?img(\d+)\.(?:jpg|jpeg|png|bmp)$", re.IGNORECASE)


def find_sheet(root: Path) -> Path:
    """The coding sheet inside `root` (or its parent): a .xlsx/.xls whose name has 'coding'."""
    return find_workbook(
        (root, root.parent),
        lambda name: "coding" in name.lower(),
        missing=(
            f"no coding sheet (*coding*.xlsx or .xls) found in {root} or its parent; "
            "pass the sheet explicitly (--sheet PATH; CASME II ships CASME2-coding-20140508.xlsx)"
        ),
    )


def frames_dir(root: Path) -> Path:
    """The folder that holds `subNN/` clip folders: `root` itself or `root/Cropped`."""
    for candidate in (root, root / "Cropped", root / "CASME2_RAW_selected", root / "CASME2_RAW"):
        if candidate.is_dir() and any(candidate.glob("sub*")):
            return candidate
    raise MekitError(
        f"no subject folders (sub01, sub02, ...) found in {root} or {root / 'Cropped'}; "
        "point --corpus at the folder that holds them"
    )


def _locate(base: Path, dataset: str) -> Callable[[int, Mapping[str, str]], Clip]:
    def clip(line: int, record: Mapping[str, str]) -> Clip:
        subject, name = _subject(record["Subject"]), record["Filename"]
        return Clip(f"{dataset}/{subject}/{name}", subject, name, base / subject / name)

    return clip


def _subject(cell: str) -> str:
    text = str(cell).strip().lower().removeprefix("sub")
    try:
        return f"sub{int(float(text)):02d}"
    except ValueError:
        return f"sub{text}"


CORPUS = clip_corpus("casme2", FPS, SHEET, find_sheet, frames_dir, _locate)
# load_casme2(root, sheet=None, dataset="casme2", fps=FPS, corrections=None) -> LoadResult
load_casme2 = CORPUS.load
looks_like = CORPUS.looks_like  # True when `root` holds both the sheet and the frames
