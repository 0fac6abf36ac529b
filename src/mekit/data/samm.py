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

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mekit.data.corrections import Corrections
from mekit.data.records import RowError, frame_number, make_sample
from mekit.data.schema import LoadResult, Sample, Skipped
from mekit.errors import MekitError

log = logging.getLogger(__name__)

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
REQUIRED: tuple[str, ...] = (
    "Subject",
    "Filename",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Action Units",
    "Estimated Emotion",
)
SEARCH_ROWS = 30  # how far down a sheet the header row is looked for
_SUBJECT_DIR = re.compile(r"^\d{3}$")


@dataclass(frozen=True)
class Table:
    """An annotation table found in a workbook: rows as {column: text} with their sheet row."""

    path: Path
    sheet_name: str
    header_row: int  # 1-based, as a spreadsheet program shows it
    rows: tuple[tuple[int, dict[str, str]], ...]

    def where(self, row: int) -> str:
        return f"{self.path.name} sheet '{self.sheet_name}' row {row}"


def read_table(
    path: Path, required: tuple[str, ...], *, prefer_sheet: str | None = None, what: str
) -> Table:
    """The table whose header row holds every column in `required` (matched ignoring case,
    spaces and punctuation), searched in the first SEARCH_ROWS rows of each sheet of `path`
    (`prefer_sheet` first). Cells come back as stripped text ("" for empty cells)."""
    try:
        sheets = pd.read_excel(path, sheet_name=None, header=None, dtype=str)
    except FileNotFoundError:
        raise MekitError(f"{what} {path} not found; check --sheet") from None
    except Exception as e:  # xlrd/openpyxl raise many kinds for corrupt or wrong files
        raise MekitError(f"cannot read {what} {path}: {e}") from None
    names = sorted(sheets, key=lambda n: str(n).lower() != (prefer_sheet or "").lower())
    wanted = {_norm(c): c for c in required}
    best: tuple[int, str, int, list[str]] | None = None  # (matches, sheet, row index, cells)
    for name in names:
        df = sheets[name]
        for i in range(min(SEARCH_ROWS, len(df))):
            cells = [_cell(c) for c in df.iloc[i].tolist()]
            found = {_norm(c) for c in cells} & set(wanted)
            if len(found) == len(wanted):
                return _table(path, str(name), i, cells, df)
            if len(found) >= 2 and (best is None or len(found) > best[0]):
                best = (len(found), str(name), i, cells)
    if best is None:
        raise MekitError(
            f"{path}: no header row with the columns {', '.join(required)} in the first "
            f"{SEARCH_ROWS} rows of its sheet(s) {', '.join(map(str, sheets))}; is this the "
            f"{what}? Pass the right file with --sheet"
        )
    _, name, i, cells = best
    present = {_norm(c) for c in cells}
    missing = [c for c in required if _norm(c) not in present]
    raise MekitError(
        f"{what} {path} (sheet '{name}', header on row {i + 1}) lacks column(s) "
        f"{', '.join(missing)}; found {', '.join(c for c in cells if c)}. "
        "Rename the column back to its official name"
    )


def _table(path: Path, sheet_name: str, i: int, header: list[str], df: pd.DataFrame) -> Table:
    columns: dict[int, str] = {}
    for j, cell in enumerate(header):
        if cell and cell not in columns.values():
            columns[j] = cell
    rows = []
    for k in range(i + 1, len(df)):
        values = df.iloc[k].tolist()
        record = {name: _cell(values[j]) for j, name in columns.items()}
        if any(record.values()):
            rows.append((k + 1, record))
    return Table(path, sheet_name, i + 1, tuple(rows))


