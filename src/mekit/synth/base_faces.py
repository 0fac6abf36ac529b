"""Base photographs for the synthetic corpus, their shipped dlib landmarks, and mirroring.

The two photos come with installed packages (scikit-image's astronaut, matplotlib's Grace
Hopper), so nothing licensed ships. Their 68 dlib landmarks are package data
(`base_landmarks.json`); `python -m mekit.synth --regenerate` (or `regenerate()`) recomputes
them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import re
from functools import cache
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from mekit.errors import MekitError

log = logging.getLogger(__name__)

BASE_FACES: tuple[str, ...] = ("astronaut", "grace_hopper")
LANDMARKS_FILE = "base_landmarks.json"

# 68-point index of the point that lands on index i after a horizontal flip (iBUG scheme).
MIRROR_PERMUTATION: tuple[int, ...] = (
    *range(16, -1, -1),  # jaw 0-16
    *range(26, 16, -1),  # brows 17-26
    27, 28, 29, 30,  # nose bridge
    35, 34, 33, 32, 31,  # nostrils
    45, 44, 43, 42, 47, 46,  # eye 36-41 <- other eye
    39, 38, 37, 36, 41, 40,  # eye 42-47 <- other eye
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,  # outer lip
    64, 63, 62, 61, 60, 67, 66, 65,  # inner lip
)  # fmt: skip


def load_photo(name: str) -> np.ndarray:
    """The base photo `name` as a BGR uint8 array (H, W, 3)."""
    if name == "astronaut":
        from skimage import data

        rgb = data.astronaut()
        return np.ascontiguousarray(rgb[:, :, ::-1])
    if name == "grace_hopper":
        from matplotlib import cbook

        path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise MekitError(f"cannot read matplotlib's sample photo {path}")
        return image
    raise MekitError(f"unknown base face '{name}'; valid: {', '.join(BASE_FACES)}")


@cache
def _shipped() -> dict[str, list[list[float]]]:
    text = resources.files("mekit.synth").joinpath(LANDMARKS_FILE).read_text()
    return json.loads(text)["landmarks"]


def load_landmarks(name: str) -> np.ndarray:
    """The shipped 68 dlib landmarks of base photo `name`, float64 (68, 2) as (x, y) pixels."""
    table = _shipped()
    if name not in table:
        raise MekitError(f"no shipped landmarks for '{name}'; valid: {', '.join(sorted(table))}")
    return np.asarray(table[name], dtype=np.float64)


def mirror(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip `image` left-right and move `landmarks` with it, keeping the 68-point semantics."""
    width = image.shape[1]
    flipped = landmarks[list(MIRROR_PERMUTATION)].copy()
    flipped[:, 0] = (width - 1) - flipped[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped


def _predictor_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MekitError("package face_recognition_models is not installed; pip install it")
    base = Path(list(spec.submodule_search_locations)[0])
    return base / "models" / "shape_predictor_68_face_landmarks.dat"


def detect_landmarks(image: np.ndarray) -> np.ndarray:
    """68 dlib landmarks (68, 2) of the largest face in BGR `image` (upsample 1)."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(_predictor_path()))
    rgb = np.ascontiguousarray(image[:, :, ::-1])
    boxes = detector(rgb, 1)
    if len(boxes) == 0:
        raise MekitError("dlib found no face")
    box = max(boxes, key=lambda b: b.width() * b.height())
    shape = predictor(rgb, box)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def regenerate(path: Path | None = None) -> Path:
    """Recompute the base photos' landmarks with dlib and write them to `path` (JSON)."""
    path = path or Path(__file__).with_name(LANDMARKS_FILE)
    table = {name: detect_landmarks(load_photo(name)).astype(int).tolist() for name in BASE_FACES}
    payload = {
        "source": "dlib frontal detector (upsample 1) + shape_predictor_68_face_landmarks",
        "landmarks": table,
    }
    text = json.dumps(payload, indent=1)
    text = re.sub(r"\[\s+(-?\d+),\s+(-?\d+)\s+\]", r"[\1, \2]", text)  # one point a line
    path.write_text(text + "\n")
    _shipped.cache_clear()
    log.info("wrote %s", path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--regenerate", action="store_true", help="recompute the landmarks")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: package)")
    args = parser.parse_args(argv)
    if args.regenerate:
        print(regenerate(args.out))
    else:
        for name in BASE_FACES:
            lm = load_landmarks(name)
            print(name, "jaw width", round(float(np.linalg.norm(lm[16] - lm[0])), 1))


if __name__ == "__main__":
    main()
