"""Synthetic onset -> apex flow images with exact action-unit labels, for the AU model.

Each sample is one face's AU displacement field (`mekit.synth.aus.au_field`) laid out as
mekit's face alignment crops it (`mekit.faces.align.alignment_matrix`), with the nuisances a real
flow carries, at 56 px, then (u, v, strain) area-averaged to 28 px and min-max normalised per
sample (`mekit.motion.normalise.minmax_flow`), as the shared composite flow images are:

- face: a base photo's 68 landmarks (mirrored on alternate subjects), shape-morphed as the
  corpus's identities are, then a random crop (scale, shift, roll) around mekit's alignment so
  tighter and looser face crops than mekit's own are covered;
- AUs: a FACS-typical combination (`PROTOTYPES`) or a random set of 1-3 AUs, each at its own
  intensity and its motion turned by up to 35 degrees, mirrored on the two halves (real people
  differ from the templates),
  a fifth of them on one side only (CASME II's L/R codes), the brow AUs of most samples with
  the forehead skin moving along (`SKIN_LIBRARY`), never AU1 with AU4 (`CANCELLING`); a few
  samples have none;
- nuisances: a blink (labelled AU45) of any size, residual head motion (a small affine flow),
  smooth and pixel flow noise from signal-to-noise ratios far below 1 up to clean, and the odd
  outlier pixel (as TV-L1 gives at eye corners and hair), which min-max scaling makes matter.

Options off by default (see `AUFlowConfig`) move the samples towards real CASME II flows:
taller crops (`crop_stretch`), AU7, AU10 and AU12 as real faces make them (`SHAPE_LIBRARY`,
`real_shapes`), AU6 with a smile (`cheek_with_smile`), weaker AUs (`intensity`) and other
noise ranges; a face-wide drift (`broad_noise`); flat patches of motion with sharp edges, as
TV-L1 gives real clips (`patch_noise`, `patch_share`).

A share of the samples (`rendered`; off by default, half for the packaged AU model) has its
flow measured instead of written: the field warps a face crop of a synthetic identity from
onset to apex, with a small lighting change and sensor noise on both frames, and TV-L1
estimates the flow, as for a real clip: smoothed, smaller than the true motion (about a third
of a 1 px peak at 56 px), and disturbed by the lighting change and noise, where the written
fields are exact up to their modelled noise.

Every sample draws from its own stream (seed, index): the same seed always gives the same bytes,
whatever the number of samples or workers.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import cache

import cv2
import numpy as np

from mekit.config import Config, check_range
from mekit.faces import FaceConfig
from mekit.faces.align import alignment_matrix
from mekit.motion.flow import optical_strain
from mekit.motion.normalise import minmax_flow
from mekit.procs import die_with_parent
from mekit.synth.aus import AU_LIBRARY, EMOTION_AUS, Bump, au_field
from mekit.synth.base_faces import BASE_FACES, MIRROR_PERMUTATION, load_landmarks
from mekit.synth.identity import make_identity, morph_landmarks
from mekit.synth.render import gaussian_noise

AUS: tuple[int, ...] = tuple(sorted(AU_LIBRARY))  # 1, 2, 4, ..., 25, 45
EXPRESSION_AUS: tuple[int, ...] = tuple(a for a in AUS if a != 45)
WORK = 56  # px the field and its noise are made at
SIZE = 28  # px of the output (STSTNet's 28 x 28)

# AU combinations common in spontaneous micro-expressions, besides the generator's emotion
# combinations: written with the combinations CASME II's coding sheet holds most often in mind
# (their counts in composite-dev were looked at; no flow of it trains anything).
PROTOTYPES: tuple[tuple[int, ...], ...] = (
    *{c for combos in EMOTION_AUS.values() for c in combos},
    (4,), (4, 7), (7,), (17,), (15, 17), (4, 10), (10,), (12,), (14,), (15,), (1, 2), (1,),
    (2,), (4, 9), (9,), (12, 15), (4, 7, 9), (4, 7, 10), (12, 17), (14, 17), (4, 15), (6,),
    (4, 17), (12, 14), (6, 12, 25), (20,), (25,), (10, 25), (1, 4), (4, 6, 7),
)  # fmt: skip


def _forehead(at: dict[int, float], out: float, down: float, weight: float) -> Bump:
    """A broad bilateral bump on the forehead skin above the brows (landmark weights that
    extrapolate from the eye through the brow)."""
    return Bump(at, (out, down), weight, (0.09, 0.1))


# The brow AUs with the forehead skin moving along (frontalis lifts it for AU1/AU2, the brow
# lowerer drags it down): real flows move the whole band above the brows, the corpus's
# templates only the brows; likewise the cheek under a smile. Drawn for
# `AUFlowConfig.forehead` of the samples.
SKIN_LIBRARY: dict[int, tuple[Bump, ...]] = {
    **AU_LIBRARY,
    1: (*AU_LIBRARY[1], _forehead({21: 1.8, 39: -0.8}, 0.0, -1.0, 0.8)),
    2: (*AU_LIBRARY[2], _forehead({18: 1.8, 37: -0.8}, 0.0, -1.0, 0.7)),
    4: (*AU_LIBRARY[4], _forehead({20: 1.7, 38: -0.7}, -0.3, 1.0, 0.7)),
    # A strong lip corner pull lifts the cheek and the skin under the eye a little (FACS).
    12: (
        *AU_LIBRARY[12],
        Bump({40: 0.3, 41: 0.3, 31: 0.1, 2: 0.3}, (0.15, -1.0), 0.4, (0.09, 0.09)),
    ),
}

# Where real micro-expressions move otherwise than the corpus's templates (FACS; drawn for
# `AUFlowConfig.real_shapes` of the samples, over either library above):
# - AU7 (lid tightener) narrows the eye from below and from the outer corner, with no cheek
#   raise: the whole lower lid goes up and inwards (as wide as the eye: at 28 px it is as
#   strong a blob as the cheek raise), the outer corner inwards, the upper lid a little down;
#   AU6 is the cheek lift below it, and comes with a smile (`cheek_with_smile`).
# - AU12 (lip corner puller) lifts the cheek and the skin under the eye a little, always.
# - AU10 (upper lip raiser) lifts the nose wing and deepens the nasolabial furrow as much as it
#   lifts the lip, and is mostly weak beside the brows in CASME II's "4+10".
SHAPE_LIBRARY: dict[int, tuple[Bump, ...]] = {
    7: (
        Bump({40: 0.5, 41: 0.5}, (-0.25, -1.0), 1.0, (0.07, 0.05)),
        Bump({36: 1.0}, (-1.0, -0.2), 0.5, (0.04, 0.04)),
        Bump({37: 0.5, 38: 0.5}, (0.0, 0.3), 0.3, (0.05, 0.04)),
    ),
    10: (
        *AU_LIBRARY[10][:2],
        *AU_LIBRARY[10][3:],
        Bump({31: 1.0}, (0.1, -1.0), 1.0, (0.045, 0.045)),
        Bump({31: 0.5, 48: 0.2, 2: 0.3}, (0.3, -1.0), 0.7, (0.05, 0.07)),
    ),
    12: SKIN_LIBRARY[12],
}


@dataclass(frozen=True)
class AUFlowConfig(Config, section="au_flows"):
    """How the samples are drawn (see the module doc); the defaults with `rendered=0.5` made
    the packaged AU model, the defaults alone the recognition pretraining's samples."""

    seed: int = 0
    prototype_share: float = 0.5  # else a uniformly random set of 1-3 AUs
    none_share: float = 0.04  # samples with no AU (noise, head motion, maybe a blink)
    unilateral: float = 0.2  # per AU: on one side only
    blink_prob: float = 0.12
    crop_scale: tuple[float, float] = (0.85, 1.15)
    crop_shift: float = 0.06  # fraction of the crop side
    turn_deg: float = 35.0  # each AU's motion turned by up to this: people differ from templates
    forehead: float = 0.6  # share of samples whose brow AUs move the forehead too (SKIN_LIBRARY)
    crop_roll_deg: float = 5.0
    outlier_prob: float = 0.6  # a few flow outliers (px of extreme motion)
    # Real composite crops are taller than mekit's (brows higher, chin lower): the crop's
    # height over its width, drawn per sample.
    crop_stretch: tuple[float, float] = (1.0, 1.0)
    intensity: tuple[float, float] = (0.3, 1.0)  # each AU's weight (log-uniform)
    real_shapes: float = 0.0  # share of samples drawing AU7, AU10, AU12 from SHAPE_LIBRARY
    # Share of the samples with AU6 and no AU12 that get AU12 too: the cheek raiser comes with
    # a smile (FACS), so eye-region motion alone reads as AU7 more than AU6.
    cheek_with_smile: float = 0.0
    smooth_noise: tuple[float, float] = (0.02, 0.5)  # of the peak motion (log-uniform)
    head_motion: tuple[float, float] = (0.01, 0.4)  # affine flow gain (log-uniform)
    pixel_noise: tuple[float, float] = (0.005, 0.15)  # of the peak motion (log-uniform)
    # Face-wide smooth drift (non-rigid head motion, lighting: real TV-L1 flows have it as
    # strong as the AU itself); (0, 0) for none.
    broad_noise: tuple[float, float] = (0.0, 0.0)
    # Piecewise-constant flow patches with sharp edges (TV-L1 flows of real clips move hair,
    # background and face parts as flat regions): of the peak motion; (0, 0) for none.
    patch_noise: tuple[float, float] = (0.0, 0.0)
    patch_share: float = 1.0  # share of the samples that get patches (when patch_noise is set)
    # Share of the samples whose flow is measured, not written: the AU field warps a rendered
    # face crop from onset to apex (sensor noise on both frames, a small lighting change) and
    # TV-L1 estimates the flow, as for a real clip. Spread evenly over the indexes
    # (`is_rendered`); 0 (the default, and the recognition pretraining's data): none; the
    # packaged AU model took 0.5 (`mekit.app.au_training.PACKAGED_RENDERED`).
    rendered: float = 0.0
    render_amplitude: tuple[float, float] = (0.25, 1.5)  # peak motion, px of the WORK px crop
    render_noise: tuple[float, float] = (0.3, 3.0)  # sensor noise, grey levels (log-uniform)

    def check(self) -> None:
        check_range(self, "rendered", 0, 1)


