"""CASME II: raw (`subNN/EPxx_yy/imgN.jpg`) and official cropped (`Cropped/subNN/.../reg_imgN.jpg`)
layouts, read through the coding sheet (xlsx or the older xls).

The sheet's columns are Subject, Filename, (blank), OnsetFrame, ApexFrame, OffsetFrame, (blank),
Action Units, Estimated Emotion. A few apex cells hold '/': the clip's midpoint is used and the
sample says so (`apex_source="midpoint"`). Our synthetic corpus is written in this same layout.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from mekit.data.corrections import Corrections
from mekit.data.records import RowError, frame_number, make_sample
from mekit.data.schema import LoadResult, Sample, Skipped
from mekit.errors import MekitError

log = logging.getLogger(__name__)

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
COLUMNS = {
    "subject": "Subject",
    "filename": "Filename",
    "onsetframe": "OnsetFrame",
    "apexframe": "ApexFrame",
    "offsetframe": "OffsetFrame",
    "actionunits": "Action Units",
    "estimatedemotion": "Estimated Emotion",
}
_FRAME = re.compile(r"^(?:reg_)?img(\d+)\.(?:jpg|jpeg|png|bmp)$", re.IGNORECASE)


def find_sheet(root: Path) -> Path:
    """The coding sheet inside `root` (or its parent): a .xlsx/.xls whose name has 'coding'."""
    for folder in (root, root.parent):
        hits = sorted(
            p
            for p in folder.glob("*.xls*")
            if "coding" in p.name.lower() and not p.name.startswith("~$")
        )
        if hits:
            return hits[0]
    raise MekitError(
        f"no coding sheet (*coding*.xlsx or .xls) found in {root} or its parent; "
        "pass the sheet explicitly (--sheet PATH; CASME II ships CASME2-coding-20140508.xlsx)"
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


def read_sheet(sheet: Path) -> pd.DataFrame:
    """The coding sheet with canonical column names (see COLUMNS); cells kept as text."""
    try:
        df = pd.read_excel(sheet, dtype=str)
    except FileNotFoundError:
        raise MekitError(f"coding sheet {sheet} not found; check --sheet") from None
    except Exception as e:  # xlrd/openpyxl raise many kinds for corrupt or wrong files
        raise MekitError(f"cannot read coding sheet {sheet}: {e}") from None
    renamed = {c: COLUMNS[_norm(c)] for c in df.columns if _norm(c) in COLUMNS}
    missing = sorted(set(COLUMNS.values()) - set(renamed.values()))
    if missing:
        raise MekitError(
            f"coding sheet {sheet} lacks column(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, df.columns))}"
        )
    return df.rename(columns=renamed)[list(COLUMNS.values())].dropna(how="all")


def load_casme2(
    root: Path | str,
    sheet: Path | str | None = None,
    dataset: str = "casme2",
    fps: float = FPS,
    corrections: Corrections | None = None,
) -> LoadResult:
    """Samples of a CASME II-layout corpus; unusable rows are returned in `skipped` with why."""
    root = Path(root)
    if not root.is_dir():
        raise MekitError(f"corpus folder {root} does not exist; check --corpus")
    sheet_path = Path(sheet) if sheet is not None else find_sheet(root)
    table = read_sheet(sheet_path)
    base = frames_dir(root)
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(table.itertuples(index=False), start=2):
        record = dict(zip(table.columns, row, strict=True))
        try:
            sample = _sample(record, base, dataset, fps, corrections)
            if sample.id in seen:
                raise RowError(
                    sample.id, f"same Subject and Filename as row {seen[sample.id]}; delete one"
                )
            seen[sample.id] = line
            samples.append(sample)
        except RowError as e:
            skipped.append(Skipped(e.sample_id, f"{e.reason} ({sheet_path.name} row {line})"))
    for s in skipped:
        log.warning("skipping %s: %s", s.id, s.reason)
    log.info("%s: %d samples from %s (%d skipped)", dataset, len(samples), base, len(skipped))
    return LoadResult(tuple(samples), tuple(skipped))


def looks_like(root: Path) -> bool:
    """True when `root` has CASME II's layout: sub* clip folders and a *coding* sheet."""
    try:
        find_sheet(root)
        frames_dir(root)
    except MekitError:
        return False
    return True


def _sample(
    record: dict[str, str], base: Path, dataset: str, fps: float, corrections: Corrections | None
) -> Sample:
    subject = _subject(record["Subject"])
    clip = str(record["Filename"]).strip()
    sample_id = f"{dataset}/{subject}/{clip}"
    return make_sample(
        sample_id=sample_id,
        dataset=dataset,
        subject=subject,
        clip=clip,
        onset=_required(record["OnsetFrame"], "OnsetFrame", sample_id),
        apex=frame_number(record["ApexFrame"], "ApexFrame", sample_id),
        offset=_required(record["OffsetFrame"], "OffsetFrame", sample_id),
        emotion=record["Estimated Emotion"],
        aus=record["Action Units"],
        fps=fps,
        folder=base / subject / clip,
        corrections=corrections,
        number=_casme2_number,
    )


def _casme2_number(name: str) -> int | None:
    m = _FRAME.match(name)
    return int(m.group(1)) if m else None


def _required(cell: str, column: str, sample_id: str) -> int:
    number = frame_number(cell, column, sample_id)
    if number is None:
        raise RowError(sample_id, f"{column} is empty")
    return number


def _subject(cell: str) -> str:
    text = str(cell).strip().lower().removeprefix("sub")
    try:
        return f"sub{int(float(text)):02d}"
    except ValueError:
        return f"sub{text}"


def _norm(name: object) -> str:
    return re.sub(r"[^a-z]", "", str(name).lower())
