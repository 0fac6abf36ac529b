"""The action-unit model: read the packaged one, run it, say where each AU was seen.

`AUDetector` runs AUNet (`mekit.models.au_net`): (3, 28, 28) u, v, strain of an onset -> apex
flow (any scale: it is min-max normalised per sample here, as in training) -> the probability
of each AU (the mean over the flow and its mirror image); an AU is present from the threshold
its file records. `findings` adds the face region each AU acts on and the side of the image
that moved there. `in_au_layout` moves a flow of a crop laid out otherwise (a face at the
frame's edge, other face settings) into the layout the model learnt. The packaged model is
`shipped_model_path()`; it was trained on mekit's synthetic faces only by
`mekit.app.au_training` (RETRAIN_COMMAND, bit-for-bit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from mekit.data.facs import AU_NAMES
from mekit.errors import MekitError
from mekit.faces.realign import crop_matrix, realign
from mekit.models.au_net import AU_LABELS
from mekit.motion.normalise import minmax_flow
from mekit.train.checkpoint import LoadedModel, load_model, model_paths
from mekit.train.metrics import present_aus
from mekit.train.multilabel import sigmoid_probabilities

log = logging.getLogger(__name__)

MODEL_NAME = "aunet"
SHIPPED_STEM = "au-motion"  # src/mekit/models/weights/au-motion.{safetensors,json}
AU_INPUT_SIZE = 28  # px of the (u, v, strain) input
THRESHOLD = 0.5  # an AU is reported present from this probability on (unless the file says)
RETRAIN_COMMAND = "python -m mekit.app.au_training --out src/mekit/models/weights/au-motion"

AUS: tuple[int, ...] = tuple(int(label.removeprefix("AU")) for label in AU_LABELS)
# The face region each AU acts on (FACS), for reports.
AU_REGIONS: dict[int, str] = {
    1: "brows",
    2: "brows",
    4: "brows",
    6: "eyes",
    7: "eyes",
    45: "eyes",
    9: "nose",
    10: "mouth",
    12: "mouth",
    14: "mouth",
    15: "mouth",
    20: "mouth",
    25: "mouth",
    17: "chin",
}
# Rows of a face crop (fractions of its height) each region spans, for the side it moved on.
REGION_ROWS: dict[str, tuple[float, float]] = {
    "brows": (0.0, 0.32),
    "eyes": (0.22, 0.45),
    "nose": (0.35, 0.65),
    "mouth": (0.6, 0.88),
    "chin": (0.8, 1.0),
}


def shipped_model_path() -> Path:
    """The sidecar of the AU model inside the package."""
    return Path(str(resources.files("mekit.models").joinpath("weights", SHIPPED_STEM + ".json")))


@dataclass(frozen=True)
class AUFinding:
    """One action unit of an event: its probability and where on the face it was seen
    ("brows", "eyes", ...; side "left" / "right" of the image, or "both")."""

    au: int
    probability: float
    region: str
    side: str

    @property
    def name(self) -> str:
        return AU_NAMES.get(self.au, "")

    @property
    def code(self) -> str:
        return f"AU{self.au}"

    def to_json(self) -> dict[str, object]:
        return {
            "au": self.au,
            "name": self.name,
            "probability": round(self.probability, 4),
            "region": self.region,
            "side": self.side,
        }


class AUDetector:
    """The AU model and how to read its output; `AUDetector.shipped()` for the packaged one."""

    def __init__(self, loaded: LoadedModel, threshold: float = THRESHOLD) -> None:
        # Channels-last convolutions: 1.3-1.5x faster for one event on a CPU thread (the same
        # probabilities to about 1e-6).
        loaded.model.to(memory_format=torch.channels_last)
        self.loaded = loaded
        self.threshold = threshold
        self.aus = tuple(int(label.removeprefix("AU")) for label in loaded.labels)

    @classmethod
    def load(cls, path: Path) -> AUDetector:
        loaded = load_model(path)
        if loaded.name != MODEL_NAME:
            raise MekitError(f"{model_paths(path)[1]} is a {loaded.name!r}, not an AU model")
        return cls(loaded, float(loaded.input.get("threshold", THRESHOLD)))

    @classmethod
    def shipped(cls) -> AUDetector:
        return _shipped()

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, n AUs) probabilities for (N, 3, 28, 28) u, v, strain of any scale: the mean over
        each flow and its mirror image (AUs are labelled without a side, so both must agree)."""
        return sigmoid_probabilities(self.loaded.model, minmax_flow(features))

    def predict(self, features: np.ndarray) -> list[frozenset[int]]:
        """The AUs at or above the threshold, per sample."""
        return present_aus(self.probabilities(features), self.aus, self.threshold)

    def findings(self, features: np.ndarray, motion: np.ndarray | None = None) -> list[AUFinding]:
        """The AUs of one event ((3, 28, 28) u, v, strain), most probable first, each with its
        region and side (from `motion`, a flow magnitude over the same face crop, when given;
        else from the u, v given)."""
        probs = self.probabilities(features[None])[0]
        if motion is None:
            motion = np.hypot(features[0], features[1])
        found = [
            AUFinding(a, float(p), AU_REGIONS.get(a, "face"), _side(motion, AU_REGIONS.get(a)))
            for a, p in zip(self.aus, probs, strict=True)
            if p >= self.threshold
        ]
        return sorted(found, key=lambda f: -f.probability)


def in_au_layout(features: np.ndarray, landmarks: np.ndarray, side: int) -> np.ndarray:
    """(3, S, S) u, v, strain of an aligned face crop `side` px wide (`landmarks` in its px)
    in the layout the AU model was trained on: mekit's default alignment (`FaceConfig()`, as
    `mekit.synth.au_flows` lays out its faces). The same array when the crop is already laid
    out so (the usual case); warped (`mekit.faces.realign`) when the crop was fitted inside
    the frame (a face at the frame's edge or filling it) or made with other face settings."""
    matrix = crop_matrix(landmarks, (side, side), features.shape[-1])
    off = np.abs(matrix - np.eye(2, 3))
    if off[:, :2].max() < 1e-3 and off[:, 2].max() < 0.02:  # px of the S px crop
        return features
    return realign(features, matrix, vectors=(0, 1))


@cache
def _shipped() -> AUDetector:
    path = shipped_model_path()
    if not path.is_file():
        raise MekitError(f"the packaged AU model {path} is missing; retrain it: {RETRAIN_COMMAND}")
    return AUDetector.load(path)


def _side(motion: np.ndarray, region: str | None, ratio: float = 1.5) -> str:
    """ "left" / "right" (of the image) when one half of `region`'s rows moved `ratio` times
    more than the other, else "both"."""
    h, w = motion.shape
    top, bottom = REGION_ROWS.get(region or "", (0.0, 1.0))
    rows = np.abs(np.nan_to_num(motion[int(top * h) : max(int(top * h) + 1, int(bottom * h))]))
    left, right = float(rows[:, : w // 2].sum()), float(rows[:, w - w // 2 :].sum())
    if left > ratio * right:
        return "left"
    if right > ratio * left:
        return "right"
    return "both"
