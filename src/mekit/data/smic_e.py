"""SMIC-E (long clips, for spotting): `SMIC-E_raw image/HS_long/SMIC-HS-E/s01/s1_ne_01/image*.jpg`
read through `SMIC-HS-E_annotation.xlsx`.

Each long clip is a folder `{subject}/{clip}` with subject folders zero-padded (`s01` .. `s20`)
and clip folders named as in SMIC (`s1_ne_01`); some copies put the subject folders one level
down (`SMIC-HS-E/HS/s01/...`). Frame files end in the frame number (`image308866.jpg`): the
SMIC recording's own numbering, the same numbers SMIC-HS's `image308866.bmp` files carry.
ROOT may be `SMIC-E_raw image`, `HS_long`, `SMIC-HS-E` or the folder holding the subject
folders. The sheet is looked for from the subject folders' parent up to ROOT: a .xlsx/.xls/.csv
with "annotation" in its name that names no other subset (`SMIC-HS-E_annotation.xlsx`, in
`HS_long/` or in `SMIC-HS-E/`; `SMIC_VIS_E_annotation.xlsx` for VIS).

The HS sheet (header on row 1; blank columns between the blocks) has the columns Subject,
Filename, OnsetF, OffsetF, Onset2F, Offset2F, Onset3F, Offset3F, FirstF, LastF, TotalMF1,
TotalMF2, TotalMF3, TotalVL and Emotion: one row per long clip with up to three
micro-expressions (the 2nd and 3rd pairs are empty for most clips). OnsetF/OffsetF are absolute
frame numbers (the numbers in the image file names), FirstF/LastF the long clip's first and last
frame, TotalMF the event's length and TotalVL the clip's. Reference code turns them into
positions in the clip with `OnsetF - FirstF + 1`; mekit keeps the file numbers. A copy whose
frames were renumbered from 1 (FirstF beyond the last number on disk) is read by subtracting
FirstF - 1. There is no apex column (an ApexF / Apex2F / Apex3F column is used if a copy has
one): the events' apex is None and the samples' the midpoint (`apex_source="midpoint"`). Emotion
is negative, positive or surprise; where the column is missing or empty it is taken from the
clip name (`_ne_`, `_po_`, `_sur_`). Frames are 100 fps for HS, 25 fps for VIS and NIR.

What the loader returns:
- `videos`: one `LongVideo` per clip folder that has a sheet row (`smic_e/s01/s1_ne_01`), with
  its micro events (kind "micro"). Clip folders without a row, and clips none of whose events is
  usable, are left out and listed in `skipped` (every SMIC-E clip holds a micro-expression, so
  neither would be a true negative for spotting).
- `samples`: one recognition `Sample` per event, cut from the clip's frames onset..offset:
  id `smic_e/s01/s1_ne_01/308866` (the sheet's OnsetF), clip `s1_ne_01/308866`, `video` the
  clip folder.

Corrections are keyed by those event ids and written in the sheet's frame numbers; they apply to
the event and its sample alike. An event with no OnsetF or OffsetF, an offset before its onset,
or no frame of the clip in onset..offset is left out of its video, with why; an event whose
frames are only partly on disk stays in the video for spotting and only its sample is skipped.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pandas as pd

from mekit.data.corpus_spec import corpus_root, log_skipped
from mekit.data.corrections import Corrections
from mekit.data.records import (
    Frames,
    check_interval,
    frame_number,
    long_video,
    make_event,
    make_sample,
    numbered_frames,
    subset_frames,
)
from mekit.data.schema import Event, LoadResult, LongVideo, RowError, Sample, Skipped
from mekit.data.sheets import read_book, read_excel
from mekit.data.smic import (
    FPS,
    SUBJECT_DIR,
    SUBSETS,
    check_subset,
    frame_number_of,
    near_midpoint,
    subject_key,
    subset_folder,
    visible_dirs,
)
from mekit.errors import MekitError

log = logging.getLogger(__name__)

DATASETS = {"HS": "smic_e", "VIS": "smic_e_vis", "NIR": "smic_e_nir"}
# The released SMIC-HS-E sheet's header row, blank cells included.
SHEET_HEADER: tuple[str | None, ...] = (
    "Subject",
    "Filename",
    None,
    "OnsetF",
    "OffsetF",
    "Onset2F",
    "Offset2F",
    "Onset3F",
    "Offset3F",
    None,
    "FirstF",
    "LastF",
    "TotalMF1",
    "TotalMF2",
    "TotalMF3",
    "TotalVL",
    "Emotion",
)
REQUIRED = ("Subject", "Filename", "OnsetF", "OffsetF")
# canonical column -> the spellings it is read from (lower case, letters and digits only)
COLUMNS: dict[str, tuple[str, ...]] = {
    "Subject": ("subject",),
    "Filename": ("filename",),
    "OnsetF": ("onsetf", "onsetf1", "onset1f"),
    "OffsetF": ("offsetf", "offsetf1", "offset1f"),
    "Onset2F": ("onset2f", "onsetf2"),
    "Offset2F": ("offset2f", "offsetf2"),
    "Onset3F": ("onset3f", "onsetf3"),
    "Offset3F": ("offset3f", "offsetf3"),
    "ApexF": ("apexf", "apexf1", "apex1f"),
    "Apex2F": ("apex2f", "apexf2"),
    "Apex3F": ("apex3f", "apexf3"),
    "FirstF": ("firstf",),
    "Emotion": ("emotion",),
}
EVENTS = (("OnsetF", "ApexF", "OffsetF"), ("Onset2F", "Apex2F", "Offset2F"))
EVENTS += (("Onset3F", "Apex3F", "Offset3F"),)
_CLIP_DIR = re.compile(r"^s\d+_[a-z]+_\d+", re.IGNORECASE)
_SUBSET_DIR = re.compile(r"(HS|VIS|NIR)(?:_long)?|SMIC[-_ ](HS|VIS|NIR)[-_ ]E", re.IGNORECASE)
_CODES = {"ne": "negative", "po": "positive", "sur": "surprise"}
_RAW_NAMES = ("SMIC-E_raw image", "SMIC_E_raw image", "SMIC-E_raw_image", "SMIC_E_raw_image")


def frames_dir(root: Path, subset: str = "HS") -> Path:
    """The folder holding the subset's subject folders (`s01/s1_ne_01/...`)."""
    subset = check_subset(subset, "SMIC-E")
    folder, others = subset_folder(root, subset, _bases, f"SMIC-{subset}-E clip folders")
    if folder is not None:
        return folder
    hint = f"; {root} holds {', '.join(others)} (subset=...)" if others else ""
    raise MekitError(
        f"no SMIC-{subset}-E clip folders (s01/s1_ne_01/image*.jpg, ...) found in {root}, "
        f"{root}/SMIC-{subset}-E, {root}/{subset}_long/SMIC-{subset}-E (or their {subset}/); "
        f"point --corpus at the folder that holds them{hint}"
    )


