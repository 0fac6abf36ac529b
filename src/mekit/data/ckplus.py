"""CK+ (the extended Cohn-Kanade set, Lucey et al., CVPR workshops 2010): posed macro
expressions for pretraining.

Layout, as the official zips unpack into ROOT:

    ROOT/cohn-kanade-images/S005/001/S005_001_00000001.png ... S005_001_00000011.png
    ROOT/Emotion/S005/001/S005_001_00000011_emotion.txt        (Emotion_labels.zip)
    ROOT/FACS/S005/001/S005_001_00000011_facs.txt              (FACS_labels.zip, optional)

`Emotion_labels/Emotion`, `FACS_labels/FACS` and a `CK+/` folder around all of them are found
too. Each of the 593 sequences goes from a neutral face (its first frame) to the expression's
peak (its last frame); 327 of them have an emotion label: one file named after the peak frame
holding a code 0..7 written as a float ("   3.0000000e+00"): 0 neutral, 1 anger, 2 contempt,
3 disgust, 4 fear, 5 happy (named "happiness" here, as the micro-expression corpora do),
6 sadness, 7 surprise. Only labelled sequences become samples; the others are not annotated
and are counted in the log, not listed as skipped. Frames may be grey or colour, 640x490 or
640x480; they are read as grey.

Two views:

* `load_ckplus(root)` -> `LoadResult`, one `Sample` per labelled sequence with id
  `ckplus/S005/001` (subject and sequence as the folders name them): onset is the first frame,
  apex = offset = the labelled (last) frame, `apex_source="annotated"` because CK+ sequences
  end at the peak by construction. AUs come from the FACS file when present ("1+2+5+25",
  intensities dropped); fps 30.
* `ckplus_peak_images(root)` -> `ImageSet` of the last `frames_per_sequence` frames (up to the
  peak) of each labelled sequence (327 x 3 = 981 strong-expression images by default), ids
  `ckplus/S005/001/11` (the frame number), subjects `S005`. `neutral_frames=k` adds each
  sequence's first k frames labelled "neutral", as many CK+ protocols do.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from mekit.data.corpus_spec import corpus_root, log_skipped
from mekit.data.corrections import Corrections
from mekit.data.images import DEFAULT_SIZE, Crop, ImageSet, Rows, check_size, read_grey
from mekit.data.records import RowError, make_sample
from mekit.data.schema import LoadResult, Sample, Skipped
from mekit.errors import MekitError

log = logging.getLogger(__name__)

FPS = 30.0
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "anger",
    "contempt",
    "disgust",
    "fear",
    "happiness",
    "sadness",
    "surprise",
)
IMAGE_DIRS = ("cohn-kanade-images", "extended-cohn-kanade-images/cohn-kanade-images")
EMOTION_DIRS = ("Emotion", "Emotion_labels/Emotion", "Emotion_labels")
FACS_DIRS = ("FACS", "FACS_labels/FACS", "FACS_labels")
_LABEL_FILE = re.compile(r"_(\d+)_emotion\.txt$", re.IGNORECASE)


def find_dirs(root: Path, emotion: Path | None = None) -> tuple[Path, Path, Path | None]:
    """(images folder, emotion labels folder, FACS labels folder or None) of a CK+ root."""
    images = _first(root, IMAGE_DIRS)
    if images is None:
        raise MekitError(
            f"no CK+ images in {root}: expected {root / 'cohn-kanade-images'}/S005/001/"
            "S005_001_00000001.png (unzip extended-cohn-kanade-images.zip into it)"
        )
    base = images.parent if images.parent.name != "extended-cohn-kanade-images" else root
    if emotion is not None:
        if not Path(emotion).is_dir():
            raise MekitError(f"CK+ emotion label folder {emotion} does not exist")
        labels = Path(emotion)
    else:
        labels = _first(base, EMOTION_DIRS) or _first(root, EMOTION_DIRS)
        if labels is None:
            raise MekitError(
                f"no CK+ emotion labels next to {images}: expected "
                f"{base / 'Emotion'}/S005/001/S005_001_00000011_emotion.txt "
                "(unzip Emotion_labels.zip into it)"
            )
    return images, labels, _first(base, FACS_DIRS) or _first(root, FACS_DIRS)


def _first(root: Path, names: tuple[str, ...]) -> Path | None:
    for base in (root, root / "CK+"):
        for name in names:
            if (base / name).is_dir():
                return base / name
    return None


def looks_like(root: Path) -> bool:
    """True when `root` holds CK+'s `cohn-kanade-images/` folder."""
    return _first(Path(root), IMAGE_DIRS) is not None


