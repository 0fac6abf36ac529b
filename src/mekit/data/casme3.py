"""CAS(ME)^3 part A (recognition): `part_A/data/part_A/spNO.1/a/color/175.jpg` read through
`cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx` (v1: .xls), 30 fps.

Each subject folder (`spNO.1`; some copies write `spNo.1`, so folders are matched ignoring case)
holds one folder per recording, named by the sheet's Filename in lower case (`a` ... `m`), whose
`color/` folder holds the frames `1.jpg`, `2.jpg`, ... (the number is the frame number the sheet
uses; `depth/` is not read). A recording holds several micro-expressions, so a sample's frames
are cut from the recording's onset..offset and its clip is `{filename}_{onset}` (as the official
ME clip release names its folders, `spNO.1_a_175`): ids are `casme3/spNO.1/a_175`, with the
sheet's own onset even when a correction moves it; `video` is the recording's color folder.

ROOT is the folder holding the subject folders, or one above it: `part_A/data/part_A`,
`data/part_A`, `data/part_A_split/part_A` and `data/Compressed_version1_seperate_compress`
(with or without the leading `part_A/`) are looked in. The sheet is looked for in ROOT,
ROOT/annotation, ROOT/part_A, ROOT/part_A/annotation (and .../partA) and ROOT's parent: a
.xlsx/.xls with "ME_label" in its name (not the MaE macro-expression sheet; v2 over v1).
Its sheet 'label' (else the first) has the columns Subject, Filename, Onset, Apex, Offset, AU,
Objective class, emotion; `emotion` (happy, sad, disgust, fear, anger, surprise, others) is the
sample's emotion. Rows without an onset or offset, with the offset before the onset (a few
releases have such rows), or whose frames are missing are skipped with the reason; a missing
apex gives the midpoint (`apex_source="midpoint"`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mekit.data.corpus_spec import RowBuilder, Rows, SheetCorpus, first_holding
from mekit.data.corrections import Corrections
from mekit.data.records import event_sample, frame_number, make_event, numbered_frames
from mekit.data.schema import RowError, Sample
from mekit.data.sheets import find_workbook, open_workbook, read_book, records, select_columns
from mekit.errors import MekitError

FPS = 30.0
SHEET_NAME = "label"
# The official sheet's header row (v2).
SHEET_HEADER: tuple[str, ...] = (
    "Subject",
    "Filename",
    "Onset",
    "Apex",
    "Offset",
    "AU",
    "Objective class",
    "emotion",
)
REQUIRED: tuple[str, ...] = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "emotion")
SHEET_FOLDERS = (
    ".",
    "annotation",
    "annotation/partA",
    "part_A",
    "part_A/annotation",
    "part_A/annotation/partA",
)
FRAME_FOLDERS = (
    ".",
    "part_A",
    "data/part_A",
    "data/part_A_split/part_A",
    "data/Compressed_version1_seperate_compress",
    "part_A/data/part_A",
    "part_A/data/part_A_split/part_A",
    "part_A/data/Compressed_version1_seperate_compress",
)
_SUBJECT_DIR = re.compile(r"^spno\.?\d+$", re.IGNORECASE)


def find_sheet(root: Path) -> Path:
    """The part A ME label sheet (`*ME_label*.xlsx/.xls`, the newest version) near `root`."""
    folders = (*(root / rel for rel in SHEET_FOLDERS), root.parent)
    return find_workbook(
        folders,
        lambda name: "_me_label" in name.lower(),
        newest=True,
        missing=(
            f"no CAS(ME)^3 part A label sheet (cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx) found in "
            f"{root}, its annotation/ or part_A/annotation/ folder or its parent; pass it with "
            "--sheet PATH"
        ),
    )


def frames_dir(root: Path) -> Path:
    """The folder holding the subject folders (spNO.1, ...), `root` or one of FRAME_FOLDERS."""
    folder = first_holding((root / rel for rel in FRAME_FOLDERS), _SUBJECT_DIR)
    if folder is None:
        raise MekitError(
            f"no CAS(ME)^3 subject folders (spNO.1, spNO.2, ...) found in {root} or its "
            "part_A/data/part_A folder; point --corpus at the folder that holds them"
        )
    return folder


def read_sheet(path: Path) -> tuple[str, pd.DataFrame]:
    """(sheet name, table with canonical column names, cells as text) of the label sheet."""

    def read(p: Path) -> tuple[str, pd.DataFrame]:
        with open_workbook(p) as book:
            names = book.sheet_names
            name = next((n for n in names if str(n).strip().lower() == SHEET_NAME), names[0])
            return str(name), pd.read_excel(book, sheet_name=name, dtype=str)

    name, df = read_book(path, "label sheet", read)
    where = f"label sheet {path} (sheet '{name}')"
    return name, select_columns(df, REQUIRED, where, aliases={"actionunits": "AU"})


def _rows(path: Path) -> tuple[Rows, Callable[[int], str]]:
    name, table = read_sheet(path)
    return records(table), lambda line: f"{path.name} sheet '{name}' row {line}"


def _builder(base: Path, dataset: str, fps: float, corrections: Corrections | None) -> RowBuilder:
    finder = _Recordings(base)  # one listing of each recording, shared by its samples
    return lambda line, record: _sample(record, finder, dataset, fps, corrections)


class _Recordings:
    """Recording folders found ignoring case (`spNO.1` vs `spNo.1`, `A` vs `a`), and their
    frames, each listed once (a recording has thousands of frames and several samples)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._subjects = _children(base)
        self._clips: dict[str, dict[str, Path]] = {}
        self._frames: dict[Path, tuple[tuple[int, ...], tuple[Path, ...]]] = {}

    def folder(self, subject: str, filename: str, sample_id: str) -> Path:
        subject_dir = self._subjects.get(subject.lower())
        if subject_dir is None:
            raise RowError(sample_id, f"subject folder {self.base / subject} is missing")
        if subject_dir not in self._clips:
            self._clips[subject_dir] = _children(subject_dir)
        clip_dir = self._clips[subject_dir].get(filename.lower())
        if clip_dir is None:
            raise RowError(sample_id, f"recording folder {subject_dir / filename} is missing")
        color = clip_dir / "color"
        return color if color.is_dir() else clip_dir

    def frames(self, folder: Path) -> tuple[tuple[int, ...], tuple[Path, ...]]:
        if folder not in self._frames:
            self._frames[folder] = numbered_frames(folder)
        return self._frames[folder]