def find_sheet(root: Path, base: Path, subset: str = "HS") -> Path:
    """The annotation sheet nearest the clip folders, from `base` up to `root`."""
    subset = check_subset(subset, "SMIC-E")
    for folder in _upwards(base, root):
        hits = _sheets_in(folder, subset)
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise MekitError(
                f"several SMIC-E annotation sheets in {folder}: "
                f"{', '.join(p.name for p in hits)}; pass the one to use with --sheet PATH"
            )
    raise MekitError(
        f"no SMIC-{subset}-E annotation sheet (e.g. SMIC-{subset}-E_annotation.xlsx) found "
        f"between {base} and {root}; pass it explicitly with --sheet PATH"
    )


def read_sheet(path: Path, subset: str = "HS") -> tuple[str, list[tuple[int, dict[str, str]]]]:
    """(sheet name, rows as (spreadsheet row, {canonical column: text})) of the annotation sheet:
    the sheet named after the subset if the workbook has one, else the first with the columns."""

    def read(p: Path) -> dict[str, pd.DataFrame]:
        if p.suffix.lower() == ".csv":
            return {p.stem: pd.read_csv(p, dtype=str)}
        return read_excel(p, sheet_name=None, dtype=str)

    books = read_book(path, "annotation sheet", read)
    if not books:
        raise MekitError(f"annotation sheet {path} has no sheets")
    order = sorted(books, key=lambda name: str(name).strip().upper() != subset)
    for name in order:
        renamed = _canonical(books[name].columns)
        if set(REQUIRED) <= set(renamed.values()):
            df = books[name].rename(columns=renamed)
            rows = []
            for line, values in enumerate(df.itertuples(index=False), start=2):
                record = dict(zip(df.columns, values, strict=True))
                cells = {c: _text(record.get(c)) for c in COLUMNS if c in record}
                if any(cells.values()):
                    rows.append((line, cells))
            return str(name), rows
    first = books[order[0]]
    missing = sorted(set(REQUIRED) - set(_canonical(first.columns).values()))
    raise MekitError(
        f"annotation sheet {path} lacks column(s) {', '.join(missing)}; "
        f"found {', '.join(map(str, first.columns))}"
    )


