"""The one sample schema every corpus loader produces; everything downstream joins on its id."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One annotated micro-expression clip.

    Frame numbers are the corpus's own (CASME II's `img46.jpg` is frame 46); `frames[i]` is the
    file of frame `frame_numbers[i]`. `apex_source` says whether the apex was annotated or filled
    in (e.g. "midpoint" where the sheet has '/', "spotted" when the spotting module found it).

    Corpora of long videos give one sample per annotated event, cut from the video's frames;
    `video` then names the whole recording and `kind` says "micro" or "macro". Data prepared
    elsewhere (the generic folder format) may have no frames at all but precomputed `inputs`:
    ("apex_image", path), ("onset_image", path) or ("flow", path to .npy or image).
    """

    id: str
    dataset: str
    subject: str
    clip: str
    onset: int
    apex: int
    offset: int
    emotion: str
    aus: str
    fps: float
    frames: tuple[Path, ...]
    frame_numbers: tuple[int, ...]
    apex_source: str = "annotated"
    kind: str = "micro"
    video: Path | None = None
    inputs: tuple[tuple[str, Path], ...] = ()

    def input_path(self, name: str) -> Path | None:
        """The precomputed input `name` (apex_image, onset_image or flow), if the sample has it."""
        return dict(self.inputs).get(name)

    def frame_path(self, number: int) -> Path:
        """Path of the frame with the corpus's frame `number`; KeyError if the clip lacks it."""
        try:
            return self.frames[self.frame_numbers.index(number)]
        except ValueError:
            raise KeyError(f"{self.id}: no frame {number} on disk") from None


@dataclass(frozen=True)
class Skipped:
    """A sample (or sheet row) left out, with the reason and what to do about it."""

    id: str
    reason: str


class RowError(Exception):
    """An annotation row that cannot become a sample; `reason` says why and what to do.

    Loaders turn it into a `Skipped` entry naming the row (it lives here, beside `Skipped`, so
    corrections and records can both raise it without importing each other)."""

    def __init__(self, sample_id: str, reason: str) -> None:
        super().__init__(f"{sample_id}: {reason}")
        self.sample_id, self.reason = sample_id, reason


@dataclass(frozen=True)
class Event:
    """One annotated interval of a long video, in the video's own frame numbers."""

    onset: int
    apex: int | None  # None where the corpus left it unannotated
    offset: int
    kind: str  # "micro" or "macro"
    emotion: str = ""
    aus: str = ""


@dataclass(frozen=True)
class LongVideo:
    """An unsegmented recording with its annotated events (for spotting).

    Either `frames`/`frame_numbers` (a folder of images) or `video` (a file) is set.
    """

    id: str
    dataset: str
    subject: str
    fps: float
    events: tuple[Event, ...]
    frames: tuple[Path, ...] = ()
    frame_numbers: tuple[int, ...] = ()
    video: Path | None = None


@dataclass(frozen=True)
class LoadResult:
    """What a loader found: usable samples, rows it skipped (with why), long videos if any,
    and the annotation corrections it applied (sample id, field, old, new, reason)."""

    samples: tuple[Sample, ...]
    skipped: tuple[Skipped, ...] = field(default_factory=tuple)
    videos: tuple[LongVideo, ...] = field(default_factory=tuple)
    corrections: tuple[tuple[str, str, str, str, str], ...] = field(default_factory=tuple)
