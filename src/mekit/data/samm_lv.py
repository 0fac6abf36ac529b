"""SAMM Long Videos (spotting): `SAMM_longvideos/006_1/006_1_0001.jpg` + SAMM_LongVideos_V*.xlsx.

Each long video is a folder named `{subject}_{video}` (`006_1`) of frames whose names end in the
frame number (`006_1_0001.jpg` or `006_1_00001.jpg`: the digit count differs between videos),
at 200 fps. ROOT is the folder holding the video folders, or the folder above it holding
`SAMM_longvideos/`; the sheet is looked for in ROOT and its parent (a .xlsx/.xls with
"LongVideos" in its name; the newest release, V3 over V2 over V1, when several are there).

The sheet ('FACS_Movement_Only' in the releases) has a block of notes above the table (the header
is on row 10); the header row is found by its content. Columns: Subject, Filename, Inducement
Code, Onset, Apex, Offset, Duration, Type, Action Units, Notes. Filename names the event:
`006_1_2` is event 2 of video `006_1`. Type is 'Macro' or 'Micro - 1/2'.

What the loader returns:
- `videos`: one `LongVideo` per video folder (`samm_lv/006/006_1`), with every annotated event
  of that video (kind "micro" when Type starts with "Micro", else "macro"), sorted by onset.
  Videos without events are included (they are all negatives for spotting).
- `samples`: one recognition `Sample` per micro event (`samm_lv/006/006_1_2`; clip = Filename,
  video = the video folder, kind "micro"), its frames cut from the video's onset..offset.

Conventions, following the MEGC spotting evaluation code:
- Apex -1 (or empty) is "not annotated": `Event.apex` is None and the sample uses the midpoint
  (`apex_source="midpoint"`).
- Onset 0 (or empty) is "not annotated": the apex is used as the onset.
- The Long Videos sheet has no emotion column, so `emotion` is "" unless the SAMM micro sheet
  (SAMM_Micro_FACS_Codes_v2.xlsx) is given as `micro_sheet` or lies next to the Long Videos
  sheet or in ROOT: a micro event then takes the Estimated Emotion of the SAMM clip of the same
  video with the same onset frame. Samples with an empty emotion have no class in any scheme.

A row whose annotation is unusable (no offset, offset before onset, apex outside the interval,
unknown Type, missing video folder) is skipped with the reason, and its event is left out of
the video too. An event whose frames run past the end of its video (a few releases have such
offsets) stays in the video for spotting; only its recognition sample is skipped, with why.
Corrections (by event id, e.g. `samm_lv/020/020_6_5`) apply to the event and the sample alike.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from functools import partial
from pathlib import Path

from mekit.data import samm
from mekit.data.corpus_spec import Gathered, corpus_root, first_holding, found, log_skipped
from mekit.data.corrections import Corrections
from mekit.data.records import event_sample, frame_number, long_video, make_event, numbered_frames
from mekit.data.schema import Event, LoadResult, RowError
from mekit.data.sheets import canonical, find_workbook, norm, read_table
from mekit.errors import MekitError

log = logging.getLogger(__name__)

FPS = 200.0
SHEET_NAME = "FACS_Movement_Only"
# The official sheet's header row, as released (V1 to V3).
SHEET_HEADER: tuple[str, ...] = (
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset",
    "Apex",
    "Offset",
    "Duration",
    "Type",
    "Action Units",
    "Notes",
)
HEADER_ROW = 10  # the header's row in the released sheets (9 rows of notes above it)
REQUIRED: tuple[str, ...] = (
    "Subject",
    "Filename",
    "Onset",
    "Apex",
    "Offset",
    "Type",
    "Action Units",
)
_VIDEO_DIR = re.compile(r"^(\d+)_(\d+)$")
_EVENT = re.compile(r"^(\d+_\d+)_(\d+)$")


def find_sheet(root: Path) -> Path:
    """The Long Videos sheet in `root` or its parent: *LongVideos*.xlsx, the newest release."""
    return find_workbook(
        (root, root.parent),
        lambda name: "longvideo" in norm(name),
        newest=True,
        missing=(
            f"no SAMM Long Videos sheet (e.g. SAMM_LongVideos_V3_Release.xlsx) found in {root} "
            "or its parent; pass the sheet explicitly with --sheet PATH"
        ),
    )


def frames_dir(root: Path) -> Path:
    """The folder holding the video folders (006_1, ...): `root` or `root/SAMM_longvideos`."""
    candidates = (root, root / "SAMM_longvideos", root / "SAMM_LongVideos")
    folder = first_holding(candidates, _VIDEO_DIR)
    if folder is None:
        raise MekitError(
            f"no SAMM long-video folders (006_1, 006_2, ...) found in {root} or "
            f"{root / 'SAMM_longvideos'}; point --corpus at the folder that holds them"
        )
    return folder


def load_samm_lv(
    root: Path | str,
    sheet: Path | str | None = None,
    *,
    dataset: str = "samm_lv",
    fps: float = FPS,
    corrections: Corrections | None = None,
    micro_sheet: Path | str | None = None,
) -> LoadResult:
    """Long videos with their events, and one recognition sample per micro event."""
    root = corpus_root(root)
    sheet_path = Path(sheet) if sheet is not None else find_sheet(root)
    table = read_table(sheet_path, REQUIRED, prefer_sheet=SHEET_NAME, what="SAMM Long Videos sheet")
    base = frames_dir(root)
    emotions = _emotions(micro_sheet, sheet_path, root)
    folders = sorted(
        (p for p in base.iterdir() if p.is_dir() and _VIDEO_DIR.match(p.name)), key=_video_key
    )
    frames = {p.name: numbered_frames(p) for p in folders}
    events: dict[str, list[Event]] = {p.name: [] for p in folders}
    out = Gathered()
    for line, raw in table.rows:
        record = canonical(raw, REQUIRED)
        try:
            video, event, sample_id, corrected = _event(
                record, dataset, emotions, events, base, corrections
            )
        except RowError as e:
            out.skip(e, table.where(line))
            continue
        events[video].append(event)
        if event.kind != "micro":
            continue
        out.add_event_sample(
            line,
            sample_id,
            partial(
                event_sample,
                sample_id,
                event,
                dataset=dataset,
                subject=_subject_of(video),
                clip=record["Filename"],
                folder=base / video,
                frames=frames[video],
                fps=fps,
            ),
            corrected=corrected,
            repeat="Filename repeats row {row}",
            where=table.where(line),
        )
    videos = tuple(
        long_video(dataset, _subject_of(p.name), p.name, fps, events[p.name], frames[p.name])
        for p in folders
    )
    log_skipped(log, out.skipped)
    kinds = Counter(e.kind for v in videos for e in v.events)
    log.info(
        "%s: %d videos (%d micro, %d macro events), %d micro samples from %s (%d skipped)",
        dataset,
        len(videos),
        kinds["micro"],
        kinds["macro"],
        len(out.samples),
        base,
        len(out.skipped),
    )
    return LoadResult(tuple(out.samples), tuple(out.skipped), videos)


def looks_like(root: Path) -> bool:
    """True when `root` has the SAMM Long Videos layout: `{subject}_{video}` folders (in root or
    root/SAMM_longvideos) and a *LongVideos* sheet."""
    return found(lambda: frames_dir(root), lambda: find_sheet(root))


def _event(
    record: dict[str, str],
    dataset: str,
    emotions: dict[tuple[str, int], str],
    events: dict[str, list[Event]],
    base: Path,
    corrections: Corrections | None,
) -> tuple[str, Event, str, bool]:
    """(video folder name, event, event id, whether a correction set the apex) of one sheet
    row, corrections applied."""
    subject = samm.subject_id(record["Subject"])
    name = record["Filename"]
    sample_id = f"{dataset}/{subject or '?'}/{name or '?'}"
    match = _EVENT.match(name)
    if match is None:
        raise RowError(sample_id, f"Filename '{name}' is not {{subject}}_{{video}}_{{event}}")
    video = match.group(1)
    if _subject_of(video) != subject:
        raise RowError(sample_id, f"Subject '{record['Subject']}' does not match Filename {name}")
    kind = record["Type"].strip().lower()
    if not kind.startswith(("micro", "macro")):
        raise RowError(sample_id, f"Type '{record['Type']}' is neither Macro nor Micro")
    kind = kind[:5]
    onset = frame_number(record["Onset"], "Onset", sample_id)
    apex = samm.apex_frame(record["Apex"], "Apex", sample_id)
    offset = frame_number(record["Offset"], "Offset", sample_id)
    emotion = emotions.get((video, onset), "") if kind == "micro" and onset else ""
    fields = {"onset": onset, "apex": apex, "offset": offset, "emotion": emotion}
    fields["aus"] = record["Action Units"]
    if corrections is not None:
        fields = corrections.apply(sample_id, fields)  # raises RowError for an exclusion
    onset, apex, offset = fields["onset"], fields["apex"], fields["offset"]
    if video not in events:
        raise RowError(sample_id, f"video folder {base / video} is missing")
    if onset is None or onset <= 0:
        if apex is None:
            raise RowError(sample_id, "neither Onset nor Apex is annotated")
        onset = apex  # as the MEGC evaluation code does for an onset of 0
    if offset is None:
        raise RowError(sample_id, "Offset is empty")
    event = make_event(sample_id, {**fields, "onset": onset, "offset": offset}, kind)
    return video, event, sample_id, bool(fields.get("apex_source"))


def _emotions(
    micro_sheet: Path | str | None, sheet: Path, root: Path
) -> dict[tuple[str, int], str]:
    """Estimated Emotion of each SAMM micro clip by (video folder, onset frame)."""
    if micro_sheet is None:
        for folder in (sheet.parent, root):
            try:
                micro_sheet = samm.find_sheet(folder)
                break
            except MekitError:
                continue
        else:
            log.info("no SAMM micro sheet next to %s: micro events have no emotion", sheet.name)
            return {}
        try:
            return _emotions(micro_sheet, sheet, root)
        except MekitError as e:  # a *SAMM* workbook that is not the micro sheet
            log.warning("no emotions for micro events: %s", e)
            return {}
    path = Path(micro_sheet)
    table = read_table(path, samm.REQUIRED, what=samm.SHEET.what)
    found: dict[tuple[str, int], list[str]] = {}
    for _, raw in table.rows:
        record = canonical(raw, samm.REQUIRED)
        match = _EVENT.match(record["Filename"])
        try:
            onset = frame_number(record["Onset Frame"], "Onset Frame", record["Filename"])
        except RowError:
            continue
        if match and onset is not None and record["Estimated Emotion"]:
            found.setdefault((match.group(1), onset), []).append(record["Estimated Emotion"])
    log.info("emotions of micro events from %s", path)
    # Two clips of one video with the same onset would be ambiguous: leave those out.
    return {key: names[0].strip().lower() for key, names in found.items() if len(names) == 1}


def _subject_of(video: str) -> str:
    return video.split("_")[0]


def _video_key(path: Path) -> tuple[int, int]:
    a, b = path.name.split("_")
    return int(a), int(b)
