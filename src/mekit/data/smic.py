"""SMIC (HS / VIS / NIR): `ROOT/HS/s1/micro/negative/s1_ne_01/image106663.bmp`, no sheet.

The three subsets share one layout: `{subset}/{subject}/micro/{emotion}/{clip}/` with subject
folders `s1` .. `s20`, emotion folders `negative`, `positive`, `surprise` and clip folders named
`{subject}_{ne|po|sur}_{nn}`. The `non_micro` folders next to `micro` hold clips without a
micro-expression and are ignored. Frame files end in the frame number: `image106663.bmp` in the
raw release (`image` + six digits, the same numbers the SMIC-E sheet uses), `reg_image106663.bmp`
in the cropped one (`SMIC_all_cropped`); .bmp, .jpg and .png are all read.

ROOT is the folder holding `HS/`, `VIS/` and `NIR/` (e.g. `SMIC_all_raw`), the subset folder
itself (`.../HS`), or the folder one level up (`SMIC/` holding `SMIC_all_cropped/HS/...`).

There is no annotation sheet: the label is the emotion folder's name, the onset is the clip's
first frame, the offset its last, and the apex the midpoint (`apex_source="midpoint"`; the frame
nearest the midpoint where that one is missing on disk). `apex_finder`, when given, replaces the
midpoint with a found apex (`apex_source="spotted"`). Frames are 100 fps for HS, 25 fps for VIS
and NIR. Sample ids are `smic/s1/s1_ne_01` (datasets `smic`, `smic_vis`, `smic_nir`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from pathlib import Path

from mekit.data.corpus_spec import corpus_root, finish
from mekit.data.corrections import Corrections
from mekit.data.records import RowError, last_number, make_sample, numbered_frames
from mekit.data.schema import LoadResult, Sample, Skipped
from mekit.errors import MekitError, SampleError

log = logging.getLogger(__name__)

SUBSETS = ("HS", "VIS", "NIR")
FPS = {"HS": 100.0, "VIS": 25.0, "NIR": 25.0}
DATASETS = {"HS": "smic", "VIS": "smic_vis", "NIR": "smic_nir"}
EMOTIONS = ("negative", "positive", "surprise")
SUBJECT_DIR = re.compile(r"^s(\d+)$", re.IGNORECASE)  # s1 .. s20 (SMIC-E: s01 .. s20)


def subset_dirs(root: Path, subset: str) -> list[Path]:
    """Every folder under `root` that can be the `subset` folder (holding `s1/micro/...`):
    `root` itself, `root/{subset}` or `root/*/{subset}`."""
    found: list[Path] = []
    name = root.name.upper()
    # root itself: the subset folder, or a renamed copy of it (any name but another subset's)
    if (name == subset or name not in SUBSETS) and _has_subjects(root):
        found.append(root)
    for child in visible_dirs(root):
        if child.name.upper() == subset and _has_subjects(child):
            found.append(child)
        elif child.name.upper() not in SUBSETS:
            found.extend(
                g for g in visible_dirs(child) if g.name.upper() == subset and _has_subjects(g)
            )
    return found


def frames_dir(root: Path, subset: str = "HS") -> Path:
    """The one folder holding the subset's subject folders (`s1/micro/...`)."""
    subset = check_subset(subset, "SMIC")
    if _has_subjects(root) and root.name.upper() in SUBSETS and root.name.upper() != subset:
        raise MekitError(
            f"{root} is the SMIC {root.name.upper()} folder, but subset {subset} was asked for; "
            f"point --corpus at the folder holding {subset}/ (or use the matching corpus type)"
        )
    folder, others = subset_folder(root, subset, subset_dirs, f"SMIC {subset} folders")
    if folder is not None:
        return folder
    hint = ""
    if others:
        names = ", ".join(f"{s} (--corpus-type {DATASETS[s]})" for s in others)
        hint = f"; {root} holds {names}"
    raise MekitError(
        f"no SMIC {subset} subject folders (s1/micro/negative/..., s2/...) found in {root}, "
        f"{root / subset} or {root}/*/{subset}; point --corpus at the SMIC folder holding "
        f"{subset}/ (or at {subset}/ itself){hint}"
    )


