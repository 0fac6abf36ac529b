"""SAMM (micro clips): `ROOT/006/006_1_2/006_05562.jpg` read through SAMM_Micro_FACS_Codes_v2.xlsx.

Subject folders are the subject number in three digits (`006`), clip folders are the sheet's
Filename (`{subject}_{video}_{event}`, e.g. `006_1_2`), and a frame file ends in its frame number
(`006_05562.jpg` is frame 5562; four- and five-digit numbers are both read). Frames are 200 fps.

The official sheet keeps a block of notes above the table (the header is on row 14 of the
released v2 file); the header row is found by its content in the first 30 rows of any sheet, so
a sheet saved with fewer or more notes rows reads the same. Its columns are Subject, Filename,
Inducement Code, Onset Frame, Apex Frame, Offset Frame, Duration, Micro, Action Units, Estimated
Emotion, Objective Classes, Notes; the loader needs Subject, Filename, the three frame columns,
Action Units and Estimated Emotion. An apex of -1 (or empty) means "not annotated": the clip's
midpoint is used and the sample says so (`apex_source="midpoint"`). Emotions are lower-cased
("anger", "contempt", ..., "other"). Sample ids are `samm/006/006_1_2`.

The sheet is looked for in ROOT and its parent: a .xlsx/.xls whose name has "SAMM" and not
"long" (that is the SAMM Long Videos sheet, read by `mekit.data.samm_lv`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from mekit.data.corpus_spec import Clip, ClipSheet, clip_corpus, first_holding
from mekit.data.records import RowError, frame_number
from mekit.data.sheets import workbooks
from mekit.errors import MekitError

FPS = 200.0
# The official sheet's header row, as released (v2).
SHEET_HEADER: tuple[str, ...] = (
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Duration",
    "Micro",
    "Action Units",
    "Estimated Emotion",
    "Objective Classes",
    "Notes",
)
HEADER_ROW = 14  # the header's row in the released sheet (13 rows of notes above it)
SHEET = ClipSheet(
    what="SAMM sheet",
    onset="Onset Frame",
    apex="Apex Frame",
    offset="Offset Frame",
    must_have=("onset", "offset"),
    negative_apex=True,
    header_search=True,
    repeat="Filename repeats row {row}; delete one",
)
REQUIRED = SHEET.required
_SUBJECT_DIR = re.compile(r"^\d{3}$")


def find_sheet(root: Path) -> Path:
    """The SAMM sheet in `root` or its parent: a .xlsx/.xls named *SAMM* but not *long*."""
    for folder in (root, root.parent):
        hits = sorted(
            (p for p in workbooks(folder) if "samm" in p.name.lower()),
            key=lambda p: ("micro" not in p.name.lower(), p.name),
        )
        hits = [p for p in hits if "long" not in p.name.lower()]
        if hits:
            return hits[0]
    raise MekitError(
        f"no SAMM sheet (*SAMM*.xlsx, e.g. SAMM_Micro_FACS_Codes_v2.xlsx) found in {root} or its "
        "parent; pass the sheet explicitly with --sheet PATH"
    )


def frames_dir(root: Path) -> Path:
    """The folder holding the three-digit subject folders: `root`, `root/SAMM` or
    `root/SAMM_CROP`."""
    folder = first_holding((root, root / "SAMM", root / "SAMM_CROP"), _SUBJECT_DIR)
    if folder is None:
        raise MekitError(
            f"no SAMM subject folders (006, 007, ...) found in {root} or {root / 'SAMM'}; "
            "point --corpus at the folder that holds them"
        )
    return folder


def subject_id(cell: str) -> str:
    """SAMM's subject folder name for a Subject cell: 6, '6.0' and '006' are all '006'."""
    text = str(cell).strip()
    try:
        return f"{int(float(text)):03d}"
    except ValueError:
        return text


def apex_frame(cell: str, column: str, sample_id: str) -> int | None:
    """The apex, None where SAMM leaves it unannotated (-1 or an empty cell)."""
    number = frame_number(cell, column, sample_id)
    return None if number is None or number < 0 else number


def _locate(base: Path, dataset: str) -> Callable[[int, Mapping[str, str]], Clip]:
    def clip(line: int, record: Mapping[str, str]) -> Clip:
        subject, name = subject_id(record["Subject"]), record["Filename"]
        sample_id = f"{dataset}/{subject or '?'}/{name or f'row{line}'}"
        if not subject:
            raise RowError(sample_id, "Subject is empty")
        if not name:
            raise RowError(sample_id, "Filename is empty")
        return Clip(sample_id, subject, name, base / subject / name)

    return clip


CORPUS = clip_corpus("samm", FPS, SHEET, find_sheet, frames_dir, _locate)
# load_samm(root, sheet=None, dataset="samm", fps=FPS, corrections=None) -> LoadResult
load_samm = CORPUS.load
looks_like = CORPUS.looks_like  # True when `root` holds both the sheet and the frames
