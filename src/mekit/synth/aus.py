"""FACS action units as smooth displacement fields anchored on the 68 dlib landmarks.

An AU is a few Gaussian bumps, each centred on a landmark (or a weighted mix of landmarks),
carrying a displacement direction given in the *face frame*: x along the eye line (towards the
image-right eye), y down. Bilateral bumps are written once for the image-left half of the face
("out" = away from the midline) and mirrored through the 68-point permutation, so a mirrored or
rotated face moves the right way. Widths are fractions of the face (jaw) width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from mekit.data.facs import AU_NAMES  # noqa: F401  (re-exported: the AUs this module renders)
from mekit.errors import MekitError
from mekit.synth.base_faces import MIRROR_PERMUTATION


@dataclass(frozen=True)
class Bump:
    """One Gaussian displacement bump of an AU.

    at: landmark weights whose weighted mean is the centre ({48: 1.0} = on the lip corner).
    direction: (out, down) for bilateral bumps, (x, y) in the face frame otherwise.
    sigma: (along eye line, across) as fractions of the face width.
    """

    at: Mapping[int, float]
    direction: tuple[float, float]
    weight: float = 1.0
    sigma: tuple[float, float] = (0.06, 0.06)
    bilateral: bool = True


Where = int | Mapping[int, float]
Sigma = float | tuple[float, float]


def _b(at: Where, out: float, down: float, w: float = 1.0, s: Sigma = 0.06, both: bool = True):
    """A bilateral bump (mirrored onto the other half); `both=False` for a midline one."""
    sig = (s, s) if isinstance(s, float) else s
    where = {at: 1.0} if isinstance(at, int) else dict(at)
    return Bump(where, (out, down), w, sig, bilateral=both)


def _mid(at: Where, x: float, y: float, w: float = 1.0, s: Sigma = 0.06) -> Bump:
    return _b(at, x, y, w, s, both=False)


# A unilateral AU acts on one half of the image (the subject's right is the image left).
SIDES: tuple[str, ...] = ("", "image_left", "image_right")

# Landmarks of the image-left half: brow 17 (outer)..21 (inner), eye 36 (outer)..39 (inner),
# upper lid 37-38, lower lid 40-41, nostril wing 31, lip corner 48, lower lip 58-59.
AU_LIBRARY: dict[int, tuple[Bump, ...]] = {
    1: (_b(21, 0.0, -1.0, 1.0, 0.07), _b(20, 0.0, -1.0, 0.7, 0.07)),
    2: (_b(18, 0.15, -1.0, 1.0, 0.07), _b(17, 0.15, -1.0, 0.8, 0.07), _b(19, 0.0, -1.0, 0.5)),
    4: (_b(21, -0.6, 0.8, 1.0, 0.06), _b(20, -0.4, 0.9, 0.8, 0.06), _b(19, 0.0, 1.0, 0.5)),
    6: (
        _b({40: 0.3, 41: 0.3, 31: 0.1, 2: 0.3}, 0.15, -1.0, 1.0, 0.09),
        _b({40: 0.5, 41: 0.5}, 0.0, -1.0, 0.5, 0.04),
        _b(36, 0.0, -0.5, 0.3, 0.04),
    ),
    7: (_b({40: 0.5, 41: 0.5}, 0.0, -1.0, 1.0, 0.045), _b({37: 0.5, 38: 0.5}, 0.0, 0.3, 0.5, 0.04)),
    9: (
        _b(31, 0.1, -1.0, 1.0, 0.05),
        _b({29: 0.4, 31: 0.3, 39: 0.3}, 0.0, -1.0, 0.7, 0.05),
        _b(21, 0.0, 0.5, 0.4, 0.05),
        _b(50, 0.0, -1.0, 0.3, 0.05),
        _mid(33, 0.0, -0.6, 0.5, 0.05),
    ),
    10: (
        _b(50, 0.0, -1.0, 1.0, 0.05),
        _b(49, 0.1, -1.0, 0.8, 0.05),
        _b(31, 0.0, -0.4, 0.4, 0.05),
        _mid(51, 0.0, -1.0, 1.0, 0.05),
        _mid(62, 0.0, -1.0, 0.8, 0.05),
    ),
    12: (
        _b(48, 0.6, -0.8, 1.0, 0.06),
        _b(60, 0.6, -0.8, 0.6, 0.05),
        _b({48: 0.5, 31: 0.5}, 0.3, -0.9, 0.4, 0.07),
        _b(59, 0.5, -0.6, 0.5, 0.05),
        _b(49, 0.4, -0.5, 0.5, 0.05),
    ),
    14: (_b(48, 1.0, -0.15, 1.0, 0.05), _b(60, 1.0, 0.0, 0.6, 0.05)),
    15: (
        _b(48, 0.15, 1.0, 1.0, 0.06),
        _b(59, 0.0, 1.0, 0.6, 0.05),
        _b(60, 0.0, 1.0, 0.5, 0.05),
        _b({48: 0.5, 5: 0.5}, 0.0, 0.6, 0.4, 0.06),
    ),
    17: (
        _mid({57: 0.4, 8: 0.6}, 0.0, -1.0, 1.0, 0.08),
        _mid(57, 0.0, -1.0, 0.8, 0.06),
        _mid(66, 0.0, -0.5, 0.4, 0.05),
        _b(58, 0.0, -0.8, 0.6, 0.06),
    ),
    20: (_b(48, 1.0, 0.25, 1.0, 0.06), _b(59, 0.7, 0.2, 0.6, 0.05), _b(60, 1.0, 0.1, 0.6, 0.05)),
    25: (
        _mid(57, 0.0, 1.0, 1.0, 0.05),
        _mid(66, 0.0, 1.0, 1.0, 0.05),
        _mid(51, 0.0, -0.3, 0.4, 0.05),
        _b(58, 0.0, 0.8, 0.7, 0.05),
        _b(67, 0.0, 0.8, 0.7, 0.05),
    ),
    # Upper lid down over the eye; wide along the eye line so the whole lid moves together.
    45: (_b({37: 0.25, 38: 0.25, 40: 0.25, 41: 0.25}, 0.0, 1.0, 1.0, (0.11, 0.055)),),
}

_REPRESSION = tuple(c for n in (1, 2, 3) for c in combinations((14, 15, 17), n))

# Every AU combination an emotion may show; a clip draws one uniformly.
EMOTION_AUS: dict[str, tuple[tuple[int, ...], ...]] = {
    "happiness": ((6, 12),),
    "surprise": ((1, 2), (1, 2, 25)),
    "disgust": ((9,), (10,), (4, 9), (4, 10)),
    "repression": _REPRESSION,
    "sadness": ((1, 4, 15),),
    "fear": ((1, 2, 4, 20),),
    "anger": ((4, 7),),
}


def sample_aus(emotion: str, rng: np.random.Generator) -> tuple[int, ...]:
    """One AU combination of `emotion`, drawn uniformly from `EMOTION_AUS[emotion]`."""
    if emotion not in EMOTION_AUS:
        raise MekitError(f"unknown emotion '{emotion}'; valid: {', '.join(EMOTION_AUS)}")
    choices = EMOTION_AUS[emotion]
    return choices[int(rng.integers(len(choices)))]


def format_aus(aus: Sequence[int]) -> str:
    """CASME II style AU string: (6, 12) -> '6+12'."""
    return "+".join(str(a) for a in sorted(aus))


@dataclass(frozen=True)
class FaceFrame:
    """Face axes in image coordinates: ex along the eye line, ey down; width = jaw width (px)."""

    ex: np.ndarray
    ey: np.ndarray
    width: float


def face_frame(landmarks: np.ndarray) -> FaceFrame:
    left = landmarks[36:42].mean(axis=0)
    right = landmarks[42:48].mean(axis=0)
    ex = (right - left) / np.linalg.norm(right - left)
    ey = np.array([-ex[1], ex[0]])
    return FaceFrame(ex, ey, float(np.linalg.norm(landmarks[16] - landmarks[0])))


def eye_height(landmarks: np.ndarray) -> float:
    """Mean distance (px) between the upper and lower lid of the two eyes."""
    heights = [
        np.linalg.norm(landmarks[[a, b]].mean(0) - landmarks[[c, d]].mean(0))
        for a, b, c, d in ((37, 38, 40, 41), (43, 44, 46, 47))
    ]
    return float(np.mean(heights))


def _bumps(
    au: int,
    landmarks: np.ndarray,
    frame: FaceFrame,
    side: str = "",
    library: Mapping[int, tuple[Bump, ...]] = AU_LIBRARY,
) -> list[tuple[np.ndarray, np.ndarray, float, tuple[float, float]]]:
    """(centre px, image direction, weight, sigma px) of every bump of `au`, both halves.

    side: "" both halves; "image_left" / "image_right" only the bilateral bumps of that half
    of the image, plus the midline bumps at half weight (a unilateral AU, CASME II's L/R codes).
    """
    if side not in SIDES:
        raise MekitError(f"unknown side '{side}'; valid: {', '.join(map(repr, SIDES))}")
    if au not in library:
        raise MekitError(f"unknown action unit {au}; valid: {', '.join(map(str, library))}")
    out = []
    for bump in library[au]:
        halves = [(bump.at, -1.0), ({MIRROR_PERMUTATION[i]: w for i, w in bump.at.items()}, 1.0)]
        if side:
            halves = [halves[0] if side == "image_left" else halves[1]]
        scale = 0.5 if side and not bump.bilateral else 1.0
        for at, sign in halves if bump.bilateral else [(bump.at, 1.0)]:
            idx = list(at)
            weights = np.array([at[i] for i in idx]) / sum(at.values())
            centre = weights @ landmarks[idx]
            dx, dy = bump.direction
            vec = (sign * dx if bump.bilateral else dx) * frame.ex + dy * frame.ey
            vec = vec / max(np.linalg.norm(vec), 1e-12)
            sigma = (bump.sigma[0] * frame.width, bump.sigma[1] * frame.width)
            out.append((centre, vec, bump.weight * scale, sigma))
    return out


def au_field(
    aus: Mapping[int, float] | Sequence[int],
    landmarks: np.ndarray,
    shape: tuple[int, int],
    sides: Mapping[int, str] | None = None,
    library: Mapping[int, tuple[Bump, ...]] = AU_LIBRARY,
) -> np.ndarray:
    """Unnormalised displacement field (H, W, 2) float32, (dx, dy) px, of AUs at intensities.

    `aus` maps AU -> intensity, or lists AUs at intensity 1. `sides` maps an AU to
    "image_left" or "image_right" for a unilateral AU (default: both halves, see `_bumps`).
    `library` gives each AU's bumps (default `AU_LIBRARY`).
    """
    sides = sides or {}
    intensities = dict(aus) if isinstance(aus, Mapping) else {a: 1.0 for a in aus}
    frame = face_frame(landmarks)
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w, 2), np.float32)
    for au, level in intensities.items():
        for centre, vec, weight, (sx, sy) in _bumps(
            au, landmarks, frame, sides.get(au, ""), library
        ):
            rx, ry = xs - np.float32(centre[0]), ys - np.float32(centre[1])
            along = rx * np.float32(frame.ex[0]) + ry * np.float32(frame.ex[1])
            across = rx * np.float32(frame.ey[0]) + ry * np.float32(frame.ey[1])
            g = np.exp(-0.5 * ((along / sx) ** 2 + (across / sy) ** 2)) * np.float32(level * weight)
            field[..., 0] += g * np.float32(vec[0])
            field[..., 1] += g * np.float32(vec[1])
    return field


def scale_to_max(field: np.ndarray, amplitude: float) -> np.ndarray:
    """`field` scaled so that its largest magnitude is `amplitude` px."""
    peak = float(np.sqrt((field.astype(np.float64) ** 2).sum(-1)).max())
    if peak <= 0:
        raise MekitError("the AU field is zero on this image; is the face inside the frame?")
    return (field * np.float32(amplitude / peak)).astype(np.float32)


def expression_field(
    aus: Mapping[int, float] | Sequence[int],
    landmarks: np.ndarray,
    shape: tuple[int, int],
    amplitude: float,
) -> np.ndarray:
    """Apex displacement field (H, W, 2) of `aus` whose largest magnitude is `amplitude` px."""
    return scale_to_max(au_field(aus, landmarks, shape), amplitude)


# Peak of the blink field over the eye height: the Gaussian is centred mid-eye, so the peak
# must exceed the eye height for the lower part of the opening to be covered too.
BLINK_OVERSHOOT = 1.25


def blink_field(landmarks: np.ndarray, shape: tuple[int, int], closure: float = 1.0) -> np.ndarray:
    """AU45 field (H, W, 2): the upper lids come down; closure 1 closes the eyes.

    Its largest magnitude is closure x `BLINK_OVERSHOOT` x the eye height.
    """
    peak = closure * BLINK_OVERSHOOT * eye_height(landmarks)
    return scale_to_max(au_field([45], landmarks, shape), peak)
