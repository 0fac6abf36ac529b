"""The generic folder format: data prepared elsewhere, described by one `samples.csv`.

A directory holds `samples.csv` and whatever its rows point at::

    mydata/
      samples.csv
      s01/clip1/000.png 001.png ...     (a frames folder)
      flows/s01_clip2.npy               ((2 or 3, H, W) float: u, v[, strain] in px)
      flows/s02_clip1.png               (an image whose R, G, B are u, v, strain, min-max scaled)
      apex/s02_clip1.png                (an apex face image)

Columns (header names are case-insensitive; unknown columns are ignored with a warning):

- `subject`, `clip`, `label` (required): `label` becomes the sample's emotion, lower-cased, and
  goes through the label scheme like any corpus's emotion.
- `dataset` (optional): the row's corpus name, used in its id and by label schemes (a composite
  of several corpora keeps each one's mapping), lower-cased. An empty cell or no column means
  the `dataset` argument of `load_generic`, or "generic".
- `onset`, `apex`, `offset`, `aus`, `fps` (optional): frame numbers, action units, frame rate
  (default: the `fps` argument).
- at least one input column: `frames` (a folder of numbered images), `video` (a file),
  `apex_image`, `onset_image`, `flow` (a `.npy` array or an image). Each path is relative to the
  directory (absolute paths are allowed, and a path may lead outside it) and must exist; image
  inputs must decode whole (a truncated or corrupt file skips its row, naming file and row).

What each row becomes:

- a `frames` row: a sample read like any corpus's clip (frames listed by the last number in
  their names; a missing onset/offset is the first/last frame, a missing apex the midpoint);
- a `video` row (no frames): a sample with `video` set and no frames; frames are to be read
  from the video by a later stage, so for now features need frames or precomputed inputs;
- a precomputed row (only `apex_image`, `onset_image` and/or `flow`): a sample with no frames
  and `inputs` naming them, which `mekit.motion.extract` turns into features directly.

Frame numbers of rows without frames are kept as given; missing ones are 0 (an apex missing
between a given onset and offset is their midpoint). Precomputed inputs are attached to every
sample whose row names them. Sample ids are `{dataset}/{subject}/{clip}`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from mekit.data.corpus_spec import corpus_root, log_skipped
from mekit.data.corrections import Corrections
from mekit.data.imagecheck import image_problem
from mekit.data.records import (
    IMAGE_SUFFIXES,
    MISSING,
    RowError,
    frame_number,
    make_sample,
    sample_from_fields,
)
from mekit.data.schema import LoadResult, Sample, Skipped
from mekit.data.sheets import read_book
from mekit.errors import MekitError

log = logging.getLogger(__name__)

SAMPLES_CSV = "samples.csv"
DEFAULT_DATASET = "generic"
FPS = 30.0
REQUIRED = ("subject", "clip", "label")
OPTIONAL = ("dataset", "onset", "apex", "offset", "aus", "fps")
PRECOMPUTED = ("apex_image", "onset_image", "flow")
INPUTS = ("frames", "video", *PRECOMPUTED)
HEADER = ",".join((*REQUIRED, *OPTIONAL, *INPUTS))


def load_generic(
    root: Path | str,
    sheet: Path | str | None = None,
    *,
    dataset: str | None = None,
    fps: float = FPS,
    corrections: Corrections | None = None,
) -> LoadResult:
    """Samples of a generic-format directory (see the module doc); unusable rows are returned
    in `skipped` with why and their row number.

    `root` is the directory (or its samples.csv); `sheet` an alternative CSV (paths in it are
    still relative to `root`); `dataset` names rows without a `dataset` cell (default
    "generic"); `fps` is used for rows without an `fps` cell.
    """
    root = Path(root)
    if root.is_file() and sheet is None:
        root, sheet = root.parent, root
    corpus_root(root)
    csv_path = Path(sheet) if sheet is not None else root / SAMPLES_CSV
    table = read_table(csv_path)
    default_dataset = (dataset or DEFAULT_DATASET).strip()
    before = len(corrections.applied) if corrections is not None else 0
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    seen: dict[str, int] = {}
    for index, record in zip(table.index, table.to_dict("records"), strict=True):
        line = int(index) + 2  # the line of samples.csv, its header being line 1
        try:
            sample = _sample(record, line, root, default_dataset, fps, corrections)
            if sample.id in seen:
                raise RowError(sample.id, f"repeats the id of row {seen[sample.id]}")
        except RowError as e:
            skipped.append(Skipped(e.sample_id, f"{e.reason} ({csv_path.name} row {line})"))
            continue
        seen[sample.id] = line
        samples.append(sample)
    log_skipped(log, skipped)
    log.info("%d samples from %s (%d skipped)", len(samples), csv_path, len(skipped))
    applied = tuple(corrections.applied[before:]) if corrections is not None else ()
    return LoadResult(tuple(samples), tuple(skipped), corrections=applied)


def looks_like(root: Path) -> bool:
    """True when `root` holds a `samples.csv` (the generic format)."""
    return (Path(root) / SAMPLES_CSV).is_file()


def read_table(path: Path) -> pd.DataFrame:
    """samples.csv with lower-cased column names, cells as stripped text ('' when empty)."""
    if not path.is_file():
        raise MekitError(
            f"{path} not found; a generic-format corpus is a folder with {SAMPLES_CSV} "
            f"(header: {HEADER}; see the README), or pass the CSV with --sheet"
        )
    df = read_book(
        path,
        "the generic-format table",
        lambda p: pd.read_csv(
            p,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        ),
    )
    df.columns = [_norm(c) for c in df.columns]
    found = ", ".join(df.columns) or "no columns"
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise MekitError(
            f"{path} lacks column(s) {', '.join(missing)}; found {found}. "
            f"Expected header: {HEADER} (only subject, clip, label and one input are needed)"
        )
    if not any(c in df.columns for c in INPUTS):
        raise MekitError(
            f"{path} has no input column; found {found}. It needs at least one of "
            f"{', '.join(INPUTS)} (expected header: {HEADER})"
        )
    unknown = [c for c in df.columns if c not in (*REQUIRED, *OPTIONAL, *INPUTS)]
    if unknown:
        log.warning("%s: ignoring unknown column(s) %s", path, ", ".join(unknown))
    if df.columns.duplicated().any():
        raise MekitError(
            f"{path} repeats column(s) {', '.join(df.columns[df.columns.duplicated()])}"
        )
    df = df[[c for c in df.columns if c not in unknown]]
    df = df.fillna("").apply(lambda col: col.str.strip())
    return df[(df != "").any(axis=1)]


def _sample(
    record: dict[str, str],
    line: int,
    root: Path,
    default_dataset: str,
    fps: float,
    corrections: Corrections | None,
) -> Sample:
    dataset = (_cell(record, "dataset") or default_dataset).lower()
    subject, clip = _cell(record, "subject"), _cell(record, "clip")
    sample_id = f"{dataset}/{subject or '?'}/{clip or f'row{line}'}"
    for name, value in (("subject", subject), ("clip", clip)):
        if not value:
            raise RowError(sample_id, f"{name} is empty")
    label = _cell(record, "label")
    if not label:
        raise RowError(sample_id, "label is empty")
    row_fps = _fps(_cell(record, "fps"), fps, sample_id)
    if corrections is not None and corrections.excludes(sample_id):
        corrections.apply(sample_id, {})  # raises RowError, whatever the row's files
    paths = {name: _path(root, _cell(record, name)) for name in INPUTS if _cell(record, name)}
    if not paths:
        raise RowError(sample_id, f"no input: every one of {', '.join(INPUTS)} is empty or absent")
    for name, path in paths.items():
        if not path.exists():
            raise RowError(sample_id, f"{name} {path} does not exist")
    _check_inputs(paths, sample_id)
    inputs = tuple((name, paths[name]) for name in PRECOMPUTED if name in paths)
    onset = frame_number(_cell(record, "onset"), "onset", sample_id)
    apex = frame_number(_cell(record, "apex"), "apex", sample_id)
    offset = frame_number(_cell(record, "offset"), "offset", sample_id)
    if "frames" in paths:
        sample = make_sample(
            sample_id=sample_id,
            dataset=dataset,
            subject=subject,
            clip=clip,
            onset=onset,
            apex=apex,
            offset=offset,
            emotion=label,
            aus=_cell(record, "aus"),
            fps=row_fps,
            folder=paths["frames"],
            corrections=corrections,
            video=paths.get("video"),
        )
        return replace(sample, inputs=inputs)
    fields = {"onset": onset, "apex": apex, "offset": offset, "emotion": label}
    fields["aus"] = _cell(record, "aus")
    if corrections is not None:
        fields = corrections.apply(sample_id, fields)
    onset, apex, offset, source = _frame_numbers(
        fields["onset"], fields["apex"], fields["offset"], sample_id
    )
    final = {**fields, "onset": onset, "apex": apex, "offset": offset}
    final["apex_source"] = fields.get("apex_source") or source
    return sample_from_fields(
        final, sample_id, dataset, subject, clip, row_fps, video=paths.get("video"), inputs=inputs
    )


def _frame_numbers(
    onset: int | None, apex: int | None, offset: int | None, sample_id: str
) -> tuple[int, int, int, str]:
    """Onset, apex, offset and apex source of a row without frames (nothing to check on disk)."""
    given = [
        (n, v) for n, v in (("onset", onset), ("apex", apex), ("offset", offset)) if v is not None
    ]
    for (a, x), (b, y) in zip(given, given[1:], strict=False):
        if x > y:
            raise RowError(
                sample_id, f"{a} {x} is after {b} {y}; fix samples.csv or add a correction"
            )
    if apex is not None:
        source = "annotated"
    elif onset is not None and offset is not None:
        apex, source = (onset + offset) // 2, "midpoint"
    else:
        source = "none"
    return onset or 0, apex or 0, offset or 0, source


def _check_inputs(paths: dict[str, Path], sample_id: str) -> None:
    """Kinds of file each input column takes (the arrays themselves are read by features)."""
    if "frames" in paths and not paths["frames"].is_dir():
        raise RowError(sample_id, f"frames {paths['frames']} is not a folder of images")
    for name in ("video", *PRECOMPUTED):
        if name in paths and not paths[name].is_file():
            raise RowError(sample_id, f"{name} {paths[name]} is not a file")
    for name in ("apex_image", "onset_image"):
        if name in paths and paths[name].suffix.lower() not in IMAGE_SUFFIXES:
            raise RowError(
                sample_id, f"{name} {paths[name]} is not an image ({', '.join(IMAGE_SUFFIXES)})"
            )
    for name in ("apex_image", "onset_image"):
        if name in paths and (problem := image_problem(paths[name])):
            raise RowError(sample_id, f"{name}: {problem}")
    flow = paths.get("flow")
    if flow is None:
        return
    if flow.suffix.lower() == ".npy":
        try:
            shape = np.load(flow, mmap_mode="r", allow_pickle=False).shape
        except (ValueError, OSError) as e:
            raise RowError(sample_id, f"flow {flow} is not a readable .npy array: {e}") from None
        if len(shape) != 3 or (shape[0] not in (2, 3) and shape[-1] not in (2, 3)):
            raise RowError(
                sample_id, f"flow {flow} has shape {shape}; expected (2 or 3, H, W): u, v[, strain]"
            )
    elif flow.suffix.lower() not in IMAGE_SUFFIXES:
        raise RowError(
            sample_id,
            f"flow {flow} is neither a .npy array nor an image ({', '.join(IMAGE_SUFFIXES)})",
        )
    elif problem := image_problem(flow):
        raise RowError(sample_id, f"flow: {problem}")


def _path(root: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else root / path


def _fps(text: str, default: float, sample_id: str) -> float:
    if not text or text.lower() in MISSING:
        return float(default)
    try:
        value = float(text)
    except ValueError:
        raise RowError(sample_id, f"fps '{text}' is not a number") from None
    if not value > 0:
        raise RowError(sample_id, f"fps {text} must be positive")
    return value


def _cell(record: dict[str, str], column: str) -> str:
    text = str(record.get(column, "") or "").strip()
    return "" if text.lower() in ("nan", "none") else text


def _norm(name: object) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())
