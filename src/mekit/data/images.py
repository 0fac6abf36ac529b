"""Labelled still images for pretraining (macro-expression corpora): `ImageSet` and a loader for
any labelled image folder.

An `ImageSet` holds every image in memory as one (N, H, W) uint8 grey array: the corpora it is
for are small (FER2013's 35,887 images of 48x48 are 83 MB). Images not already of the size the
caller asks for are resized to it (default 48x48, FER2013's own size, so sets from different
corpora can be joined with `ImageSet.concat`). Resizing keeps the whole image: pass `crop`
(a function from a grey image to its face region, e.g. built on `mekit.faces`) where the face is
a small part of the frame, as in CK+'s 640x490 frames.

The image-folder layout is `ROOT/{label}/*.png|jpg|...` (one folder per class, any depth-1
names; hidden folders and non-image files are ignored). Labels are the folder names lower-cased;
ids are `f"{ROOT.name}/{label}/{file stem}"`, subjects "" (unknown) and split "".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mekit.data.records import IMAGE_SUFFIXES
from mekit.data.schema import Skipped
from mekit.errors import MekitError

log = logging.getLogger(__name__)

DEFAULT_SIZE = 48  # FER2013's size: sets from different corpora then share one shape
Crop = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Grey images with one emotion label each, plus what was left out and why.

    `images[i]` is the image with id `ids[i]`, label `labels[i]` (a lower-cased emotion name),
    subject `subjects[i]` ("" when the corpus does not say) and split `split[i]` (the corpus's
    own split, e.g. FER2013's Usage; "" when it has none). The image array is read-only.
    """

    ids: tuple[str, ...]
    images: np.ndarray  # (N, H, W) uint8
    labels: tuple[str, ...]
    subjects: tuple[str, ...]
    split: tuple[str, ...]
    dataset: str
    skipped: tuple[Skipped, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.images.ndim != 3 or self.images.dtype != np.uint8:
            raise ValueError(
                f"ImageSet images must be an (N, H, W) uint8 array, got "
                f"{self.images.shape} {self.images.dtype}"
            )
        lengths = {
            "images": len(self.images),
            "labels": len(self.labels),
            "subjects": len(self.subjects),
            "split": len(self.split),
        }
        if any(length != n for length in lengths.values()):
            raise ValueError(f"ImageSet with {n} ids has lengths {lengths}")
        if self.images.flags.writeable:
            images = self.images.view()
            images.flags.writeable = False
            object.__setattr__(self, "images", images)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of every image."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def label_names(self) -> tuple[str, ...]:
        """The classes present, sorted."""
        return tuple(sorted(set(self.labels)))

    def select(self, index: Sequence[int] | np.ndarray) -> ImageSet:
        """The images at `index` (positions, or a boolean mask of length N); skipped kept."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"mask of shape {idx.shape} for an ImageSet of {len(self)}")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.intp, copy=False).reshape(-1)
        pick = idx.tolist()
        return ImageSet(
            ids=tuple(self.ids[i] for i in pick),
            images=self.images[idx],
            labels=tuple(self.labels[i] for i in pick),
            subjects=tuple(self.subjects[i] for i in pick),
            split=tuple(self.split[i] for i in pick),
            dataset=self.dataset,
            skipped=self.skipped,
        )

    def relabel(self, scheme: Any) -> ImageSet:
        """Labels mapped through a label scheme (`mekit.data.labels.load_scheme(...)`), looked up
        by (this set's dataset, emotion) with the scheme's '*' fallback; images whose emotion
        the scheme leaves out are dropped and listed in `skipped`."""
        keep: list[int] = []
        labels: list[str] = []
        skipped = list(self.skipped)
        cache: dict[str, str | None] = {}
        for i, emotion in enumerate(self.labels):
            if emotion not in cache:
                cache[emotion] = scheme.label_of(_Labelled(self.dataset, emotion))
            label = cache[emotion]
            if label is None:
                skipped.append(
                    Skipped(self.ids[i], f"emotion '{emotion}' is not in scheme {scheme.name}")
                )
            else:
                keep.append(i)
                labels.append(label)
        kept = self.select(keep)
        return ImageSet(
            ids=kept.ids,
            images=kept.images,
            labels=tuple(labels),
            subjects=kept.subjects,
            split=kept.split,
            dataset=self.dataset,
            skipped=tuple(skipped),
        )

    @staticmethod
    def concat(sets: Iterable[ImageSet], dataset: str | None = None) -> ImageSet:
        """One set from several of the same image size; `dataset` defaults to their names
        joined with '+'. Ids are kept as they are (they start with each corpus's name)."""
        sets = list(sets)
        if not sets:
            raise ValueError("ImageSet.concat needs at least one set")
        sizes = {s.size for s in sets}
        if len(sizes) > 1:
            raise MekitError(
                f"cannot join image sets of different sizes {sorted(sizes)}; "
                "load them with the same size"
            )
        return ImageSet(
            ids=tuple(i for s in sets for i in s.ids),
            images=np.concatenate([s.images for s in sets]),
            labels=tuple(x for s in sets for x in s.labels),
            subjects=tuple(x for s in sets for x in s.subjects),
            split=tuple(x for s in sets for x in s.split),
            dataset=dataset or "+".join(dict.fromkeys(s.dataset for s in sets)),
            skipped=tuple(x for s in sets for x in s.skipped),
        )


@dataclass(frozen=True)
class _Labelled:
    """What a label scheme reads of a sample: its dataset and emotion."""

    dataset: str
    emotion: str


def read_grey(path: Path, size: int | None = DEFAULT_SIZE, crop: Crop | None = None) -> np.ndarray:
    """The image at `path` as grey uint8 (cropped with `crop`, then resized to size x size
    unless `size` is None); ValueError when the file cannot be decoded."""
    data = np.fromfile(path, dtype=np.uint8)  # unlike cv2.imread, any path encoding works
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        raise ValueError(f"cannot decode image {path}")
    if crop is not None:
        image = np.ascontiguousarray(crop(image), dtype=np.uint8)
        if image.ndim != 2 or 0 in image.shape:
            raise ValueError(f"crop gave an empty or non-grey image for {path}")
    return resize(image, size)


def resize(image: np.ndarray, size: int | None) -> np.ndarray:
    """A grey image resized to size x size (area averaging when shrinking)."""
    if size is None or image.shape == (size, size):
        return image
    shrinking = image.shape[0] > size or image.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def check_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise MekitError(f"image size must be a positive whole number of pixels, got {size!r}")
    return int(size)


def load_image_folder(
    root: Path | str,
    size: int = DEFAULT_SIZE,
    *,
    dataset: str | None = None,
    rename: Mapping[str, str] | None = None,
    crop: Crop | None = None,
) -> ImageSet:
    """Every image of `root/{label}/*` as a grey size x size `ImageSet`.

    Labels are the folder names lower-cased, then mapped through `rename` (keys lower-case,
    e.g. {"happy": "happiness"}). Ids are `f"{root.name}/{label}/{file stem}"` and the set's
    dataset is `dataset` or `root.name`. Unreadable images and a second file with the same
    stem in one folder are listed in `skipped`.
    """
    root = Path(root)
    size = check_size(size)
    if not root.is_dir():
        raise MekitError(
            f"image folder {root} does not exist; expected ROOT/{{label}}/*.png|jpg "
            "(one folder per class)"
        )
    rows = read_labelled_folders(root, size, id_prefix=root.name, rename=rename, crop=crop)
    if not rows.ids:
        found = sorted(p.name for p in root.iterdir())[:10]
        raise MekitError(
            f"no images found in {root}/{{label}}/ ({', '.join(IMAGE_SUFFIXES)}); expected one "
            f"folder per class holding the images. Found: {', '.join(found) or 'nothing'}"
        )
    result = rows.image_set(dataset or root.name, size)
    log.info(
        "%s: %d images in %d classes from %s (%d skipped)",
        result.dataset,
        len(result),
        len(result.label_names()),
        root,
        len(result.skipped),
    )
    return result


@dataclass
class Rows:
    """An ImageSet being gathered, one image at a time."""

    ids: list[str] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    split: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def add(
        self, id_: str, image: np.ndarray, label: str, subject: str = "", split: str = ""
    ) -> None:
        self.ids.append(id_)
        self.images.append(image)
        self.labels.append(label)
        self.subjects.append(subject)
        self.split.append(split)

    def extend(self, other: Rows) -> None:
        for name in ("ids", "images", "labels", "subjects", "split", "skipped"):
            getattr(self, name).extend(getattr(other, name))

    def image_set(self, dataset: str, size: int) -> ImageSet:
        images = (
            np.stack(self.images).astype(np.uint8, copy=False)
            if self.images
            else np.zeros((0, size, size), np.uint8)
        )
        return ImageSet(
            ids=tuple(self.ids),
            images=images,
            labels=tuple(self.labels),
            subjects=tuple(self.subjects),
            split=tuple(self.split),
            dataset=dataset,
            skipped=tuple(self.skipped),
        )


def read_labelled_folders(
    root: Path,
    size: int,
    *,
    id_prefix: str,
    rename: Mapping[str, str] | None = None,
    crop: Crop | None = None,
    split: str = "",
) -> Rows:
    """The images of `root/{label}/*`, in label then file-name order, with ids
    `f"{id_prefix}/{label}/{stem}"`."""
    rename = {k.lower(): v for k, v in (rename or {}).items()}
    rows = Rows()
    seen: set[str] = set()
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for folder in sorted(folders, key=lambda p: (p.name.lower(), p.name)):
        name = folder.name.strip().lower()
        label = rename.get(name, name)
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
                continue
            id_ = f"{id_prefix}/{label}/{path.stem}"
            if id_ in seen:
                rows.skipped.append(
                    Skipped(id_, f"{path}: another image of label '{label}' has the same stem")
                )
                continue
            seen.add(id_)
            try:
                image = read_grey(path, size, crop)
            except (ValueError, OSError, cv2.error) as e:
                rows.skipped.append(Skipped(id_, f"{e}; replace or delete the file"))
                continue
            rows.add(id_, image, label, split=split)
    for s in rows.skipped:
        log.warning("skipping %s: %s", s.id, s.reason)
    return rows