@cache
def _base(face: int) -> np.ndarray:
    """Landmarks of base face `face` (even: as shipped, odd: mirrored), in a 1000 px frame."""
    lm = load_landmarks(BASE_FACES[(face // 2) % len(BASE_FACES)])
    if face % 2:
        lm = lm[list(MIRROR_PERMUTATION)].copy()
        lm[:, 0] = 999 - lm[:, 0]
    return lm


CENTRE = np.array([WORK / 2, WORK / 2])  # of the crop, px


def _jitter(rng: np.random.Generator, config: AUFlowConfig) -> tuple[np.ndarray, np.ndarray]:
    """A random crop about mekit's alignment: ((2, 2) scale, roll and row stretch about the
    crop centre, (2,) shift px), drawn from the `crop_*` settings."""
    scale = rng.uniform(*config.crop_scale)
    roll = np.radians(rng.uniform(-1, 1) * config.crop_roll_deg)
    rot = np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]]) * scale
    if config.crop_stretch != (1.0, 1.0):
        rot[1] *= rng.uniform(*config.crop_stretch)  # image rows only
    return rot, rng.uniform(-1, 1, size=2) * config.crop_shift * WORK


def _crop_landmarks(rng: np.random.Generator, config: AUFlowConfig) -> np.ndarray:
    """A morphed face's landmarks in a WORK px crop around mekit's alignment, jittered."""
    lm = morph_landmarks(_base(int(rng.integers(4))), rng, 1.0)
    matrix = alignment_matrix(lm, FaceConfig(size=WORK))
    pts = lm @ matrix[:, :2].T + matrix[:, 2]
    rot, shift = _jitter(rng, config)
    return (pts - CENTRE) @ rot.T + CENTRE + shift


