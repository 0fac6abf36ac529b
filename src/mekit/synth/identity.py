"""Per-subject identities: one base photo, reshaped, re-posed, re-lit and set on a new background.

Subject k (0-based) uses base photo k mod 2, mirrored on alternate pairs (k // 2 odd), then a
random landmark-driven shape morph (eye spacing, jaw width, nose length, mouth width), a
similarity transform to the output frame (face/jaw width about `face_width` px, face roughly
centred), skin tone / contrast / gamma, and a background outside a soft face mask. Everything is
rendered once per subject at output resolution; clips only warp the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mekit.synth.aus import face_frame
from mekit.synth.base_faces import BASE_FACES, load_landmarks, load_photo, mirror

LEFT_EYE_BROW = [*range(17, 22), *range(36, 42)]
RIGHT_EYE_BROW = [*range(22, 27), *range(42, 48)]
JAW = list(range(0, 17))
NOSE_LOWER = [30, 31, 32, 33, 34, 35]
MOUTH = list(range(48, 68))


@dataclass(frozen=True)
class Identity:
    """A subject's neutral face at output resolution.

    face: (S, S, 3) uint8 BGR face layer; mask: (S, S) float32 in [0, 1], 1 on the face;
    background: (S, S, 3) float32 BGR; landmarks: (68, 2) float64 px in the output frame.
    """

    subject: int
    base_face: str
    mirrored: bool
    face: np.ndarray
    mask: np.ndarray
    background: np.ndarray
    landmarks: np.ndarray

    @property
    def centre(self) -> np.ndarray:
        """Centre (x, y) px of the landmarks, the pivot of head rotation."""
        return self.landmarks.mean(axis=0)

    def neutral(self) -> np.ndarray:
        """The neutral composite frame, (S, S, 3) uint8 BGR."""
        m = self.mask[..., None]
        out = m * self.face.astype(np.float32) + (1 - m) * self.background
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def base_for_subject(subject: int) -> tuple[str, bool]:
    """(base photo name, mirrored) of 0-based subject index `subject`."""
    return BASE_FACES[subject % len(BASE_FACES)], (subject // len(BASE_FACES)) % 2 == 1


def morph_landmarks(lm: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Landmarks moved by random eye spacing, jaw width, nose length and mouth width changes."""
    ff = face_frame(lm)
    out = lm.copy()
    midline = lm[27:31].mean(axis=0)
    eye = rng.uniform(-0.04, 0.04) * strength * ff.width
    out[LEFT_EYE_BROW] -= eye * ff.ex
    out[RIGHT_EYE_BROW] += eye * ff.ex
    jaw = rng.uniform(-0.08, 0.08) * strength
    out[JAW] += jaw * ((lm[JAW] - midline) @ ff.ex)[:, None] * ff.ex
    nose = rng.uniform(-0.1, 0.1) * strength * float(np.linalg.norm(lm[33] - lm[27]))
    out[NOSE_LOWER] += nose * ff.ey
    mouth_centre = lm[MOUTH].mean(axis=0)
    mouth = rng.uniform(-0.1, 0.1) * strength
    out[MOUTH] += mouth * ((lm[MOUTH] - mouth_centre) @ ff.ex)[:, None] * ff.ex
    return out


def _rbf_offsets(
    centres: np.ndarray, values: np.ndarray, sigma: float, points: np.ndarray
) -> np.ndarray:
    """Gaussian-RBF interpolation of `values` (N, 2) given at `centres`, evaluated at points."""

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * sigma**2))

    k = kernel(centres, centres)
    weights = np.linalg.solve(k + 1e-3 * np.eye(len(centres)), values)
    return kernel(points, centres) @ weights


def _face_mask(lm: np.ndarray, size: int, width: float) -> np.ndarray:
    """Soft mask of the landmark hull extended up over the forehead."""
    ff = face_frame(lm)
    forehead = lm[17:27] - 0.22 * width * ff.ey
    hull = cv2.convexHull(np.concatenate([lm, forehead]).astype(np.float32))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, np.rint(hull).astype(np.int32), 255)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    return cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 2.5)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A plain studio-like background: a tinted gradient with low-frequency blotches."""
    base = rng.uniform(90, 230) + rng.uniform(-25, 25, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    ramp = (np.cos(angle) * xs + np.sin(angle) * ys) * rng.uniform(10, 50)
    coarse = rng.normal(0, 8, size=(5, 5, 1)) + rng.normal(0, 2, size=(5, 5, 3))
    blotch = cv2.resize(coarse.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    bg = base[None, None, :] + ramp[..., None] + blotch
    return np.clip(bg, 0, 255).astype(np.float32)


def _appearance(face: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Skin tone (per-channel gain), contrast, gamma and brightness of the face layer."""
    x = face.astype(np.float32)
    x *= (1 + rng.uniform(-0.08, 0.08, size=3) * strength).astype(np.float32)
    mean = x.mean(axis=(0, 1), keepdims=True)
    x = (x - mean) * np.float32(1 + rng.uniform(-0.15, 0.15) * strength) + mean
    x = np.clip(x, 0, 255)
    gamma = float(np.exp(rng.uniform(-0.15, 0.15) * strength))
    x = 255 * (x / 255) ** np.float32(gamma) + np.float32(rng.uniform(-10, 10) * strength)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def make_identity(
    subject: int,
    rng: np.random.Generator,
    frame_size: int = 192,
    face_width: float = 128.0,
    strength: float = 1.0,
) -> Identity:
    """Render subject `subject` (0-based) at `frame_size` px; `strength` scales the variation.

    strength 0 gives the base photo only scaled to `face_width`, level and centred.
    """
    base_face, mirrored = base_for_subject(subject)
    photo, lm = load_photo(base_face), load_landmarks(base_face)
    if mirrored:
        photo, lm = mirror(photo, lm)
    target = morph_landmarks(lm, rng, strength)

    # Similarity: morphed photo -> output frame (level eyes, then a small random roll).
    ff = face_frame(target)
    scale = face_width * (1 + rng.uniform(-0.05, 0.05) * strength) / ff.width
    roll = np.radians(rng.uniform(-4, 4) * strength) - np.arctan2(ff.ex[1], ff.ex[0])
    rot = np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]])
    centre = (target.min(axis=0) + target.max(axis=0)) / 2
    shift = rng.uniform(-6, 6, size=2) * strength
    dest = np.array([frame_size / 2, frame_size / 2 + 0.04 * frame_size]) + shift
    out_lm = (target - centre) @ rot.T * scale + dest

    # Backward map: output pixel -> morphed photo (inverse similarity) -> photo (RBF offsets).
    ys, xs = np.mgrid[0:frame_size, 0:frame_size].astype(np.float64)
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
    q = (grid - dest) @ rot / scale + centre
    ring = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    anchors = centre + 1.3 * ff.width * np.stack([np.cos(ring), np.sin(ring)], axis=1)
    centres = np.concatenate([target, anchors])
    values = np.concatenate([lm - target, np.zeros_like(anchors)])
    src = q + _rbf_offsets(centres, values, 0.15 * ff.width, q)
    map_x = src[:, 0].reshape(frame_size, frame_size).astype(np.float32)
    map_y = src[:, 1].reshape(frame_size, frame_size).astype(np.float32)
    face = cv2.remap(photo, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    face = _appearance(face, rng, strength)
    return Identity(
        subject=subject,
        base_face=base_face,
        mirrored=mirrored,
        face=face,
        mask=_face_mask(out_lm, frame_size, face_width),
        background=_background(rng, frame_size),
        landmarks=out_lm,
    )
