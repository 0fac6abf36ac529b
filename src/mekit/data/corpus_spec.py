"""A corpus described as data, and the one loop that turns its rows into samples.

A `ClipSheet` says what a corpus's sheet is called, which columns it needs (in their official
spelling, with other spellings seen in the wild), which column holds which field, and how its
frame cells read. `ClipSheet.sample` turns one row into a checked `Sample` (`make_sample`);
`collect` runs the rows, skips bad ones with the reason and the sheet row, and refuses a
repeated id. A `SheetCorpus` joins them into a loader (`clip_corpus` for a `ClipSheet`; a corpus
with its own row rule, such as CAS(ME)^3, gives its own reader and builder). What stays in a
loader is only its corpus's own: where the sheet and frames are, how a subject cell names its
folder, and which folder holds a clip.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mekit.data.corrections import Corrections
from mekit.data.records import frame_number, make_sample
from mekit.data.schema import LoadResult, RowError, Sample, Skipped
from mekit.data.sheets import (
    canonical,
    read_book,
    read_excel,
    read_table,
    records,
    select_columns,
)
from mekit.errors import MekitError


@dataclass(frozen=True)
class ClipSheet:
    """A sheet with one row per clip folder: its columns and how its cells read.

    `onset`, `apex`, `offset`, `emotion`, `aus` name the columns holding those fields, in their
    official spelling (default: CASME II's, which MMEW keeps); with Subject and Filename they are
    the columns read (`required`), and `aliases` maps other (normalised) spellings to them.
    `must_have` names the frame fields ("onset", "apex", "offset") whose cells may not be empty
    (the others default to the clip's first/last frame or its midpoint);
    `negative_apex` says that an apex below 0 means "not annotated" (SAMM's -1). `repeat` is
    the reason given to a row whose id an earlier row had (`{row}` is that row). `number` reads
    a frame file's number (default: the last digits of its name)."""

    what: str
    repeat: str
    onset: str = "OnsetFrame"
    apex: str = "ApexFrame"
    offset: str = "OffsetFrame"
    emotion: str = "Estimated Emotion"
    aus: str = "Action Units"
    aliases: Mapping[str, str] = field(default_factory=dict)
    must_have: tuple[str, ...] = ()
    negative_apex: bool = False
    number: Callable[[str], int | None] | None = None
    header_search: bool = False  # the header is below a block of notes (found by content)

    @property
    def required(self) -> tuple[str, ...]:
        """The columns read: Subject and Filename (which place the clip), then the fields'."""
        return ("Subject", "Filename", self.onset, self.apex, self.offset, self.aus, self.emotion)

    def read(self, path: Path) -> tuple[Rows, Callable[[int], str]]:
        """(spreadsheet row, {official column: text}) of each row, and where a row is."""
        if self.header_search:
            table = read_table(path, self.required, what=self.what)
            return [(n, canonical(r, self.required)) for n, r in table.rows], table.where
        df = read_book(path, self.what, lambda p: read_excel(p, dtype=str))
        rows = list(records(select_columns(df, self.required, f"{self.what} {path}")))
        return rows, lambda line: f"{path.name} row {line}"

    def sample(
        self,
        record: Mapping[str, str],
        clip: Clip,
        *,
        dataset: str,
        fps: float,
        corrections: Corrections | None,
    ) -> Sample:
        """The checked sample of one clip row (frames listed from the clip's folder)."""
        return make_sample(
            **vars(clip),  # sample_id, subject, clip, folder: make_sample's own names
            dataset=dataset,
            onset=self.frame(record, "onset", clip.sample_id),
            apex=self.frame(record, "apex", clip.sample_id),
            offset=self.frame(record, "offset", clip.sample_id),
            emotion=record[self.emotion],
            aus=record[self.aus],
            fps=fps,
            corrections=corrections,
            number=self.number,
        )

    def frame(self, record: Mapping[str, str], name: str, sample_id: str) -> int | None:
        """The frame number of the field `name` ("onset", "apex", "offset") in `record`;
        RowError when a needed one is empty."""
        column = getattr(self, name)
        number = frame_number(record[column], column, sample_id)
        if number is None and name in self.must_have:
            raise RowError(sample_id, f"{column} is empty")
        if number is not None and number < 0 and self.negative_apex and name == "apex":
            return None
        return number


@dataclass(frozen=True)
class Clip:
    """Where one row's clip is: its sample id, subject, clip name and frames folder."""

    sample_id: str
    subject: str
    clip: str
    folder: Path


Rows = Iterable[tuple[int, Mapping[str, str]]]  # (spreadsheet row, {column: text})
RowBuilder = Callable[[int, Mapping[str, str]], Sample]


@dataclass(frozen=True)
class SheetCorpus:
    """A corpus of one sample per sheet row, described as data: its default `dataset` name and
    frame rate, where the sheet and the frames are (`find_sheet(root)`, `frames_dir(root)`),
    `read(sheet)`, which gives the rows and where a row is, `builder(base, dataset, fps,
    corrections)`, which gives the row -> `Sample` rule over the frames folder `base`, and
    `repeat`, the reason given to a row whose id an earlier row had (`{row}` is that row). A
    corpus module's `load_*` and `looks_like` are its `load` and `looks_like`."""

    dataset: str
    fps: float
    find_sheet: Callable[[Path], Path]
    frames_dir: Callable[[Path], Path]
    read: Callable[[Path], tuple[Rows, Callable[[int], str]]]
    builder: Callable[[Path, str, float, Corrections | None], RowBuilder]
    repeat: str

    @property
    def log(self) -> logging.Logger:
        """The logger of the corpus's module (each is named after its corpus)."""
        return logging.getLogger(f"{__package__}.{self.dataset}")

    def load(
        self,
        root: Path | str,
        sheet: Path | str | None = None,
        dataset: str | None = None,
        fps: float | None = None,
        corrections: Corrections | None = None,
    ) -> LoadResult:
        """The samples of every row (named `dataset`, default the corpus's own; at `fps`,
        default the corpus's frame rate); unusable rows are returned in `skipped` with why.
        `sheet` replaces the sheet found next to `root`."""
        dataset = dataset or self.dataset
        fps = self.fps if fps is None else fps
        root = corpus_root(root)
        sheet_path = Path(sheet) if sheet is not None else self.find_sheet(root)
        rows, where = self.read(sheet_path)
        base = self.frames_dir(root)
        build = self.builder(base, dataset, fps, corrections)
        samples, skipped = collect(rows, build, where, self.repeat)
        return finish(self.log, dataset, samples, skipped, base)

    def looks_like(self, root: Path) -> bool:
        """True when both the sheet and the frames folder are found from `root`."""
        return found(lambda: self.frames_dir(root), lambda: self.find_sheet(root))


def clip_corpus(
    dataset: str,
    fps: float,
    sheet: ClipSheet,
    find_sheet: Callable[[Path], Path],
    frames_dir: Callable[[Path], Path],
    locate: Callable[[Path, str], Callable[[int, Mapping[str, str]], Clip]],
) -> SheetCorpus:
    """The `SheetCorpus` of one sheet row per clip folder, read by `sheet`: `locate(base,
    dataset)` gives the row -> `Clip` rule over the frames folder `base`."""

    def builder(base: Path, name: str, rate: float, fixes: Corrections | None) -> RowBuilder:
        clip_of = locate(base, name)

        def build(line: int, record: Mapping[str, str]) -> Sample:
            clip = clip_of(line, record)
            return sheet.sample(record, clip, dataset=name, fps=rate, corrections=fixes)

        return build

    return SheetCorpus(dataset, fps, find_sheet, frames_dir, sheet.read, builder, sheet.repeat)


def corpus_root(root: Path | str) -> Path:
    """`root` as a Path; a MekitError naming --corpus when it is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise MekitError(f"corpus folder {root} does not exist; check --corpus")
    return root


def holds(folder: Path, pattern: re.Pattern[str]) -> bool:
    """True when `folder` is a folder with a sub-folder whose name matches `pattern`."""
    return folder.is_dir() and any(p.is_dir() and pattern.match(p.name) for p in folder.iterdir())


def first_holding(candidates: Iterable[Path], pattern: re.Pattern[str]) -> Path | None:
    """The first of `candidates` that `holds` a folder named like `pattern` (the subject or
    video folders a loader looks for), else None."""
    return next((c for c in candidates if holds(c, pattern)), None)


def found(*finders: Callable[[], object]) -> bool:
    """True when every finder (a loader's find_sheet/frames_dir) finds its part."""
    try:
        for find in finders:
            find()
    except (MekitError, OSError):
        return False
    return True


@dataclass
class Gathered:
    """The samples and skipped rows of one load, in sheet order, each sample id once."""

    samples: list[Sample] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)

    def skip(self, error: RowError, where: str, note: str = "") -> None:
        self.skipped.append(Skipped(error.sample_id, f"{error.reason}{note} ({where})"))

    def claim(self, sample_id: str, line: int, repeat: str) -> None:
        """Record that row `line` makes `sample_id`; RowError (`repeat`, where `{row}` is the
        earlier row) when an earlier row made it."""
        if sample_id in self.seen:
            raise RowError(sample_id, repeat.format(row=self.seen[sample_id]))
        self.seen[sample_id] = line

    def add_event_sample(
        self,
        line: int,
        sample_id: str,
        build: Callable[[], Sample],
        *,
        corrected: bool,
        repeat: str,
        where: str,
    ) -> None:
        """The recognition sample of an event that stays in its video for spotting whatever
        happens here; `corrected` marks an apex set by a correction."""
        try:
            self.claim(sample_id, line, repeat)
            sample = build()
        except RowError as e:
            self.skip(e, where, KEPT_FOR_SPOTTING)
            return
        if corrected:
            sample = dataclasses.replace(sample, apex_source="corrected")
        self.samples.append(sample)


KEPT_FOR_SPOTTING = "; the event is kept for spotting"


def collect(
    rows: Iterable[tuple[int, Mapping[str, str]]],
    build: Callable[[int, Mapping[str, str]], Sample],
    where: Callable[[int], str],
    repeat: str,
) -> tuple[list[Sample], list[Skipped]]:
    """The samples `build(row, record)` makes of `rows`, and the rows skipped with the
    reason and `where(row)`; a sample whose id an earlier row had is skipped (`repeat`)."""
    out = Gathered()
    for line, record in rows:
        try:
            sample = build(line, record)
            out.claim(sample.id, line, repeat)
            out.samples.append(sample)
        except RowError as e:
            out.skip(e, where(line))
    return out.samples, out.skipped


def finish(
    log: logging.Logger,
    dataset: str,
    samples: Iterable[Sample],
    skipped: Iterable[Skipped],
    base: Path,
) -> LoadResult:
    """The LoadResult of a clip corpus, each skipped row logged as a warning."""
    result = LoadResult(tuple(samples), tuple(skipped))
    log_skipped(log, result.skipped)
    log.info(
        "%s: %d samples from %s (%d skipped)",
        dataset,
        len(result.samples),
        base,
        len(result.skipped),
    )
    return result


def log_skipped(log: logging.Logger, skipped: Iterable[Skipped]) -> None:
    for s in skipped:
        log.warning("skipping %s: %s", s.id, s.reason)
