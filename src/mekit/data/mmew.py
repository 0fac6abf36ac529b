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

from collections.abc import Callable, Mapping
from pathlib import Path

from mekit.data.corpus_spec import Clip, ClipSheet, clip_corpus
from mekit.data.records import RowError
from mekit.data.sheets import find_workbook, norm
from mekit.errors import MekitError

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
SHEET = ClipSheet(
    what="MMEW sheet",  # CASME II's column names (ClipSheet's defaults)
    repeat="same Subject and Filename as row {row}",
)
REQUIRED = SHEET.required
FRAME_FOLDERS = ("Micro_Expression", "MMEW_Final/Micro_Expression", "MMEW/Micro_Expression")
SEARCH_DEPTH = 3  # how deep below Micro_Expression/ a clip folder is looked for by name


def find_sheet(root: Path) -> Path:
    """The micro-expression sheet (`*Micro_Exp*.xlsx/.xls`) in `root`, root/MMEW_Final or the
    parent of `root` (the newest-sorting one when there are several)."""
    return find_workbook(
        (root, root / "MMEW_Final", root.parent),
        lambda name: "microexp" in norm(name),
        newest=True,
        missing=(
            f"no MMEW sheet (MMEW_Micro_Exp.xlsx) found in {root}, {root / 'MMEW_Final'} or the "
            "parent folder; pass it explicitly with --sheet PATH"
        ),
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


def _locate(base: Path, dataset: str) -> Callable[[int, Mapping[str, str]], Clip]:
    finder = _Clips(base)

    def clip(line: int, record: Mapping[str, str]) -> Clip:
        subject, name = record["Subject"], record["Filename"]
        sample_id = f"{dataset}/{subject or '?'}/{name or '?'}"
        if not subject or not name:
            raise RowError(sample_id, "Subject or Filename is empty")
        folder = finder.folder(record["Estimated Emotion"], name, sample_id)
        return Clip(sample_id, subject, name, folder)

    return clip


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


CORPUS = clip_corpus("mmew", FPS, SHEET, find_sheet, frames_dir, _locate)
# load_mmew(root, sheet=None, dataset="mmew", fps=FPS, corrections=None) -> LoadResult
load_mmew = CORPUS.load
looks_like = CORPUS.looks_like  # True when `root` holds both the sheet and the frames
