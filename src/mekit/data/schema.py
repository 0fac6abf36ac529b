"""The one sample schema every corpus loader produces; everything downstream joins on its id."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One annotated micro-expression clip.

    Frame numbers are the corpus's own (CASME II's `img46.jpg` is frame 46); `frames[i]` is the
    file of frame `frame_numbers[i]`. `apex_source` says whether the apex was annotated or filled
    in (e.g. "midpoint" where the sheet has '/').
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


@dataclass(frozen=True)
class LoadResult:
    samples: tuple[Sample, ...]
    skipped: tuple[Skipped, ...] = field(default_factory=tuple)
