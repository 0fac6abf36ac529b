"""FER2013 (Goodfellow et al., ICONIP 2013): 35,887 grey 48x48 faces in seven emotions, for
pretraining on macro expressions.

Two layouts are read:

* the official CSV, `fer2013.csv` (found in the folder given or its `fer2013/` subfolder), with
  columns `emotion,pixels,Usage`: `emotion` a code 0..6, `pixels` 2304 space-separated values
  0..255 (row-major 48x48), `Usage` one of Training (28,709), PublicTest (3,589), PrivateTest
  (3,589). The Kaggle re-release `icml_face_data.csv` (header `emotion, Usage, pixels`) reads
  the same: column names are matched with spaces stripped and case ignored. A CSV without
  `Usage` (the competition's train.csv) reads with split "". Ids are
  `f"fer2013/{row:05d}"`, the 0-based data row of the CSV (line row + 2), so they do not
  change with `usage`.
* the image-folder re-release, `ROOT/train/{angry,disgust,...}/*.jpg` and `ROOT/test/...`: the
  split is the folder name ("train", "test"), ids `f"fer2013/{split}/{emotion}/{file stem}"`.

The codes 0..6 are angry, disgust, fear, happy, sad, surprise, neutral; they are named as the
micro-expression corpora name them: anger, disgust, fear, happiness, sadness, surprise,
neutral (see `EMOTIONS`). FER2013 has no subject ids (subjects are ""). Rows with a bad
emotion code or pixel string are listed in `skipped` with their CSV line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from mekit.data.images import ImageSet, Rows, check_size, read_labelled_folders, resize
from mekit.data.schema import Skipped
from mekit.data.sheets import read_book
from mekit.errors import MekitError

log = logging.getLogger(__name__)

SIDE = 48
PIXELS = SIDE * SIDE
# Code -> name, in the micro-expression corpora's words (FER2013 says angry, happy, sad).
EMOTIONS: tuple[str, ...] = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "sadness",
    "surprise",
    "neutral",
)
FER_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# The image-folder release's folder names -> our names.
FOLDER_NAMES: dict[str, str] = dict(zip(FER_NAMES, EMOTIONS, strict=True))
USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
CSV_NAMES: tuple[str, ...] = ("fer2013.csv", "icml_face_data.csv")
COLUMNS: tuple[str, ...] = ("emotion", "pixels", "Usage")  # the official header
REQUIRED = ("emotion", "pixels")


def find_source(path: Path | str) -> Path:
    """The FER2013 CSV, or the folder of the image-folder release, at or inside `path`."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise MekitError(
            f"FER2013 file or folder {path} does not exist; pass fer2013.csv or the folder "
            "holding it"
        )
    for folder in (path, path / "fer2013"):
        for name in CSV_NAMES:
            if (folder / name).is_file():
                return folder / name
    if _split_folders(path):
        return path
    raise MekitError(
        f"no FER2013 data in {path}: expected fer2013.csv (columns emotion,pixels,Usage) in it "
        "or in its fer2013/ subfolder, or the image-folder release train/{angry,...}/*.jpg"
    )


def looks_like(root: Path) -> bool:
    """True when `root` holds fer2013.csv (or icml_face_data.csv) or the image-folder release."""
    try:
        return Path(root).is_dir() and find_source(root) is not None
    except MekitError:
        return False


def load_fer2013(
    path_or_dir: Path | str,
    *,
    usage: str | Iterable[str] | None = None,
    dataset: str = "fer2013",
    size: int = SIDE,
) -> ImageSet:
    """FER2013 as an `ImageSet` of 48x48 grey faces (all of it, or the `usage` split(s):
    Training, PublicTest, PrivateTest; "train"/"test" for the image-folder release).

    `size` other than 48 resizes every image (to join FER2013 with a set of another size).
    """
    size = check_size(size)
    source = find_source(path_or_dir)
    wanted = _wanted(usage)
    if source.is_dir():
        result = _load_folders(source, wanted, dataset, size)
    else:
        result = _load_csv(source, wanted, dataset, size)
    for s in result.skipped:
        log.warning("skipping %s: %s", s.id, s.reason)
    log.info(
        "%s: %d images from %s (%d skipped)", dataset, len(result), source, len(result.skipped)
    )
    return result


def _wanted(usage: str | Iterable[str] | None) -> set[str] | None:
    if usage is None:
        return None
    names = [usage] if isinstance(usage, str) else list(usage)
    return {str(u).strip().lower() for u in names}