def _turned(bumps: tuple[Bump, ...], degrees: float) -> tuple[Bump, ...]:
    """`bumps` with their directions turned by `degrees` in the (out, down) frame of each half,
    so a bilateral AU stays mirror-symmetric (e.g. the brow lowerer pulling more inwards)."""
    t = np.radians(degrees)
    c, s = float(np.cos(t)), float(np.sin(t))
    return tuple(
        replace(b, direction=(c * b.direction[0] - s * b.direction[1],
                              s * b.direction[0] + c * b.direction[1]))
        for b in bumps
    )  # fmt: skip


# AUs that pull the same skin opposite ways: drawn together, their flows cancel where they
# meet (AU1 lifts the inner brow that AU4 lowers, leaving AU4's inward pull), so a label for
# the first would name motion the flow does not show; the first is dropped.
CANCELLING: tuple[tuple[int, int], ...] = ((1, 4),)


def _draw_aus(rng: np.random.Generator, config: AUFlowConfig) -> tuple[int, ...]:
    if rng.random() < config.none_share:
        return ()
    if rng.random() < config.prototype_share:
        aus = set(PROTOTYPES[int(rng.integers(len(PROTOTYPES)))])
    else:
        n = int(rng.integers(1, 4))
        aus = {int(a) for a in rng.choice(EXPRESSION_AUS, size=n, replace=False)}
    for dropped, kept in CANCELLING:
        if kept in aus:
            aus.discard(dropped)
    if config.cheek_with_smile and 6 in aus and 12 not in aus:
        if rng.random() < config.cheek_with_smile:
            aus.add(12)
    return tuple(sorted(aus))


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """(2, WORK, WORK) Gaussian-blurred white noise, unit standard deviation per channel."""
    white = rng.standard_normal((WORK, WORK, 2)).astype(np.float32)
    blurred = cv2.GaussianBlur(white, (0, 0), sigma).transpose(2, 0, 1)
    return blurred / np.maximum(blurred.std(axis=(1, 2), keepdims=True), 1e-6)


