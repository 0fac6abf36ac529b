"""MMEW (micro clips): `Micro_Expression/{emotion}/{Filename}/1.jpg` read through
`MMEW_Micro_Exp.xlsx`, 90 fps.

ROOT holds `Micro_Expression/` (or `MMEW_Final/Micro_Expression/`, `MMEW/Micro_Expression/`).
Clip folders are the sheet's Filename, inside a folder per emotion; frames are `1.jpg`, `2.jpg`,
... (the number is the frame number the sheet uses). A clip is looked for in the folder of its
emotion first, then anywhere up to three levels below Micro_Expression/ by its Filename
(ignoring case), so copies with differently named emotion folders or a subject level read the
same. The sheet is looked for in ROOT, ROOT/MMEW_Final and ROOT's parent: a .xlsx/.xls whose
name has "Micro_Exp" (the newest-sorting one, e.g. _v2, when several are there).

The sheet's columns are Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units,
Estimated Emotion (and remarks, not read). Emotions are lower-cased (happiness, surprise,
disgust, fear, sadness, anger, others). A missing apex gives the midpoint
(`apex_source="midpoint"`), a missing onset or offset the clip's first or last frame (the clip
folders are already cut to the expression). Sample ids are `mmew/{Subject}/{Filename}`, the
Subject as the sheet writes it.
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

FPS = 90.0
# The official sheet's header row.
SHEET_HEADER: tuple[str, ...] = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
    "remarks",
)
REQUIRED: tuple[str, ...] = SHEET_HEADER[:-1]
FRAME_FOLDERS = ("Micro_Expression", "MMEW_Final/Micro_Expression", "MMEW/Micro_Expression")
SEARCH_DEPTH = 3  # how deep below Micro_Expression/ a clip folder is looked for by name


def find_sheet(root: Path) -> Path:
    """The micro-expression sheet (`*Micro_Exp*.xlsx/.xls`) in `root`, root/MMEW_Final or the
    parent of `root`."""
    for folder in (root, root / "MMEW_Final", root.parent):
        if not folder.is_dir():
            continue
        hits = sorted(
            p
            for p in folder.glob("*.xls*")
            if "microexp" in _norm(p.name) and not p.name.startswith("~$")
        )
        if hits:
            if len(hits) > 1:
                log.warning("several MMEW micro sheets in %s; using %s", folder, hits[-1].name)
            return hits[-1]
    raise MekitError(
        f"no MMEW sheet (MMEW_Micro_Exp.xlsx) found in {root}, {root / 'MMEW_Final'} or the "
        "parent folder; pass it explicitly with --sheet PATH"
    )


def frames_dir(root: Path) -> Path:
    """The Micro_Expression folder under `root` (or `root` itself when that is it)."""
    candidates = [root / rel for rel in FRAME_FOLDERS]
    if root.name.lower() == "micro_expression":
        candidates.insert(0, root)
    for candidate in candidates:
        if candidate.is_dir() and any(p.is_dir() for p in candidate.iterdir()):
            return candidate
    raise MekitError(
        f"no Micro_Expression folder found in {root} (or MMEW_Final/ below it); point --corpus "
        "at the MMEW folder that holds Micro_Expression/"
    )


def read_sheet(sheet: Path) -> pd.DataFrame:
    """The sheet with canonical column names (REQUIRED); cells kept as text."""
    try:
        df = pd.read_excel(sheet, dtype=str)
    except FileNotFoundError:
        raise MekitError(f"MMEW sheet {sheet} not found; check --sheet") from None
    except Exception as e:  # xlrd/openpyxl raise many kinds for corrupt or wrong files
        raise MekitError(f"cannot read MMEW sheet {sheet}: {e}") from None
    wanted = {_norm(c): c for c in REQUIRED}
    renamed: dict[object, str] = {}
    for column in df.columns:
        canonical = wanted.get(_norm(column))
        if canonical is not None and canonical not in renamed.values():
            renamed[column] = canonical
    missing = [c for c in REQUIRED if c not in renamed.values()]
    if missing:
        raise MekitError(
            f"MMEW sheet {sheet} lacks column(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, df.columns))}"
        )
    return df.rename(columns=renamed)[list(REQUIRED)].dropna(how="all")


def load_mmew(
    root: Path | str,
    sheet: Path | str | None = None,
    *,
    dataset: str = "mmew",
    fps: float = FPS,
    corrections: Corrections | None = None,
) -> LoadResult:
    """Samples of MMEW's micro-expressions; unusable rows are returned in `skipped` with why."""
    root = Path(root)
    if not root.is_dir():
        raise MekitError(f"corpus folder {root} does not exist; check --corpus")
    sheet_path = Path(sheet) if sheet is not None else find_sheet(root)
    table = read_sheet(sheet_path)
    base = frames_dir(root)
    finder = _Clips(base)
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    seen: dict[str, int] = {}
    for index, row in zip(table.index, table.itertuples(index=False), strict=True):
        line = int(index) + 2  # the header is spreadsheet row 1
        record = {c: _cell(v) for c, v in zip(table.columns, row, strict=True)}
        try:
            sample = _sample(record, finder, dataset, fps, corrections)
            if sample.id in seen:
                raise RowError(sample.id, f"same Subject and Filename as row {seen[sample.id]}")
            seen[sample.id] = line
            samples.append(sample)
        except RowError as e:
            skipped.append(Skipped(e.sample_id, f"{e.reason} ({sheet_path.name} row {line})"))
    for s in skipped:
        log.warning("skipping %s: %s", s.id, s.reason)
    log.info("%s: %d samples from %s (%d skipped)", dataset, len(samples), base, len(skipped))
    return LoadResult(tuple(samples), tuple(skipped))