def read_table(path: Path) -> tuple[pd.DataFrame, str | None]:
    """The CSV with columns renamed to emotion, pixels (and Usage when present), as text."""
    df = read_book(
        path,
        "FER2013 file",
        lambda p: pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True),
        fix="pass fer2013.csv or the folder holding it",
    )
    found = {str(c).strip().lower(): c for c in df.columns}
    missing = [c for c in REQUIRED if c.lower() not in found]
    if missing:
        raise MekitError(
            f"FER2013 file {path} lacks column(s) {', '.join(missing)}; expected the header "
            f"{','.join(COLUMNS)}, found {', '.join(map(str, df.columns)) or 'no columns'}"
        )
    rename = {found[c.lower()]: c for c in COLUMNS if c.lower() in found}
    usage = "Usage" if "usage" in found else None
    return df.rename(columns=rename)[list(rename.values())], usage


def _load_csv(path: Path, wanted: set[str] | None, dataset: str, size: int) -> ImageSet:
    df, usage_column = read_table(path)
    usages = df[usage_column].str.strip() if usage_column else pd.Series([""] * len(df), dtype=str)
    if wanted is not None:
        present = sorted(set(usages))
        if usage_column is None:
            raise MekitError(f"{path} has no Usage column, so it cannot be filtered by usage")
        unknown = wanted - {u.lower() for u in present}
        if unknown:
            raise MekitError(
                f"usage {', '.join(sorted(unknown))} not in {path}; its Usage values are "
                f"{', '.join(present)}"
            )
        keep = usages.str.lower().isin(wanted).to_numpy()
    else:
        keep = np.ones(len(df), dtype=bool)
    codes = pd.to_numeric(df["emotion"].str.strip(), errors="coerce").to_numpy(dtype=float)
    cells, texts, splits = df["emotion"].tolist(), df["pixels"].tolist(), usages.tolist()
    rows = Rows()
    for row in np.flatnonzero(keep).tolist():
        id_ = f"{dataset}/{row:05d}"
        where = f"{path.name} line {row + 2}"
        code = codes[row]
        if not (np.isfinite(code) and code == int(code) and 0 <= code < len(EMOTIONS)):
            rows.skipped.append(
                Skipped(
                    id_, f"emotion '{cells[row]}' is not a code 0..{len(EMOTIONS) - 1} ({where})"
                )
            )
            continue
        try:
            image = _pixels(texts[row])
        except ValueError as e:
            rows.skipped.append(Skipped(id_, f"{e} ({where})"))
            continue
        if size != SIDE:
            image = resize(image, size)
        rows.add(id_, image, EMOTIONS[int(code)], split=splits[row])
    return rows.image_set(dataset, size)


def _pixels(text: str) -> np.ndarray:
    """A 48x48 uint8 image from FER2013's space-separated pixel string."""
    try:
        values = np.fromstring(text, dtype=np.int32, sep=" ")  # text mode: not deprecated
    except ValueError:
        raise ValueError("pixels are not all whole numbers separated by spaces") from None
    if values.size != PIXELS:
        raise ValueError(f"pixels has {values.size} values, expected {PIXELS} (48x48)")
    if values.min() < 0 or values.max() > 255:
        raise ValueError("pixels has values outside 0..255")
    return values.astype(np.uint8).reshape(SIDE, SIDE)


def _split_folders(root: Path) -> list[Path]:
    """The split folders (train/, test/, ...) of the image-folder release: those holding at
    least four of FER2013's emotion folders."""
    names = set(FER_NAMES) | set(EMOTIONS)
    splits = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        inside = {p.name.lower() for p in folder.iterdir() if p.is_dir()}
        if len(inside & names) >= 4:
            splits.append(folder)
    return splits


def _load_folders(root: Path, wanted: set[str] | None, dataset: str, size: int) -> ImageSet:
    splits = _split_folders(root)
    if wanted is not None:
        unknown = wanted - {s.name.lower() for s in splits}
        if unknown:
            raise MekitError(
                f"usage {', '.join(sorted(unknown))} not in {root}; its split folders are "
                f"{', '.join(s.name for s in splits)}"
            )
        splits = [s for s in splits if s.name.lower() in wanted]
    rows = Rows()
    for folder in splits:
        rows.extend(
            read_labelled_folders(
                folder,
                size,
                id_prefix=f"{dataset}/{folder.name}",
                rename=FOLDER_NAMES,
                split=folder.name,
            )
        )
    return rows.image_set(dataset, size)