def _sample(
    record: dict[str, str],
    finder: _Recordings,
    dataset: str,
    fps: float,
    corrections: Corrections | None,
) -> Sample:
    subject = record["Subject"]
    filename = record["Filename"].lower()
    onset_cell = record["Onset"]
    sheet_onset = frame_number(onset_cell, "Onset", f"{dataset}/{subject}/{filename}_?")
    clip = f"{filename or '?'}_{sheet_onset if sheet_onset is not None else '?'}"
    sample_id = f"{dataset}/{subject or '?'}/{clip}"
    if not subject or not filename:
        raise RowError(sample_id, "Subject or Filename is empty")
    fields = {
        "onset": sheet_onset,
        "apex": frame_number(record["Apex"], "Apex", sample_id),
        "offset": frame_number(record["Offset"], "Offset", sample_id),
        "emotion": record["emotion"],
        "aus": record["AU"],
    }
    if corrections is not None:
        fields = corrections.apply(sample_id, fields)  # raises RowError for an exclusion
    onset, offset = fields["onset"], fields["offset"]
    for value, column in ((onset, "Onset"), (offset, "Offset")):
        if value is None:
            raise RowError(
                sample_id, f"{column} is empty; add a correction (id,field,value,reason)"
            )
    if offset < onset:  # before the folder is looked for, as the sheet is the problem
        raise RowError(sample_id, f"offset {offset} is before onset {onset}")
    folder = finder.folder(subject, filename, sample_id)
    sample = event_sample(
        sample_id,
        make_event(sample_id, fields, "micro"),
        dataset=dataset,
        subject=subject,
        clip=clip,
        folder=folder,
        frames=finder.frames(folder),
        fps=fps,
    )
    if fields.get("apex_source"):
        sample = dataclasses.replace(sample, apex_source=str(fields["apex_source"]))
    return sample


def _children(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_dir():
            found.setdefault(p.name.lower(), p)
    return found


CORPUS = SheetCorpus(
    "casme3",
    FPS,
    find_sheet,
    frames_dir,
    read=_rows,
    builder=_builder,
    repeat="same subject, Filename and Onset as row {row}",
)
# load_casme3(root, sheet=None, dataset="casme3", fps=FPS, corrections=None) -> LoadResult:
# the samples of CAS(ME)^3 part A; unusable rows are returned in `skipped` with why.
load_casme3 = CORPUS.load
# True when `root` has CAS(ME)^3 part A's layout: spNO.* subject folders and an ME label sheet.
looks_like = CORPUS.looks_like