def canonical(record: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """`record` keyed by the official spelling of `names` (the sheet's own may differ in case)."""
    by_norm = {_norm(k): v for k, v in record.items()}
    return {name: by_norm.get(_norm(name), "") for name in names}


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
    for candidate in (root, root / "SAMM", root / "SAMM_CROP"):
        if candidate.is_dir() and _has_subject_dirs(candidate):
            return candidate
    raise MekitError(
        f"no SAMM subject folders (006, 007, ...) found in {root} or {root / 'SAMM'}; "
        "point --corpus at the folder that holds them"
    )


def load_samm(
    root: Path | str,
    sheet: Path | str | None = None,
    *,
    dataset: str = "samm",
    fps: float = FPS,
    corrections: Corrections | None = None,
) -> LoadResult:
    """Samples of a SAMM-layout corpus; unusable rows are returned in `skipped` with why."""
    root = Path(root)
    if not root.is_dir():
        raise MekitError(f"corpus folder {root} does not exist; check --corpus")
    sheet_path = Path(sheet) if sheet is not None else find_sheet(root)
    table = read_table(sheet_path, REQUIRED, what="SAMM sheet")
    base = frames_dir(root)
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    seen: dict[str, int] = {}
    for line, raw in table.rows:
        record = canonical(raw, REQUIRED)
        try:
            sample = _sample(record, line, base, dataset, fps, corrections)
            if sample.id in seen:
                raise RowError(sample.id, f"Filename repeats row {seen[sample.id]}; delete one")
            seen[sample.id] = line
            samples.append(sample)
        except RowError as e:
            skipped.append(Skipped(e.sample_id, f"{e.reason} ({table.where(line)})"))
    for s in skipped:
        log.warning("skipping %s: %s", s.id, s.reason)
    log.info("%s: %d samples from %s (%d skipped)", dataset, len(samples), base, len(skipped))
    return LoadResult(tuple(samples), tuple(skipped))


def looks_like(root: Path) -> bool:
    """True when `root` has SAMM's layout: three-digit subject folders and a *SAMM* sheet that
    is not the Long Videos one."""
    try:
        frames_dir(root)
        find_sheet(root)
    except (MekitError, OSError):
        return False
    return True


def subject_id(cell: str) -> str:
    """SAMM's subject folder name for a Subject cell: 6, '6.0' and '006' are all '006'."""
    text = str(cell).strip()
    try:
        return f"{int(float(text)):03d}"
    except ValueError:
        return text


def required_frame(cell: str, column: str, sample_id: str) -> int:
    number = frame_number(cell, column, sample_id)
    if number is None:
        raise RowError(sample_id, f"{column} is empty")
    return number


def apex_frame(cell: str, column: str, sample_id: str) -> int | None:
    """The apex, None where SAMM leaves it unannotated (-1 or an empty cell)."""
    number = frame_number(cell, column, sample_id)
    return None if number is None or number < 0 else number


def _sample(
    record: dict[str, str],
    line: int,
    base: Path,
    dataset: str,
    fps: float,
    corrections: Corrections | None,
) -> Sample:
    subject = subject_id(record["Subject"])
    clip = record["Filename"]
    sample_id = f"{dataset}/{subject or '?'}/{clip or f'row{line}'}"
    if not subject:
        raise RowError(sample_id, "Subject is empty")
    if not clip:
        raise RowError(sample_id, "Filename is empty")
    return make_sample(
        sample_id=sample_id,
        dataset=dataset,
        subject=subject,
        clip=clip,
        onset=required_frame(record["Onset Frame"], "Onset Frame", sample_id),
        apex=apex_frame(record["Apex Frame"], "Apex Frame", sample_id),
        offset=required_frame(record["Offset Frame"], "Offset Frame", sample_id),
        emotion=record["Estimated Emotion"],
        aus=record["Action Units"],
        fps=fps,
        folder=base / subject / clip,
        corrections=corrections,
    )


def workbooks(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in (".xlsx", ".xls", ".xlsm")
        and not p.name.startswith("~$")
        and p.is_file()
    ]


def _has_subject_dirs(folder: Path) -> bool:
    return any(p.is_dir() and _SUBJECT_DIR.match(p.name) for p in folder.iterdir())


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = str(value).strip()
    return "" if text.lower() == "nan" else text


def _norm(name: object) -> str:
    return re.sub(r"[^a-z]", "", str(name).lower())