def load_smic(
    root: Path | str,
    sheet: Path | str | None = None,
    *,
    subset: str = "HS",
    dataset: str | None = None,
    fps: float | None = None,
    corrections: Corrections | None = None,
    apex_finder: Callable[[Sample], int] | None = None,
) -> LoadResult:
    """Samples of one SMIC subset (HS, VIS or NIR); unusable clips are listed in `skipped`.

    `apex_finder(sample) -> frame number` is the hook for a spotted apex: when given, it is
    called with each midpoint sample and its answer becomes the apex (`apex_source="spotted"`);
    a frame outside the clip, or a `SampleError` raised by the finder, skips the clip with why.
    """
    root = Path(root)
    subset = check_subset(subset, "SMIC")
    if sheet is not None:
        raise MekitError(
            f"SMIC has no annotation sheet (labels come from the emotion folders), "
            f"but {sheet} was given; leave out --sheet"
        )
    corpus_root(root)
    dataset = dataset or DATASETS[subset]
    fps = FPS[subset] if fps is None else fps
    base = frames_dir(root, subset)
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    for subject_dir in sorted(_subject_dirs(base), key=subject_key):
        micro = subject_dir / "micro"
        for emotion_dir in sorted(visible_dirs(micro), key=lambda p: p.name.lower()):
            for clip_dir in sorted(visible_dirs(emotion_dir), key=lambda p: p.name):
                try:
                    samples.append(
                        _sample(
                            clip_dir,
                            subject_dir.name,
                            emotion_dir.name,
                            dataset,
                            fps,
                            corrections,
                            apex_finder,
                        )
                    )
                except RowError as e:
                    where = clip_dir.relative_to(base)
                    skipped.append(Skipped(e.sample_id, f"{e.reason} ({subset}/{where})"))
    return finish(log, dataset, samples, skipped, base)


def looks_like(root: Path) -> bool:
    """True when `root` holds a SMIC subset (HS, VIS or NIR) in the `s1/micro/{emotion}/` layout,
    as `root` itself, `root/{subset}` or `root/*/{subset}`."""
    try:
        return any(subset_dirs(root, s) for s in SUBSETS)
    except OSError:
        return False


def _sample(
    folder: Path,
    subject: str,
    emotion: str,
    dataset: str,
    fps: float,
    corrections: Corrections | None,
    apex_finder: Callable[[Sample], int] | None,
) -> Sample:
    sample_id = f"{dataset}/{subject}/{folder.name}"
    numbers, paths = numbered_frames(folder, frame_number_of)
    apex = near_midpoint(numbers, numbers[0], numbers[-1]) if numbers else None
    sample = make_sample(
        sample_id=sample_id,
        dataset=dataset,
        subject=subject,
        clip=folder.name,
        onset=None,
        apex=apex,
        offset=None,
        emotion=emotion,
        aus="",
        fps=fps,
        folder=folder,
        frames=(numbers, paths),
        corrections=corrections,
    )
    if apex is not None and sample.apex_source == "annotated":
        sample = dataclasses.replace(sample, apex_source="midpoint")
    if apex_finder is None or sample.apex_source != "midpoint":
        return sample
    try:
        found = int(apex_finder(sample))
    except SampleError as e:
        raise RowError(sample_id, f"apex finder failed: {e.reason}") from None
    if found not in sample.frame_numbers or not sample.onset <= found <= sample.offset:
        raise RowError(
            sample_id,
            f"apex finder gave frame {found}, not a frame of the clip "
            f"({sample.onset}..{sample.offset})",
        )
    return dataclasses.replace(sample, apex=found, apex_source="spotted")


def near_midpoint(numbers: tuple[int, ...], onset: int, offset: int) -> int | None:
    """None when the midpoint of onset..offset is among `numbers` (the usual case); else the
    frame on disk nearest it (a clip with a gap in its frames), to stand in as the midpoint."""
    middle = (onset + offset) // 2
    inside = [n for n in numbers if onset <= n <= offset]
    if middle in inside or not inside:
        return None
    return min(inside, key=lambda n: (abs(n - middle), n))


def frame_number_of(name: str) -> int | None:
    """A SMIC frame file's number (`image106663.bmp`, `reg_image106663.bmp` -> 106663);
    hidden files (`._image...` copies made by macOS) are ignored."""
    return None if name.startswith(".") else last_number(name)


def subset_folder(
    root: Path, subset: str, find: Callable[[Path, str], list[Path]], what: str
) -> tuple[Path | None, list[str]]:
    """(the one folder `find(root, subset)` gives, or None, and the other subsets `find` sees
    in `root` when it gives none); MekitError listing them when it gives several `what`."""
    found = find(root, subset)
    if len(found) == 1:
        return found[0], []
    if len(found) > 1:
        raise MekitError(
            f"several {what} under {root}: {', '.join(map(str, found))}; "
            "point --corpus at the one to use"
        )
    return None, [s for s in SUBSETS if s != subset and find(root, s)]


def check_subset(subset: str, corpus: str) -> str:
    """`subset` as one of SUBSETS (upper case); MekitError naming `corpus` when it is none."""
    name = str(subset).strip().upper()
    if name not in SUBSETS:
        raise MekitError(f"{corpus} subset '{subset}' is not one of {', '.join(SUBSETS)}")
    return name


def visible_dirs(folder: Path) -> list[Path]:
    """The sub-folders of `folder` but hidden ones; none when it is not a folder."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]


def subject_key(path: Path) -> tuple[int, str]:
    """Sort key of a subject folder (`s2` before `s10`; `s01` as 1)."""
    match = SUBJECT_DIR.match(path.name)
    return (int(match.group(1)) if match else 0, path.name)


def _subject_dirs(folder: Path) -> list[Path]:
    return [p for p in visible_dirs(folder) if SUBJECT_DIR.match(p.name) and (p / "micro").is_dir()]


def _has_subjects(folder: Path) -> bool:
    return bool(_subject_dirs(folder))