def load_smic_e(
    root: Path | str,
    sheet: Path | str | None = None,
    *,
    subset: str = "HS",
    dataset: str | None = None,
    fps: float | None = None,
    corrections: Corrections | None = None,
) -> LoadResult:
    """SMIC-E long clips with their micro events, and one recognition sample per event."""
    root = Path(root)
    subset = check_subset(subset, "SMIC-E")
    corpus_root(root)
    dataset = dataset or DATASETS[subset]
    fps = FPS[subset] if fps is None else fps
    base = frames_dir(root, subset)
    sheet_path = Path(sheet) if sheet is not None else find_sheet(root, base, subset)
    sheet_name, rows = read_sheet(sheet_path, subset)
    folders = _clip_folders(base)
    frames: dict[Path, Frames] = {}
    events: dict[Path, list[Event]] = {}
    ids: dict[Path, str] = {}
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        where = f"{sheet_path.name} sheet '{sheet_name}' row {line}"
        subject, clip = _subject(cells["Subject"], base), cells["Filename"]
        video_id = f"{dataset}/{subject}/{clip or '?'}"
        folder = base / subject / clip
        if not clip:
            skipped.append(Skipped(video_id, f"Filename is empty ({where})"))
            continue
        pairs = [(k, e) for k, e in enumerate(EVENTS, 1) if cells.get(e[0]) or cells.get(e[2])]
        if not pairs:
            skipped.append(Skipped(video_id, f"no OnsetF/OffsetF on the row ({where})"))
            continue
        if folder.is_dir() and folder not in frames:
            frames[folder] = numbered_frames(folder, frame_number_of)
        ids[folder] = video_id
        events.setdefault(folder, [])
        for k, columns in pairs:
            try:
                event, sample_id, corrected = _event(
                    cells, columns, k, video_id, folder, frames, corrections
                )
                if sample_id in seen:
                    raise RowError(sample_id, f"the event repeats row {seen[sample_id]}")
                seen[sample_id] = line
            except RowError as e:
                skipped.append(Skipped(e.sample_id, f"{e.reason} ({where})"))
                continue
            events[folder].append(event)
            try:
                sample = _sample(
                    sample_id, dataset, subject, clip, event, folder, frames[folder], fps
                )
            except RowError as e:
                reason = f"{e.reason}; the event is kept for spotting ({where})"
                skipped.append(Skipped(e.sample_id, reason))
                continue
            if corrected:
                sample = dataclasses.replace(sample, apex_source="corrected")
            samples.append(sample)
    videos = _long_videos(events, frames, ids, dataset, fps, skipped)
    for folder in folders:
        if folder not in events:
            video_id = f"{dataset}/{folder.parent.name}/{folder.name}"
            reason = f"clip folder {folder} has no row in {sheet_path.name}; left out"
            skipped.append(Skipped(video_id, reason))
    log_skipped(log, skipped)
    log.info(
        "%s: %d long clips, %d micro samples from %s (%d skipped)",
        dataset,
        len(videos),
        len(samples),
        base,
        len(skipped),
    )
    return LoadResult(tuple(samples), tuple(skipped), tuple(videos))


