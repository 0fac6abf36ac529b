"""What every corpus loader shares: turning one annotation row into a checked `Sample`.

A loader reads its own sheet and folder layout, then hands the row's fields to `make_sample`,
which applies annotation corrections (by sample id), fills a missing apex with the midpoint,
checks onset <= apex <= offset and that the frames exist, and raises `RowError` with the reason
otherwise. Loaders catch `RowError` and list the row as skipped: nothing is dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mekit.data.corrections import Corrections
from mekit.data.schema import Event, LongVideo, RowError, Sample

Frames = tuple[tuple[int, ...], tuple[Path, ...]]  # (frame numbers, their files)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MISSING = ("", "/", "-", "nan", "none", "n/a", "na")


def numbered_frames(
    folder: Path, number: Callable[[str], int | None] | None = None
) -> tuple[tuple[int, ...], tuple[Path, ...]]:
    """The image files of `folder` as (frame numbers, paths), sorted by number.

    `number(filename)` gives a file's frame number (None to ignore the file); by default the
    last run of digits in the name (`img46.jpg` -> 46, `006_05562.jpg` -> 5562).
    """
    number = number or last_number
    found = []
    for path in folder.iterdir():
        if path.suffix.lower() in IMAGE_SUFFIXES and (n := number(path.name)) is not None:
            found.append((n, path))
    found.sort()
    return tuple(n for n, _ in found), tuple(p for _, p in found)


def last_number(name: str) -> int | None:
    digits = re.findall(r"\d+", Path(name).stem)
    return int(digits[-1]) if digits else None


def frame_number(cell: object, column: str, sample_id: str) -> int | None:
    """A frame number from a sheet cell; None for an empty or '/' cell."""
    text = str(cell).strip()
    if text.lower() in MISSING:
        return None
    try:
        return int(float(text))
    except ValueError:
        raise RowError(sample_id, f"{column} '{cell}' is not a frame number") from None


def make_sample(
    *,
    sample_id: str,
    dataset: str,
    subject: str,
    clip: str,
    onset: int | None,
    apex: int | None,
    offset: int | None,
    emotion: str,
    aus: str,
    fps: float,
    folder: Path | None = None,
    frames: tuple[tuple[int, ...], tuple[Path, ...]] | None = None,
    corrections: Corrections | None = None,
    kind: str = "micro",
    video: Path | None = None,
    number: Callable[[str], int | None] | None = None,
) -> Sample:
    """A checked sample from one annotation row.

    Frames come from `folder` (listed with `numbered_frames(folder, number)`) or are given as
    (numbers, paths). A missing onset or offset means the clip's first or last frame; a missing
    apex, the midpoint (the sample's `apex_source` says so). Corrections for `sample_id` are
    applied first, so a corrected row is checked like any other.
    """
    fields = {"onset": onset, "apex": apex, "offset": offset, "emotion": emotion, "aus": aus}
    if corrections is not None:
        fields = corrections.apply(sample_id, fields)
    if frames is None:
        if folder is None or not folder.is_dir():
            raise RowError(sample_id, f"clip folder {folder} is missing")
        frames = numbered_frames(folder, number)
    numbers, paths = frames
    where = folder if folder is not None else "the clip"
    if not numbers:
        raise RowError(sample_id, f"no image frames in {where}")
    onset = numbers[0] if fields["onset"] is None else int(fields["onset"])
    offset = numbers[-1] if fields["offset"] is None else int(fields["offset"])
    if fields["apex"] is None:
        apex, apex_source = (onset + offset) // 2, "midpoint"
    else:
        apex, apex_source = int(fields["apex"]), "annotated"
    if fields.get("apex_source"):
        apex_source = str(fields["apex_source"])
    check_interval(sample_id, onset, apex, offset)
    for needed, what in ((onset, "onset"), (apex, "apex"), (offset, "offset")):
        if needed not in numbers:
            raise RowError(
                sample_id,
                f"{what} frame {needed} not in {where} (frames {numbers[0]}..{numbers[-1]})",
            )
    final = {**fields, "onset": onset, "apex": apex, "offset": offset, "apex_source": apex_source}
    return sample_from_fields(
        final, sample_id, dataset, subject, clip, fps, (numbers, paths), kind=kind, video=video
    )


def sample_from_fields(
    fields: Mapping[str, Any],
    sample_id: str,
    dataset: str,
    subject: str,
    clip: str,
    fps: float,
    frames: Frames = ((), ()),
    *,
    kind: str = "micro",
    video: Path | None = None,
    inputs: tuple[tuple[str, Path], ...] = (),
) -> Sample:
    """The `Sample` of one row whose corrected `fields` hold the final onset, apex, offset
    and apex_source. Nothing is checked here: `make_sample` checks a row with frames, a
    loader its rows without."""
    numbers, paths = frames
    return Sample(
        id=sample_id,
        dataset=dataset,
        subject=subject,
        clip=clip,
        onset=fields["onset"],
        apex=fields["apex"],
        offset=fields["offset"],
        emotion=str(fields["emotion"]).strip().lower(),
        aus=_text(fields["aus"]),
        fps=fps,
        frames=tuple(paths),
        frame_numbers=tuple(numbers),
        apex_source=str(fields["apex_source"]),
        kind=kind,
        video=video,
        inputs=inputs,
    )


def check_interval(sample_id: str, onset: int, apex: int | None, offset: int) -> None:
    """RowError unless onset <= apex <= offset (an apex of None is not checked)."""
    if offset < onset:
        raise RowError(sample_id, f"offset {offset} is before onset {onset}")
    if apex is not None and not onset <= apex <= offset:
        raise RowError(
            sample_id,
            f"apex {apex} is outside onset..offset {onset}..{offset}; "
            "fix the sheet or add a correction (id,field,value,reason)",
        )


def make_event(sample_id: str, fields: Mapping[str, Any], kind: str) -> Event:
    """A checked event of a long video from corrected row `fields` (onset and offset given)."""
    onset, apex, offset = fields["onset"], fields["apex"], fields["offset"]
    check_interval(sample_id, onset, apex, offset)
    return Event(
        onset=int(onset),
        apex=None if apex is None else int(apex),
        offset=int(offset),
        kind=kind,
        emotion=str(fields["emotion"]).strip().lower(),
        aus=str(fields["aus"] or "").strip(),
    )


def cut_frames(sample_id: str, frames: Frames, onset: int, offset: int, folder: Path) -> Frames:
    """The frames onset..offset of a long recording's `frames` (listed from `folder`);
    RowError when it has none or none of them lie in the interval."""
    numbers, paths = frames
    if not numbers:
        raise RowError(sample_id, f"no image frames in {folder}")
    cut = subset_frames(numbers, paths, onset, offset)
    if not cut[0]:
        raise RowError(
            sample_id,
            f"onset..offset {onset}..{offset} lies outside the frames "
            f"{numbers[0]}..{numbers[-1]} of {folder}",
        )
    return cut


def event_sample(
    sample_id: str,
    event: Event,
    *,
    dataset: str,
    subject: str,
    clip: str,
    folder: Path,
    frames: Frames,
    fps: float,
) -> Sample:
    """The recognition sample of one event, its frames cut from the recording in `folder`."""
    return make_sample(
        **vars(event),  # onset, apex, offset, kind, emotion, aus: make_sample's own names
        sample_id=sample_id,
        dataset=dataset,
        subject=subject,
        clip=clip,
        fps=fps,
        folder=folder,
        frames=cut_frames(sample_id, frames, event.onset, event.offset, folder),
        video=folder,
    )


def long_video(
    dataset: str,
    subject: str,
    name: str,
    fps: float,
    events: Iterable[Event],
    frames: Frames = ((), ()),
    video: Path | None = None,
) -> LongVideo:
    """The long video `{dataset}/{subject}/{name}` with its events sorted by onset."""
    return LongVideo(
        id=f"{dataset}/{subject}/{name}",
        dataset=dataset,
        subject=subject,
        fps=fps,
        events=tuple(sorted(events, key=lambda e: (e.onset, e.offset))),
        frames=frames[1],
        frame_numbers=frames[0],
        video=video,
    )


def subset_frames(
    numbers: Iterable[int], paths: Iterable[Path], first: int, last: int
) -> tuple[tuple[int, ...], tuple[Path, ...]]:
    """The frames numbered first..last of a long video's frame list (for one event)."""
    pairs = [(n, p) for n, p in zip(numbers, paths, strict=True) if first <= n <= last]
    return tuple(n for n, _ in pairs), tuple(p for _, p in pairs)


def _text(value: object) -> str:
    text = str(value).strip()
    return "" if text.lower() in ("nan", "none") else text