def load_ckplus(
    root: Path | str,
    sheet: Path | str | None = None,
    *,
    dataset: str = "ckplus",
    fps: float = FPS,
    corrections: Corrections | None = None,
) -> LoadResult:
    """One sample per labelled CK+ sequence (see the module doc).

    CK+ has no sheet: `sheet`, when given, is the emotion label folder (the unzipped
    Emotion_labels.zip) for a copy kept apart from the images.
    """
    root = corpus_root(root)
    images, labels, facs = find_dirs(root, Path(sheet) if sheet is not None else None)
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    for subject, clip, files in _labelled(labels):
        sample_id = f"{dataset}/{subject}/{clip}"
        where = files[0].relative_to(labels.parent) if files else labels / subject / clip
        try:
            samples.append(
                _sample(sample_id, subject, clip, files, images, facs, dataset, fps, corrections)
            )
        except RowError as e:
            skipped.append(Skipped(e.sample_id, f"{e.reason} ({where})"))
    log_skipped(log, skipped)
    log.info(
        "%s: %d labelled sequences from %s (%d skipped; unlabelled sequences are not samples)",
        dataset,
        len(samples),
        images,
        len(skipped),
    )
    return LoadResult(tuple(samples), tuple(skipped))


def _labelled(labels: Path) -> list[tuple[str, str, list[Path]]]:
    """(subject, sequence, its emotion files) for every labelled sequence folder."""
    found = []
    for subject in sorted(p for p in labels.iterdir() if p.is_dir() and _visible(p)):
        for clip in sorted(p for p in subject.iterdir() if p.is_dir() and _visible(p)):
            files = sorted(p for p in clip.glob("*.txt") if _visible(p))
            if files:
                found.append((subject.name, clip.name, files))
    return found


def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "_"))


def _sample(
    sample_id: str,
    subject: str,
    clip: str,
    files: list[Path],
    images: Path,
    facs: Path | None,
    dataset: str,
    fps: float,
    corrections: Corrections | None,
) -> Sample:
    if len(files) > 1:
        raise RowError(
            sample_id, f"{len(files)} label files ({', '.join(p.name for p in files)}); keep one"
        )
    label_file = files[0]
    match = _LABEL_FILE.search(label_file.name)
    if match is None:
        raise RowError(
            sample_id,
            f"label file {label_file.name} is not named like S005_001_00000011_emotion.txt, "
            "so its peak frame is unknown",
        )
    peak = int(match.group(1))
    return make_sample(
        sample_id=sample_id,
        dataset=dataset,
        subject=subject,
        clip=clip,
        onset=None,  # the first frame: sequences start neutral
        apex=peak,
        offset=peak,  # and end at the peak
        emotion=_emotion(label_file, sample_id),
        aus=_aus(facs / subject / clip) if facs is not None else "",
        fps=fps,
        folder=images / subject / clip,
        corrections=corrections,
        kind="macro",
    )


def _emotion(path: Path, sample_id: str) -> str:
    text = path.read_text(errors="replace").strip()
    try:
        value = float(text)
    except ValueError:
        raise RowError(sample_id, f"emotion code '{text[:20]}' is not a number") from None
    if value != int(value) or not 0 <= value < len(EMOTIONS):
        raise RowError(sample_id, f"emotion code {text} is not one of 0..{len(EMOTIONS) - 1}")
    return EMOTIONS[int(value)]


def _aus(folder: Path) -> str:
    """The sequence's action units from its FACS file ("1+2+5+25"); "" when there is none."""
    if not folder.is_dir():
        return ""
    files = sorted(p for p in folder.glob("*.txt") if _visible(p))
    if not files:
        return ""
    aus = []
    for line in files[0].read_text(errors="replace").splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            aus.append(str(int(float(parts[0]))))
        except ValueError:
            log.warning("%s: cannot read AU from line '%s'; AUs left empty", files[0], line)
            return ""
    return "+".join(aus)


def ckplus_peak_images(
    root: Path | str,
    frames_per_sequence: int = 3,
    size: int = DEFAULT_SIZE,
    *,
    neutral_frames: int = 0,
    dataset: str = "ckplus",
    crop: Crop | None = None,
) -> ImageSet:
    """The last `frames_per_sequence` frames (up to the peak) of every labelled sequence,
    grey and resized to size x size (whole frames unless `crop` cuts the face out first),
    labelled with the sequence's emotion; plus its first `neutral_frames` frames labelled
    "neutral" (frames already taken as peak frames are not repeated)."""
    if frames_per_sequence < 1 or neutral_frames < 0:
        raise MekitError(
            f"frames_per_sequence must be >= 1 and neutral_frames >= 0, got "
            f"{frames_per_sequence} and {neutral_frames}"
        )
    size = check_size(size)
    result = load_ckplus(root, dataset=dataset)
    rows = Rows(skipped=list(result.skipped))
    for sample in result.samples:
        end = sample.frame_numbers.index(sample.apex) + 1
        first_peak = max(0, end - frames_per_sequence)
        picks = [(i, "neutral") for i in range(min(neutral_frames, first_peak))]
        picks += [(i, sample.emotion) for i in range(first_peak, end)]
        for i, label in picks:
            id_ = f"{sample.id}/{sample.frame_numbers[i]}"
            try:
                image = read_grey(sample.frames[i], size, crop)
            except (ValueError, OSError) as e:
                rows.skipped.append(Skipped(id_, f"{e}; replace the file"))
                continue
            rows.add(id_, image, label, subject=sample.subject)
    for s in rows.skipped[len(result.skipped) :]:
        log.warning("skipping %s: %s", s.id, s.reason)
    return rows.image_set(dataset, size)
