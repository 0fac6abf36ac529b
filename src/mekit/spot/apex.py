"""The apex of an annotated clip, spotted: for corpora without one (SMIC, a '/' in CASME II).

The clip's frames onset..offset are aligned on the onset frame's face (the same alignment the
recognition features use) and `spotters.apex_in_clip` picks the frame furthest from the onset,
with the eyes masked and blink frames left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm.auto import tqdm

from mekit.data.schema import Sample, Skipped
from mekit.errors import MekitError, SampleError
from mekit.faces import FaceConfig
from mekit.faces.align import align_frames
from mekit.faces.landmarks import FaceLandmarker
from mekit.spot.spotters import ApexConfig, apex_in_clip

APEX_MODES = ("given", "spot-missing", "spot-all")


@dataclass(frozen=True)
class SpottedApex:
    id: str
    given: int
    given_source: str  # "annotated", "midpoint", ...
    spotted: int


def spot_clip_apex(
    sample: Sample,
    landmarker: FaceLandmarker,
    face: FaceConfig = FaceConfig(),
    config: ApexConfig = ApexConfig(),
) -> int:
    """The spotted apex frame number of `sample` (between its onset and offset)."""
    numbers = [n for n in sample.frame_numbers if sample.onset <= n <= sample.offset]
    if len(numbers) < 2:
        raise SampleError(sample.id, "fewer than 2 frames from onset to offset: no apex to spot")
    frames = []
    for n in numbers:
        image = cv2.imread(str(sample.frame_path(n)), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise SampleError(sample.id, f"cannot read frame {sample.frame_path(n)}")
        frames.append(image)
    clip = align_frames(frames, landmarker, face)
    if clip is None:
        raise SampleError(
            sample.id, f"no face found in the onset frame {sample.frame_path(numbers[0])}"
        )
    index, _ = apex_in_clip(np.stack(clip.frames), clip.landmarks, config)
    return numbers[index]


def apex_finder(face: FaceConfig = FaceConfig()) -> Callable[[Sample], int]:
    """A function sample -> spotted apex, e.g. for `load_smic(..., apex_finder=...)`."""
    landmarker = FaceLandmarker()
    return lambda sample: spot_clip_apex(sample, landmarker, face)


def spot_apexes(
    samples: Sequence[Sample],
    mode: str = "spot-missing",
    face: FaceConfig = FaceConfig(),
    progress: bool = True,
) -> tuple[list[Sample], list[SpottedApex], list[Skipped]]:
    """Samples with their apex spotted ("spot-missing": only where it was filled in, e.g. the
    midpoint; "spot-all": every sample), what was found, and the samples that failed (they keep
    their apex and are listed with the reason)."""
    if mode not in APEX_MODES:
        raise MekitError(f"apex mode '{mode}' is not one of {', '.join(APEX_MODES)}")
    if mode == "given":
        return list(samples), [], []
    finder = apex_finder(face)
    out, found, failed = [], [], []
    for s in tqdm(samples, desc="apex", unit="clip", disable=not progress):
        if mode == "spot-missing" and s.apex_source == "annotated":
            out.append(s)
            continue
        try:
            apex = finder(s)
        except MekitError as e:  # SampleError included
            reason = e.reason if isinstance(e, SampleError) else str(e)
            failed.append(Skipped(s.id, f"apex not spotted, kept {s.apex_source}: {reason}"))
            out.append(s)
            continue
        found.append(SpottedApex(s.id, s.apex, s.apex_source, apex))
        out.append(dataclasses.replace(s, apex=apex, apex_source="spotted"))
    return out, found, failed