def _patches(rng: np.random.Generator) -> np.ndarray:
    """(2, WORK, WORK) Voronoi cells of 3-12 random centres, each one random motion (unit
    standard deviation), the rest of the crop still: flat regions with sharp edges."""
    centres = rng.uniform(0, WORK, size=(int(rng.integers(3, 13)), 2))
    ys, xs = np.mgrid[0:WORK, 0:WORK]
    nearest = np.argmin(
        (xs[..., None] - centres[:, 0]) ** 2 + (ys[..., None] - centres[:, 1]) ** 2, -1
    )
    motion = rng.standard_normal((len(centres), 2)) * (rng.random(len(centres)) < 0.5)[:, None]
    return motion[nearest].transpose(2, 0, 1).astype(np.float32)


def _expression(
    rng: np.random.Generator, config: AUFlowConfig, lm: np.ndarray
) -> tuple[np.ndarray, set[int]]:
    """The AUs of one sample on a WORK px crop with landmarks `lm`: ((WORK, WORK, 2) field,
    its largest AU motion 1 and a blink on top, the labels)."""
    aus = _draw_aus(rng, config)
    if config.intensity == (0.3, 1.0):  # uniform, as the first shipped model drew them
        weights = {a: float(rng.uniform(0.3, 1.0)) for a in aus}
    else:
        weights = {a: _loguniform(rng, *config.intensity) for a in aus}
    sides = {
        a: ("image_left", "image_right")[int(rng.integers(2))]
        for a in aus
        if rng.random() < config.unilateral
    }
    base = SKIN_LIBRARY if rng.random() < config.forehead else AU_LIBRARY
    if config.real_shapes and rng.random() < config.real_shapes:
        base = {**base, **SHAPE_LIBRARY}
    library = {a: _turned(base[a], rng.uniform(-1, 1) * config.turn_deg) for a in aus}
    field = np.zeros((WORK, WORK, 2), np.float32)
    if aus:
        field = au_field(weights, lm, (WORK, WORK), sides, library)
        field /= max(float(np.sqrt((field**2).sum(-1)).max()), 1e-6)  # peak 1
    labels = set(aus)
    if rng.random() < config.blink_prob:
        blink = au_field([45], lm, (WORK, WORK))
        blink /= max(float(np.sqrt((blink**2).sum(-1)).max()), 1e-6)
        field += blink * np.float32(_loguniform(rng, 0.3, 4.0) if aus else 1.0)
        labels.add(45)
    return field, labels