def _long_videos(
    events: dict[Path, list[Event]],
    frames: dict[Path, Frames],
    ids: dict[Path, str],
    dataset: str,
    fps: float,
    skipped: list[Skipped],
) -> list[LongVideo]:
    """One long video per clip folder with at least one usable event (the others are added
    to `skipped`); folders whose frames were never found are left out silently: their events
    were skipped already."""
    videos = []
    for folder, found in events.items():
        if folder not in frames:
            continue
        if not found:
            reason = "no usable event; left out of spotting (see the skipped events)"
            skipped.append(Skipped(ids[folder], reason))
            continue
        subject = folder.parent.name  # ids[folder] is {dataset}/{subject}/{folder.name}
        videos.append(long_video(dataset, subject, folder.name, fps, found, frames[folder]))
    return videos


def looks_like(root: Path) -> bool:
    """True when `root` holds SMIC-E clip folders (`s01/s1_ne_01/`, no `micro/` level) with an
    annotation sheet between them and `root`."""
    try:
        for subset in SUBSETS:
            for base in _bases(root, subset):
                if any(_sheets_in(folder, subset) for folder in _upwards(base, root)):
                    return True
    except OSError:
        return False
    return False


def _event(
    cells: dict[str, str],
    columns: tuple[str, str, str],
    k: int,
    video_id: str,
    folder: Path,
    frames: dict[Path, Frames],
    corrections: Corrections | None,
) -> tuple[Event, str, bool]:
    """(event in the clip's file numbers, event id, whether a correction set the apex)."""
    on_col, apex_col, off_col = columns
    onset = frame_number(cells.get(on_col, ""), on_col, f"{video_id}/event{k}")
    sample_id = f"{video_id}/{onset}" if onset is not None else f"{video_id}/event{k}"
    apex = frame_number(cells.get(apex_col, ""), apex_col, sample_id)
    offset = frame_number(cells.get(off_col, ""), off_col, sample_id)
    emotion = cells.get("Emotion") or _emotion_of(folder.name)
    fields = {"onset": onset, "apex": apex, "offset": offset, "emotion": emotion, "aus": ""}
    if corrections is not None:
        fields = corrections.apply(sample_id, fields)  # raises RowError for an exclusion
    onset, apex, offset = fields["onset"], fields["apex"], fields["offset"]
    if folder not in frames:
        raise RowError(sample_id, f"clip folder {folder} is missing")
    if onset is None:
        raise RowError(sample_id, f"{on_col} is empty")
    if offset is None:
        raise RowError(sample_id, f"{off_col} is empty")
    check_interval(sample_id, onset, apex, offset)
    numbers = frames[folder][0]
    if not numbers:
        raise RowError(sample_id, f"no image frames in {folder}")
    shift = _shift(numbers, cells.get("FirstF", ""))
    onset, offset = onset - shift, offset - shift
    apex = None if apex is None else apex - shift
    if offset < numbers[0] or onset > numbers[-1]:
        raise RowError(
            sample_id,
            f"onset..offset {onset}..{offset} lies outside the frames {numbers[0]}..{numbers[-1]}"
            f" of {folder} (OnsetF/OffsetF are read as the numbers in the image file names)",
        )
    shifted = {**fields, "onset": onset, "apex": apex, "offset": offset}
    event = make_event(sample_id, shifted, "micro")
    return event, sample_id, bool(fields.get("apex_source"))


def _sample(
    sample_id: str,
    dataset: str,
    subject: str,
    clip: str,
    event: Event,
    folder: Path,
    frames: Frames,
    fps: float,
) -> Sample:
    cut = subset_frames(*frames, event.onset, event.offset)
    apex = event.apex
    stand_in = None
    if apex is None:
        stand_in = near_midpoint(cut[0], event.onset, event.offset)
    sample = make_sample(
        sample_id=sample_id,
        dataset=dataset,
        subject=subject,
        clip=sample_id.split("/", 2)[2],
        onset=event.onset,
        apex=apex if stand_in is None else stand_in,
        offset=event.offset,
        emotion=event.emotion,
        aus=event.aus,
        fps=fps,
        folder=folder,
        frames=cut,
        kind="micro",
        video=folder,
    )
    if stand_in is not None:
        sample = dataclasses.replace(sample, apex_source="midpoint")
    return sample


