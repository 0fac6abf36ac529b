"""CAS(ME)^2 (spotting and recognition): `rawpic/s15/15_0101disgustingteeth/img1.jpg` long videos
at 30 fps, read through `code_final.xlsx` (also shipped as `CAS(ME)^2code_final.xlsx`).

ROOT holds `rawpic/` (or `cropped/`, `rawpic_crop/`, `rawpic_aligned/`; choose with `frames=`)
and/or `rawvideo/`, or is itself the folder of subject folders (`s15`, `s16`, ...). Each subject
folder holds one folder of frames per long video, named `{participant}_{code}{title}`
(`15_0101disgustingteeth`: video code 0101), frames `img1.jpg`, `img2.jpg`, ... (the number is
the frame number the sheet uses). `rawvideo/s15/15_0101disgustingteeth.avi` (or .mp4) is used
for a video whose frames are not there: the `LongVideo` then points at the file and its micro
events give no recognition sample (skipped, with why).

The workbook has no header row and three sheets (found by name, else by position):
1. the events ('CASFEcode_final' or 'CASMEcode_final'), one row each: participant number,
   event name (`disgust1_1`: event 1 of video `disgust1`), onset, apex, offset, AUs, emotion class
   (positive / negative / surprise / others), expression type ('micro-expression' or
   'macro-expression'), self-reported emotion;
2. 'naming rule1': (folder number, subject folder, participant number), e.g. (15, s15, 1);
3. 'naming rule2': (video code, video name), e.g. (0101, disgust1).

What the loader returns:
- `videos`: one `LongVideo` per video on disk (`casme_sq/s15/15_0101disgustingteeth`), with every
  annotated event of it (kind "micro"/"macro"), sorted by onset; videos without events are
  included (all negatives for spotting).
- `samples`: one recognition `Sample` per micro event (`kinds=` widens it) with id
  `casme_sq/s15/disgust1_1` (clip = the event name), frames cut from the video's onset..offset,
  `video` = the video folder.

Conventions (the ones the MEGC spotting evaluation code uses), never applied silently:
- Apex 0 (or empty) is "not annotated": `Event.apex` is None and the sample uses the midpoint
  (`apex_source="midpoint"`).
- Offset 0 (or empty) is "not annotated". `missing_offset="mirror"` (default) fills it as
  2*apex - onset, capped at the video's last frame, as the MEGC 2020/2021 spotting baseline
  does for its ground truth; "apex" uses the apex (SoftNet, MEAN and the CAS(ME)^2 MDMD baseline
  do this: the interval ends at the apex); "skip" leaves the row out. Every fill is logged and
  listed in `LoadResult.corrections` as (id, "offset", "0", new, reason); a correction file entry
  for the offset takes precedence.
- A row whose annotation is unusable (onset 0, offset before onset, apex outside the interval,
  unknown expression type, unknown participant or video name, no video on disk) is skipped with
  the reason and its event left out of the video. An event running past the end of its video
  stays in the video for spotting; only its recognition sample is skipped, with why.
Corrections (by sample id, e.g. `casme_sq/s15/disgust1_1`) apply to the event and the sample.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd

from mekit.data.corpus_spec import Gathered, corpus_root, first_holding, holds, log_skipped
from mekit.data.corrections import Corrections
from mekit.data.records import event_sample, frame_number, long_video, make_event, numbered_frames
from mekit.data.schema import Event, LoadResult, RowError, Sample
from mekit.data.sheets import cell, find_workbook, norm, read_book
from mekit.errors import MekitError

log = logging.getLogger(__name__)

FPS = 30.0
# The events sheet's columns, in order (the sheet has no header row).
EVENT_COLUMNS: tuple[str, ...] = (
    "participant",
    "event name",
    "onset",
    "apex",
    "offset",
    "AUs",
    "emotion class",
    "expression type",
    "self-reported emotion",
)
_PARTICIPANT, _NAME, _ONSET, _APEX, _OFFSET, _AUS, _CLASS, _TYPE, _SELF = range(9)
SHEET_NAMES = ("CASFEcode_final", "naming rule1", "naming rule2")  # as released
FRAME_FOLDERS = ("rawpic", "cropped", "rawpic_crop", "rawpic_aligned")
VIDEO_FOLDERS = ("rawvideo",)
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".wmv")
MISSING_OFFSET = ("mirror", "apex", "skip")
LABELS = ("class", "self_report")
_SUBJECT_DIR = re.compile(r"^s\d+$", re.IGNORECASE)
_VIDEO = re.compile(r"^(\d+)_(\d{4})")  # 15_0101disgustingteeth -> code 0101


@dataclass(frozen=True)
class Sheet:
    """The events of code_final.xlsx (rows of text cells, by spreadsheet row) and its naming
    rules: participant number -> subject folder, video name -> video code."""

    path: Path
    name: str
    rows: tuple[tuple[int, tuple[str, ...]], ...]
    folders: dict[int, str]
    codes: dict[str, str]

    def where(self, row: int) -> str:
        return f"{self.path.name} sheet '{self.name}' row {row}"


@dataclass
class _Video:
    subject: str
    name: str
    folder: Path | None = None
    file: Path | None = None
    events: list[Event] = field(default_factory=list)
    _frames: tuple[tuple[int, ...], tuple[Path, ...]] | None = None

    @property
    def frames(self) -> tuple[tuple[int, ...], tuple[Path, ...]]:
        if self._frames is None:
            self._frames = numbered_frames(self.folder) if self.folder else ((), ())
        return self._frames


def find_sheet(root: Path) -> Path:
    """The annotation workbook in `root` or its parent: a .xlsx/.xls named *code_final*."""
    return find_workbook(
        (root, root.parent),
        lambda name: "codefinal" in norm(name),
        missing=(
            "no CAS(ME)^2 annotation workbook (code_final.xlsx or CAS(ME)^2code_final.xlsx) "
            f"found in {root} or its parent; pass it explicitly with --sheet PATH"
        ),
    )


def frames_dir(root: Path, frames: str | None = None) -> Path | None:
    """The folder of subject folders with frames: root/rawpic (or `frames`), else None."""
    if frames is not None:
        folder = root / frames
        if not holds(folder, _SUBJECT_DIR):
            raise MekitError(f"no subject folders (s15, s16, ...) in {folder}; check frames=")
        return folder
    return first_holding((*(root / name for name in FRAME_FOLDERS), root), _SUBJECT_DIR)


def videos_dir(root: Path) -> Path | None:
    """root/rawvideo when it holds subject folders of video files."""
    return first_holding((root / name for name in VIDEO_FOLDERS), _SUBJECT_DIR)


def read_sheet(path: Path) -> Sheet:
    """The events and naming rules of code_final.xlsx; MekitError naming what is missing."""
    book = read_book(path, "annotation workbook")
    names = list(book)
    events = _pick(names, 0, lambda n: "code" in n and "rule" not in n, path, "the events")
    rule1 = _pick(names, 1, lambda n: "rule1" in n, path, "'naming rule1'")
    rule2 = _pick(names, 2, lambda n: "rule2" in n, path, "'naming rule2'")
    df = book[events].dropna(how="all")
    if df.shape[1] < _TYPE + 1:
        raise MekitError(
            f"{path} sheet '{events}' has {df.shape[1]} columns; the events sheet has no header "
            f"and its columns are {', '.join(EVENT_COLUMNS)}: column {df.shape[1] + 1} "
            f"'{EVENT_COLUMNS[df.shape[1]]}' is missing"
        )
    rows = [
        (int(i) + 1, tuple(cell(v) for v in r)) for i, r in zip(df.index, df.values, strict=True)
    ]
    if rows and _int(rows[0][1][_ONSET]) is None and re.search("[a-z]", rows[0][1][_ONSET], re.I):
        log.info(
            "%s sheet '%s': row %d looks like a header; skipped", path.name, events, rows[0][0]
        )
        rows = rows[1:]
    types = [r[_TYPE].lower() for _, r in rows]
    if rows and not any("micro" in t or "macro" in t for t in types):
        raise MekitError(
            f"{path} sheet '{events}': column {_TYPE + 1} should be the "
            f"'{EVENT_COLUMNS[_TYPE]}' (micro-expression / macro-expression) but holds "
            f"{', '.join(sorted(set(types))[:5])}; the columns (no header) must be "
            f"{', '.join(EVENT_COLUMNS)}"
        )
    folders = _rule1(book[rule1])
    codes = _rule2(book[rule2])
    for what, found, sheet_name in (
        ("(folder number, subject folder, participant number)", folders, rule1),
        ("(video code, video name)", codes, rule2),
    ):
        if not found:
            raise MekitError(f"{path} sheet '{sheet_name}' has no rows of {what}")
    return Sheet(path, events, tuple(rows), folders, codes)


def load_casme_sq(
    root: Path | str,
    sheet: Path | str | None = None,
    *,
    dataset: str = "casme_sq",
    fps: float = FPS,
    corrections: Corrections | None = None,
    frames: str | None = None,
    missing_offset: str = "mirror",
    label: str = "class",
    kinds: tuple[str, ...] = ("micro",),
) -> LoadResult:
    """Long videos with their events, and one recognition sample per micro event.

    `frames` names the frames folder under ROOT (default: the first of rawpic, cropped,
    rawpic_crop, rawpic_aligned); `missing_offset` is "mirror", "apex" or "skip" (see the module
    doc); `label` is "class" (the emotion class column) or "self_report"; `kinds` are the event
    kinds that also become recognition samples.
    """
    root = corpus_root(root)
    if missing_offset not in MISSING_OFFSET:
        raise MekitError(f"missing_offset must be one of {', '.join(MISSING_OFFSET)}")
    if label not in LABELS:
        raise MekitError(f"label must be one of {', '.join(LABELS)}")
    sheet_path = Path(sheet) if sheet is not None else find_sheet(root)
    table = read_sheet(sheet_path)
    if label == "self_report" and not any(len(r) > _SELF for _, r in table.rows):
        raise MekitError(f"{sheet_path} has no '{EVENT_COLUMNS[_SELF]}' column (column 9)")
    videos = _videos(root, frames)
    out = Gathered()
    fills: list[tuple[str, str, str, str, str]] = []
    for line, cells in table.rows:
        try:
            video, event, sample_id, corrected, fill = _event(
                cells, table, videos, dataset, label, missing_offset, corrections
            )
        except RowError as e:
            out.skip(e, table.where(line))
            continue
        video.events.append(event)
        if fill is not None:
            fills.append(fill)
            log.warning("%s: offset filled: %s", fill[0], fill[4])
        if event.kind not in kinds:
            continue
        out.add_event_sample(
            line,
            sample_id,
            partial(_sample, sample_id, cells[_NAME], video, event, dataset, fps),
            corrected=corrected,
            repeat="event name repeats row {row}",
            where=table.where(line),
        )
    long_videos = tuple(
        long_video(
            dataset,
            v.subject,
            v.name,
            fps,
            v.events,
            v.frames,
            video=None if v.folder is not None else v.file,
        )
        for _, v in sorted(videos.items(), key=lambda kv: _video_key(kv[0]))
    )
    log_skipped(log, out.skipped)
    counts = Counter(e.kind for v in long_videos for e in v.events)
    log.info(
        "%s: %d videos (%d micro, %d macro events), %d samples from %s (%d skipped, "
        "%d offsets filled)",
        dataset,
        len(long_videos),
        counts["micro"],
        counts["macro"],
        len(out.samples),
        root,
        len(out.skipped),
        len(fills),
    )
    return LoadResult(tuple(out.samples), tuple(out.skipped), long_videos, tuple(fills))


def looks_like(root: Path) -> bool:
    """True when `root` has CAS(ME)^2's layout: a *code_final* workbook and subject folders
    (s15, ...) in rawpic/ (or cropped/, rawvideo/, or root itself)."""
    try:
        find_sheet(root)
        return frames_dir(root) is not None or videos_dir(root) is not None
    except (MekitError, OSError):
        return False


def _videos(root: Path, frames: str | None) -> dict[tuple[str, str], _Video]:
    """Every long video on disk by (subject folder, video code): frames folders first, then
    video files of videos whose frames are not there."""
    pictures, movies = frames_dir(root, frames), videos_dir(root)
    if pictures is None and movies is None:
        raise MekitError(
            f"no subject folders (s15, s16, ...) found in {root}/rawpic, {root}/rawvideo or "
            f"{root}; point --corpus at the CAS(ME)^2 folder that holds rawpic/"
        )
    found: dict[tuple[str, str], _Video] = {}
    for base, want_dirs in ((pictures, True), (movies, False)):
        if base is None:
            continue
        for subject_dir in sorted(p for p in base.iterdir() if _SUBJECT_DIR.match(p.name)):
            subject = subject_dir.name.lower()
            for item in sorted(subject_dir.iterdir()):
                match = _VIDEO.match(item.name)
                if match is None:
                    continue
                key = (subject, match.group(2))
                if want_dirs and item.is_dir():
                    found.setdefault(key, _Video(subject, item.name, folder=item))
                elif not want_dirs and item.suffix.lower() in VIDEO_SUFFIXES:
                    if key in found:
                        found[key].file = found[key].file or item
                    else:
                        found[key] = _Video(subject, item.stem, file=item)
    return found


def _event(
    cells: tuple[str, ...],
    table: Sheet,
    videos: dict[tuple[str, str], _Video],
    dataset: str,
    label: str,
    missing_offset: str,
    corrections: Corrections | None,
) -> tuple[_Video, Event, str, bool, tuple[str, str, str, str, str] | None]:
    """(video, event, sample id, whether a correction set the apex, the offset fill if any) of
    one events row, corrections applied."""
    participant = _int(cells[_PARTICIPANT])
    name = cells[_NAME]
    subject = table.folders.get(participant) if participant is not None else None
    sample_id = f"{dataset}/{subject or cells[_PARTICIPANT] or '?'}/{name or '?'}"
    if subject is None:
        raise RowError(
            sample_id, f"participant '{cells[_PARTICIPANT]}' is not in sheet 'naming rule1'"
        )
    if not name:
        raise RowError(sample_id, "the event name is empty")
    code = next(
        (
            table.codes[key]
            for key in (name.rsplit("_", 1)[0], name.split("_")[0], name)
            if key in table.codes
        ),
        None,
    )
    if code is None:
        raise RowError(sample_id, f"video name of '{name}' is not in sheet 'naming rule2'")
    kind = cells[_TYPE].lower()
    if "micro" in kind:
        kind = "micro"
    elif "macro" in kind:
        kind = "macro"
    else:
        raise RowError(sample_id, f"expression type '{cells[_TYPE]}' is neither micro nor macro")
    onset = _frame(cells[_ONSET], "onset", sample_id)
    apex = _frame(cells[_APEX], "apex", sample_id)
    offset = _frame(cells[_OFFSET], "offset", sample_id)
    emotion = cells[_CLASS] if label == "class" else (cells[_SELF] if len(cells) > _SELF else "")
    fields = {"onset": onset, "apex": apex, "offset": offset, "emotion": emotion}
    fields["aus"] = cells[_AUS]
    if corrections is not None:
        fields = corrections.apply(sample_id, fields)  # raises RowError for an exclusion
    onset, apex, offset = fields["onset"], fields["apex"], fields["offset"]
    video = videos.get((subject.lower(), code))
    if video is None:
        raise RowError(
            sample_id,
            f"no video {subject}/*_{code}* (frames folder or video file) for '{name}'",
        )
    if onset is None:
        raise RowError(sample_id, "onset is 0 or empty (not annotated); add a correction")
    fill = None
    if offset is None:
        offset, fill = _fill_offset(sample_id, onset, apex, video, missing_offset, table)
    event = make_event(sample_id, {**fields, "offset": offset}, kind)
    return video, event, sample_id, bool(fields.get("apex_source")), fill


def _fill_offset(
    sample_id: str, onset: int, apex: int | None, video: _Video, policy: str, table: Sheet
) -> tuple[int, tuple[str, str, str, str, str]]:
    if policy == "skip":
        raise RowError(sample_id, "offset is 0 (not annotated) and missing_offset='skip'")
    if apex is None:
        raise RowError(
            sample_id, "offset and apex are both 0 (not annotated); add a correction for them"
        )
    if policy == "apex":
        offset, how = apex, "the apex (missing_offset='apex')"
    else:
        offset, how = 2 * apex - onset, "2*apex-onset (missing_offset='mirror')"
        numbers = video.frames[0]
        if numbers and offset > numbers[-1]:
            offset, how = numbers[-1], how + f", capped at the video's last frame {numbers[-1]}"
    reason = f"offset 0 (not annotated) in {table.path.name}; filled as {how}"
    return offset, (sample_id, "offset", "0", str(offset), reason)


def _sample(
    sample_id: str, clip: str, video: _Video, event: Event, dataset: str, fps: float
) -> Sample:
    if video.folder is None:
        raise RowError(
            sample_id,
            f"only the video file {video.file} is there; recognition samples need its frames "
            f"(rawpic/{video.subject}/{video.name}/imgN.jpg)",
        )
    return event_sample(
        sample_id,
        event,
        dataset=dataset,
        subject=video.subject,
        clip=clip,
        folder=video.folder,
        frames=video.frames,
        fps=fps,
    )


def _pick(names: list[str], index: int, wanted, path: Path, what: str) -> str:
    hits = [n for n in names if wanted(_norm(n))]
    if hits:
        return hits[0]
    if len(names) > index:
        return names[index]
    raise MekitError(
        f"{path} has {len(names)} sheet(s) ({', '.join(names)}) and none for {what}; "
        f"CAS(ME)^2's code_final.xlsx has three: the events, 'naming rule1' (participant -> "
        "subject folder) and 'naming rule2' (video name -> video code)"
    )


def _rule1(df: pd.DataFrame) -> dict[int, str]:
    folders = {}
    for values in df.values:
        cells = [cell(v) for v in values] + ["", "", ""]
        participant, folder = _int(cells[2]), cells[1]
        if participant is None:
            continue
        if not folder and _int(cells[0]) is not None:
            folder = f"s{_int(cells[0])}"
        elif _int(folder) is not None:
            folder = f"s{_int(folder)}"
        if folder:
            folders[participant] = folder.lower()
    return folders


def _rule2(df: pd.DataFrame) -> dict[str, str]:
    codes = {}
    for values in df.values:
        cells = [cell(v) for v in values] + ["", ""]
        number, name = _int(cells[0]), cells[1]
        if number is not None and name:
            codes[name] = f"{number:04d}"
    return codes


def _frame(cell: str, column: str, sample_id: str) -> int | None:
    """A frame number; None where the sheet has 0 or nothing (CAS(ME)^2's "not annotated")."""
    number = frame_number(cell, column, sample_id)
    return None if number is None or number <= 0 else number


def _video_key(key: tuple[str, str]) -> tuple[int, str]:
    subject, code = key
    digits = re.sub(r"\D", "", subject)
    return (int(digits) if digits else 0, code)


def _int(text: str) -> int | None:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None


def _norm(name: object) -> str:
    """A sheet name as compared: lower-case letters and digits ('naming rule1' -> namingrule1)."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())