def _add_head_and_skin(rng: np.random.Generator, config: AUFlowConfig, flow: np.ndarray) -> None:
    """Add to `flow` (2, WORK, WORK), in place: residual head motion (a small affine flow about
    the crop centre) and smooth non-rigid motion, relative to an AU peak of 1."""
    ys, xs = (np.mgrid[0:WORK, 0:WORK].astype(np.float32) - WORK / 2) / (WORK / 2)
    affine = rng.normal(0, 1, size=(2, 2)) * _loguniform(rng, *config.head_motion)
    flow[0] += np.float32(affine[0, 0]) * xs + np.float32(affine[0, 1]) * ys
    flow[1] += np.float32(affine[1, 0]) * xs + np.float32(affine[1, 1]) * ys
    smooth = _smooth_noise(rng, rng.uniform(1.0, 5.0))
    flow += smooth * np.float32(_loguniform(rng, *config.smooth_noise))


def _output(flow: np.ndarray, labels: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """(2, WORK, WORK) flow -> ((3, 28, 28) normalised u, v, strain, the 0/1 AU targets)."""
    stack = np.concatenate([flow, optical_strain(flow)[None]])
    small = np.stack([cv2.resize(c, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for c in stack])
    target = np.array([a in labels for a in AUS], np.float32)
    return minmax_flow(small), target


def is_rendered(index: int, config: AUFlowConfig) -> bool:
    """Whether sample `index` is a rendered one: `config.rendered` of any run of indexes,
    spread evenly (0.5: the odd ones)."""
    share = config.rendered
    return share > 0 and int((index + 1) * share) > int(index * share)


def au_flow_sample(
    index: int, config: AUFlowConfig = AUFlowConfig()
) -> tuple[np.ndarray, np.ndarray]:  # noqa: B008
    """Sample `index`: ((3, 28, 28) float32 normalised u, v, strain, (len(AUS),) float32 0/1)."""
    if is_rendered(index, config):
        return _rendered_sample(index, config)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 7, index]))
    lm = _crop_landmarks(rng, config)
    field, labels = _expression(rng, config, lm)
    flow = field.transpose(2, 0, 1).copy()
    _add_head_and_skin(rng, config, flow)
    flow += rng.standard_normal(flow.shape).astype(np.float32) * np.float32(
        _loguniform(rng, *config.pixel_noise)
    )
    if config.broad_noise[1] > 0:
        coarse = rng.standard_normal((2, *rng.integers(2, 4, size=2))).astype(np.float32)
        broad = np.stack(
            [cv2.resize(c, (WORK, WORK), interpolation=cv2.INTER_CUBIC) for c in coarse]
        )
        broad /= max(float(broad.std()), 1e-6)
        flow += broad * np.float32(_loguniform(rng, *config.broad_noise))
    if config.patch_noise[1] > 0 and rng.random() < config.patch_share:
        flow += _patches(rng) * np.float32(_loguniform(rng, *config.patch_noise))
    if rng.random() < config.outlier_prob:
        for _ in range(int(rng.integers(1, 7))):
            y, x = rng.integers(WORK, size=2)
            flow[:, y, x] += rng.normal(0, 1, size=2).astype(np.float32) * np.float32(
                rng.uniform(1, 4)
            )
    return _output(flow, labels)


# Rendered samples: faces of `RENDER_FACES` identities, made as the synthetic corpus makes its
# subjects (`make_identity`: a base photo reshaped, re-lit, on a new background), each cropped
# per sample with the same jitter as the written samples.
RENDER_FACES = 24