def looks_like(root: Path) -> bool:
    """True when `root` has MMEW's layout: a Micro_Expression folder and a *Micro_Exp* sheet."""
    try:
        frames_dir(root)
        find_sheet(root)
    except (MekitError, OSError):
        return False
    return True


class _Clips:
    """Clip folders: `{emotion}/{Filename}` first, else found by name (ignoring case) up to
    SEARCH_DEPTH levels below Micro_Expression/ (indexed once, on the first miss). A clip found
    nowhere gives its expected path, which make_sample reports as missing."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._index: dict[str, list[Path]] | None = None

    def folder(self, emotion: str, filename: str, sample_id: str) -> Path:
        direct = self.base / emotion / filename
        if emotion and direct.is_dir():
            return direct
        hits = self.index().get(filename.lower(), [])
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            names = ", ".join(str(p.relative_to(self.base)) for p in hits)
            raise RowError(sample_id, f"several clip folders named {filename}: {names}")
        return direct  # missing: make_sample says so, after applying corrections

    def index(self) -> dict[str, list[Path]]:
        if self._index is None:
            self._index = {}
            level = [self.base]
            for _ in range(SEARCH_DEPTH):
                below = []
                for folder in level:
                    for p in sorted(folder.iterdir()):
                        if p.is_dir():
                            self._index.setdefault(p.name.lower(), []).append(p)
                            below.append(p)
                level = below
        return self._index


def _sample(
    record: dict[str, str],
    finder: _Clips,
    dataset: str,
    fps: float,
    corrections: Corrections | None,
) -> Sample:
    subject = record["Subject"]
    filename = record["Filename"]
    sample_id = f"{dataset}/{subject or '?'}/{filename or '?'}"
    if not subject or not filename:
        raise RowError(sample_id, "Subject or Filename is empty")
    emotion = record["Estimated Emotion"]
    return make_sample(
        sample_id=sample_id,
        dataset=dataset,
        subject=subject,
        clip=filename,
        onset=frame_number(record["OnsetFrame"], "OnsetFrame", sample_id),
        apex=frame_number(record["ApexFrame"], "ApexFrame", sample_id),
        offset=frame_number(record["OffsetFrame"], "OffsetFrame", sample_id),
        emotion=emotion,
        aus=record["Action Units"],
        fps=fps,
        folder=finder.folder(emotion, filename, sample_id),
        corrections=corrections,
    )


def _cell(value: object) -> str:
    text = "" if value is None else str(value).strip()
    if text.lower() in ("nan", "none", "nat"):
        return ""
    return re.sub(r"^(\d+)\.0$", r"\1", text)  # a number read as a float


def _norm(name: object) -> str:
    return re.sub(r"[^a-z]", "", str(name).lower())