def _shift(numbers: tuple[int, ...], first_cell: str) -> int:
    """FirstF - 1 for a copy whose frames were renumbered from 1, else 0."""
    try:
        first = frame_number(first_cell, "FirstF", "")
    except RowError:
        return 0  # a note instead of a number in FirstF: the numbers are used as they are
    if first is not None and numbers and numbers[0] == 1 and first > numbers[-1]:
        return first - 1
    return 0


def _bases(root: Path, subset: str) -> list[Path]:
    candidates: list[Path] = []
    e_names = (f"SMIC-{subset}-E", f"SMIC_{subset}_E")
    for top in (root, *(root / n for n in _RAW_NAMES)):
        for middle in (top, top / f"{subset}_long"):
            for e in (middle, *(middle / n for n in e_names)):
                candidates += [e, e / subset]
    found: list[Path] = []
    for c in candidates:
        if c not in found and c.is_dir() and _names_subset(c, subset) and _has_clips(c):
            found.append(c)
    return found


def _names_subset(path: Path, subset: str) -> bool:
    """False when the last folders of `path` name another subset (`VIS`, `VIS_long`,
    `SMIC-VIS-E`) and none names this one."""
    named = set()
    for part in path.parts[-4:]:
        match = _SUBSET_DIR.fullmatch(part)
        if match:
            named.add((match.group(1) or match.group(2)).upper())
    return subset in named or not named


def _has_clips(folder: Path) -> bool:
    for subject in visible_dirs(folder):
        if SUBJECT_DIR.match(subject.name) and any(
            _CLIP_DIR.match(p.name) for p in visible_dirs(subject)
        ):
            return True
    return False


def _clip_folders(base: Path) -> list[Path]:
    subjects = sorted((p for p in visible_dirs(base) if SUBJECT_DIR.match(p.name)), key=subject_key)
    return [c for s in subjects for c in sorted(visible_dirs(s)) if _CLIP_DIR.match(c.name)]


def _sheets_in(folder: Path, subset: str) -> list[Path]:
    if not folder.is_dir():
        return []
    hits = []
    for p in folder.iterdir():
        if p.suffix.lower() not in (".xlsx", ".xls", ".csv") or p.name.startswith(("~$", ".")):
            continue
        tokens = set(re.split(r"[^A-Z]+", p.stem.upper()))
        if "annotation" in p.name.lower() and not tokens & (set(SUBSETS) - {subset}):
            hits.append(p)
    return sorted(hits)


def _upwards(base: Path, root: Path) -> list[Path]:
    """Where a sheet may lie: `base` and its parents up to `root`, and at least two levels
    above `base` even past `root` (`HS_long/` holds the sheet when ROOT is `SMIC-HS-E/HS`)."""
    out = [base]
    for folder in base.parents:
        if len(out) > 2 and (folder == root or root not in folder.parents):
            if folder == root:
                out.append(folder)
            break
        out.append(folder)
    return out


def _subject(cell: str, base: Path) -> str:
    """The subject folder of a Subject cell (1 -> `s01`, or `s1` where the copy names it so)."""
    text = cell.strip().lower().removeprefix("s")
    try:
        number = int(float(text))
    except ValueError:
        return cell.strip() or "?"
    for name in (f"s{number:02d}", f"s{number}"):
        if (base / name).is_dir():
            return name
    return f"s{number:02d}"


def _emotion_of(clip: str) -> str:
    """negative / positive / surprise from a clip name (`s1_ne_01`), else ""."""
    parts = clip.lower().split("_")
    return _CODES.get(parts[1], "") if len(parts) > 2 else ""


def _canonical(columns: pd.Index) -> dict[object, str]:
    """{column as found: canonical name} for the columns mekit reads (first spelling wins)."""
    spelled = {alias: name for name, aliases in COLUMNS.items() for alias in aliases}
    out: dict[object, str] = {}
    for c in columns:
        name = spelled.get(re.sub(r"[^a-z0-9]", "", str(c).lower()))
        if name is not None and name not in out.values():
            out[c] = name
    return out


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    text = str(value).strip()
    return "" if text.lower() in ("nan", "none") else text