@cache
def _render_face(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Identity k's neutral face, ((200, 200) float32 grey, (68, 2) landmarks px)."""
    identity = make_identity(k, np.random.default_rng([k, 11]), frame_size=200, face_width=120)
    grey = cv2.cvtColor(identity.neutral(), cv2.COLOR_BGR2GRAY).astype(np.float32)
    return grey, identity.landmarks


def _crop_face(rng: np.random.Generator, config: AUFlowConfig) -> tuple[np.ndarray, np.ndarray]:
    """A face crop of WORK px around mekit's alignment, jittered as `_crop_landmarks`:
    ((WORK, WORK) float32 grey, its landmarks)."""
    grey, lm = _render_face(int(rng.integers(RENDER_FACES)))
    matrix = np.vstack([alignment_matrix(lm, FaceConfig(size=WORK)), [0, 0, 1]])
    rot, shift = _jitter(rng, config)
    jitter = np.vstack([np.hstack([rot, (CENTRE - rot @ CENTRE + shift)[:, None]]), [0, 0, 1]])
    full = (jitter @ matrix)[:2]
    crop = cv2.warpAffine(
        grey, full, (WORK, WORK), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    return crop, lm @ full[:, :2].T + full[:, 2]


@cache
def _tvl1() -> cv2.optflow.DualTVL1OpticalFlow:
    """TV-L1 with 3 pyramid levels and 3 warps: motions here are under 2 px of a 56 px crop,
    and it is half the time of OpenCV's defaults (5 and 5)."""
    return cv2.optflow.DualTVL1OpticalFlow_create(nscales=3, warps=3)


def _rendered_sample(index: int, config: AUFlowConfig) -> tuple[np.ndarray, np.ndarray]:
    """Sample `index` with its flow measured (see `AUFlowConfig.rendered`)."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 8, index]))
    onset, lm = _crop_face(rng, config)
    field, labels = _expression(rng, config, lm)
    _add_head_and_skin(rng, config, field.transpose(2, 0, 1))  # a view: adds to field
    field *= np.float32(_loguniform(rng, *config.render_amplitude))
    return _output(measured_flow(onset, field, rng, config), labels)


def measured_flow(
    onset: np.ndarray, field: np.ndarray, rng: np.random.Generator, config: AUFlowConfig
) -> np.ndarray:
    """TV-L1's (2, H, W) flow from `onset` ((H, W) float32 grey) to it moved by `field`
    ((H, W, 2) px, forward), with a lighting change and sensor noise on both frames."""
    h, w = onset.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    apex = cv2.remap(
        onset, xs - field[..., 0], ys - field[..., 1], cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )  # fmt: skip
    apex *= np.float32(1 + rng.normal(0, 0.015))  # lighting
    sigma = _loguniform(rng, *config.render_noise)
    first, second = (
        cv2.addWeighted(f, 1.0, gaussian_noise(rng, f.shape, sigma), 1.0, 0.0, dtype=cv2.CV_8U)
        for f in (onset, apex)
    )
    return np.ascontiguousarray(_tvl1().calc(first, second, None).transpose(2, 0, 1))


CHUNK = 500  # samples per job of `au_flow_dataset`'s workers


def au_flow_dataset(
    n: int,
    config: AUFlowConfig = AUFlowConfig(),  # noqa: B008
    start: int = 0,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples start..start+n-1: ((n, 3, 28, 28) float32, (n, len(AUS)) float32 labels).

    `workers` > 1 makes them in that many processes (worth it for rendered samples, about
    50 ms each); every sample has its own stream, so the bytes are the same."""
    if workers <= 1 or n < 2 * CHUNK:
        return _samples(config, start, n)
    chunks = [(config, i, min(CHUNK, start + n - i)) for i in range(start, start + n, CHUNK)]
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        parts = list(pool.map(_samples, *zip(*chunks, strict=True)))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _samples(config: AUFlowConfig, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*(au_flow_sample(start + i, config) for i in range(n)), strict=True)
    return np.stack(xs), np.stack(ys)
