"""Unsupervised spotting on per-frame motion signals, the apex inside a clip, and the vetoes.

Interval spotting (`spot_intervals`) reads `MotionSignals` (`mekit.spot.input.signals`): per frame
t, the mean flow magnitude of each facial region between frames t - k and t with rigid head motion
removed (`regions`), the rigid motion itself (`head`), the eye aspect ratio (`ear`) and whether the
face was tracked (`face_ok`). An expression from onset to offset therefore moves the signal over t =
onset .. offset + k: the rise shows at once, the return to neutral k frames later.

1. Contrast per region: a short moving average (`smoothing_s`) minus a slow baseline (a grey
   opening `baseline_s` wide: what stays low that long is drift, not an expression), in px, and
   the same divided by the region's noise level (1.4826 x MAD after sigma clipping, so that the
   expressions of a busy video do not count as noise) = noise units.
2. The regions' noise-unit contrasts are combined (`combine`: the largest weighted one, or
   their weighted sum over the root of the summed squared weights, which keeps noise units);
   the eyes count only outside blinks. The result is z.
3. Threshold T = mean + p x (max - mean) of z (SOFTNet's rule), z clipped at `z_cap` first
   (one large macro-expression must not lift T over every micro-expression in the video), and
   T at least `min_z` (a video without expressions must not turn its noise into events).
4. Each run of z above T grows while z >= `low_fraction` x its peak. Neighbouring humps merge
   when they touch (`touch_gap_s`), or when they look like the two halves of one expression:
   within `merge_gap_s` (or k frames), with a similar motion (`pair_mass_ratio`) and the same
   regions moving (`pair_cosine`). The lag-k signal shows an expression as a rise hump and a
   return hump (a short one as a copy of itself k frames later), split by a dip at the apex.
5. A region a..b of the signal is the expression a .. b - k; the bounds are pushed out by
   `extend` x its length (the growth in 4 stops inside the raised-cosine tails). A lone hump
   of a short expression is taken as the rise or the return copy, whichever has an echo k frames
   away. Regions longer than `macro_max_s` are split at their deepest dip.
6. Vetoes, each recorded in `SpotResult.vetoed` with its reason, never dropped silently:
   "blink" - the interval overlaps a blink (eye motion at `blink_eye_z` noise units and
   `blink_dominance` x the other regions', or an EAR dip under (1 - `blink_ear_drop`) x its
   running median) and the eye region's peak motion is `blink_dominance` x that of every other
   region; "head motion" - the rigid motion's peak is `head_dominance` x the face's (a head
   movement that the alignment did not cancel); "no face" - more than `max_bad_face` of its
   frames had no tracked face or no motion value.
7. Kind by duration (offset - onset, from the timestamps): up to `micro_max_ms` micro, else
   macro. The apex: the dip of z between the rise and the return (found around the point where
   half of the region's motion lies behind, as both move the face by the same amount), less
   k / 2 (the dip is where frames t - k and t straddle the apex). Score peak / (peak + T) in
   [0, 1): above 0.5 for every interval kept.

Apex spotting inside an annotated onset..offset clip (corpora without an apex, e.g. SMIC):
`apex_in_clip` computes the flow of every frame against the onset frame on a small crop and
takes the frame of largest mean magnitude (rigid motion and slow drift removed; with landmarks
the eyes are masked and blink frames left out); `spot_apex` finds it from a video's signals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

import cv2
import numpy as np
from scipy import ndimage

from mekit.config import Choice, Config, check_range
from mekit.errors import MekitError
from mekit.faces.landmarks import EYES, JAW
from mekit.motion.flow import FlowMethod, compute_flow
from mekit.spot.metrics import Interval
from mekit.spot.speech import SpeechConfig, speaking

MAD_TO_SIGMA = 1.4826
EPS = 1e-9
NOT_FACE = ("eyes", "nose")  # regions left out of "the rest of the face" in the vetoes
SPEECH_REGIONS = ("mouth", "cheeks")  # regions speech moves
NOISE_PERCENTILE = 10  # a region's motion in its stillest frames: the codec's and sensor's noise


class SignalsLike(Protocol):
    """What the spotter reads of `mekit.spot.input.signals.MotionSignals` (N frames). `head`,
    `ear`, `time_s` and `reference` ("sliding") are read when present."""

    frame: np.ndarray  # (N,) int frame indices
    fps: float
    k: int  # flow offset: regions[t] is the motion from frame t - k to frame t
    regions: Mapping[str, np.ndarray]  # (N,) mean flow magnitude per region, head motion removed
    face_ok: np.ndarray  # (N,) bool


class Combine(Choice):
    MAX = "max"
    MEAN = "mean"


@dataclass(frozen=True)
class SpotConfig(Config, section="spot"):
    """Settings of the unsupervised interval spotter (see the module docstring for each step).

    The defaults were tuned on synthetic long videos (`mekit.synth`, 30 and 200 fps, signals
    from `compute_signals` with its defaults) of development seeds 1, 3 and 101; the benchmark
    (`benchmarks/spot_accuracy.py`) reports on another seed (0). The noise floor, amplitude
    and speech settings were set on seed 1 and the whole set of real talking-head videos of
    `benchmarks/real_video.py`, with margin: talking stays at 0 micro-expressions for
    `noise_floor_share` 0-1, `max_px` 5-50 and `speech_head_ratio` 0.5-2.
    """

    p: float = 0.55  # threshold factor: T = mean + p (max - mean), as SOFTNet
    z_cap: float = 8.0  # z is clipped here for T: the max (and mean) in T are at most this
    min_z: float = 5.0  # T is never lower than this many noise units
    combine: Combine = Combine.MAX  # how the regions' contrasts combine: max or (weighted) mean
    smoothing_s: float = 0.02  # moving-average window
    baseline_s: float = 5.0  # slow-drift baseline window (longer than any expression + k)
    low_fraction: float = 0.3  # a hump grows while z >= low_fraction x its peak
    touch_gap_s: float = 0.0  # humps this close always merge
    merge_gap_s: float = 0.5  # humps this close (or k frames) merge when they pair up
    pair_mass_ratio: float = 3.0  # ... if their motion differs by less than this factor
    pair_cosine: float = 0.9  # ... and the same regions move (cosine of the regional peaks)
    extend: float = 0.2  # bounds pushed out by this fraction of the interval's length
    micro_min_ms: float = 40.0  # shorter intervals are widened to this
    micro_max_ms: float = 500.0  # micro up to this duration, macro above
    macro_max_s: float = 4.0  # longer regions are split at their deepest dip
    region_weights: tuple[tuple[str, float], ...] = (
        ("brows", 1.0),
        ("mouth", 1.0),
        ("cheeks", 1.0),
        ("eyes", 1.0),
    )
    blink_eye_z: float = 8.0  # blink frames: eye motion this many noise units ...
    blink_dominance: float = 1.6  # ... and this x the other regions' (also the veto's ratio)
    blink_ear_drop: float = 0.25  # or EAR under (1 - drop) x its running median (0: off)
    blink_margin_s: float = 0.03  # blink frames widened by this on each side
    head_dominance: float = 3.0  # veto when rigid motion >= this x the face's (0: off)
    max_bad_face: float = 0.5  # veto intervals with more than this share of unusable frames
    # Amplitudes in px of a 64 px aligned face (scaled to the signals' face_size): a
    # micro-expression moves the face by 1-3 px at 200 px, i.e. about 0.3-1 px here.
    noise_floor_px: float = 0.01  # a region's noise scale is at least this ...
    noise_floor_share: float = 0.5  # ... and this x its motion in its stillest frames (codec)
    min_px: float = 0.05  # smaller peaks (largest region's contrast) are noise: "too small"
    micro_max_px: float = 2.5  # micro-expressions move less; a larger short event is macro
    max_px: float = 5.0  # larger is no facial expression (body, camera, cut): "too large"
    speech_aware: bool = True  # find speech; mouth and cheeks do not count while speaking
    speech: SpeechConfig = SpeechConfig()  # speaking segments (`mekit.spot.speech`)
    speech_head_ratio: float = 1.0  # in speech, kept when brows/eyes move this x the head
    speech_share: float = 0.5  # an event with this share of its frames in speech is "in speech"

    def check(self) -> None:
        check_range(self, "p", 0, 1, lo_open=True, hi_open=True)
        for name in ("z_cap", "min_z", "baseline_s", "micro_max_ms", "macro_max_s"):
            check_range(self, name, 0, lo_open=True)
        for name in (
            "smoothing_s",
            "touch_gap_s",
            "merge_gap_s",
            "micro_min_ms",
            "blink_margin_s",
            "extend",
            "blink_eye_z",
            "head_dominance",
            "noise_floor_px",
            "noise_floor_share",
            "min_px",
            "speech_head_ratio",
        ):
            check_range(self, name, 0)
        check_range(self, "low_fraction", 0, 1, lo_open=True, hi_open=True)
        check_range(self, "blink_ear_drop", 0, 1, hi_open=True)
        check_range(self, "max_bad_face", 0, 1)
        check_range(self, "pair_mass_ratio", 1)
        check_range(self, "pair_cosine", -1, 1)
        check_range(self, "blink_dominance", 1, lo_open=True)
        if not 0 <= self.min_px < self.micro_max_px < self.max_px:
            raise MekitError(
                "spot.min_px < spot.micro_max_px < spot.max_px is needed, got "
                f"{self.min_px}, {self.micro_max_px}, {self.max_px}"
            )
        check_range(self, "speech_share", 0, 1, lo_open=True)
        if self.micro_max_ms / 1000 >= self.macro_max_s:
            raise MekitError("spot.micro_max_ms must be shorter than spot.macro_max_s")
        weights = dict(self.region_weights)
        if any(w < 0 for w in weights.values()) or not any(
            w > 0 for r, w in weights.items() if r not in NOT_FACE
        ):
            raise MekitError(
                "spot.region_weights must be >= 0 with a region other than the eyes and nose "
                f"above 0, got {self.region_weights}"
            )


@dataclass(frozen=True)
class Vetoed:
    """A candidate interval that was dropped, and why: "blink", "head motion", "no face",
    "speech" (mouth motion while speaking), "too small" (under the noise floor) or "too large"
    (more motion than any facial expression)."""

    interval: Interval
    reason: str


@dataclass(frozen=True)
class SpotResult:
    """What `spot_details` found. Arrays are per frame of the signals (N)."""

    intervals: tuple[Interval, ...]
    vetoed: tuple[Vetoed, ...]
    z: np.ndarray  # (N,) combined contrast, noise units (index t: motion from t - k to t)
    threshold: float  # T, noise units
    blink: np.ndarray  # (N,) bool: signal frames a blink moves (widened by the margin)
    usable: np.ndarray  # (N,) bool: a tracked face and a motion value
    warnings: tuple[str, ...] = field(default_factory=tuple)
    speech: np.ndarray | None = None  # (N,) bool: frames where the person speaks


@dataclass(frozen=True)
class Contrasts:
    """Per-region contrasts of one video: px above the baseline, and noise units."""

    px: dict[str, np.ndarray]
    z: dict[str, np.ndarray]
    head: np.ndarray | None  # rigid motion above its baseline, px
    usable: np.ndarray


# ---------------------------------------------------------------------------------------------
# signal conditioning


def _window(seconds: float, fps: float) -> int:
    return max(1, int(round(seconds * fps)))


def _fill(x: np.ndarray, good: np.ndarray) -> np.ndarray:
    """x with its frames outside `good` filled by linear interpolation (0 if none is good)."""
    x = np.asarray(x, dtype=np.float64).copy()
    good = good & np.isfinite(x)
    if good.all():
        return x
    if not good.any():
        return np.zeros_like(x)
    idx = np.arange(len(x))
    x[~good] = np.interp(idx[~good], idx[good], x[good])
    return x


def _robust_scale(x: np.ndarray, clip: float = 3.0, rounds: int = 10) -> tuple[float, float]:
    """(level, scale) of the noise in x: median and 1.4826 x MAD, recomputed without the values
    more than `clip` scales above the level until nothing changes (sigma clipping), so that
    expressions covering much of a short video do not pass for noise. The scale is floored so
    that a flat signal cannot divide by ~0."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return 0.0, 1.0
    floor = max(1e-3 * float(np.mean(np.abs(x))), EPS)
    keep = x
    med, scale = 0.0, 1.0
    for _ in range(rounds):
        med = float(np.median(keep))
        scale = max(float(np.median(np.abs(keep - med))) * MAD_TO_SIGMA, floor)
        inside = x[x <= med + clip * scale]
        if len(inside) == len(keep) or len(inside) < max(3, len(x) // 4):
            break
        keep = inside
    return med, scale


def baseline(x: np.ndarray, width: int) -> np.ndarray:
    """The slow floor of x: a grey opening (running min, then max) `width` frames wide, then a
    moving average half as wide. Peaks narrower than `width` are cut off; drift stays. O(N)."""
    if len(x) == 0:
        return x.copy()
    width = min(max(width, 1), len(x))
    opened = ndimage.maximum_filter1d(
        ndimage.minimum_filter1d(x, width, mode="nearest"), width, mode="nearest"
    )
    return ndimage.uniform_filter1d(opened, max(1, width // 2), mode="nearest")


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    return ndimage.uniform_filter1d(x, width, mode="nearest") if width > 1 else x


def usable_frames(signals: SignalsLike) -> np.ndarray:
    """(N,) bool: a tracked face and a finite value in every region."""
    ok = np.asarray(signals.face_ok, dtype=bool).copy()
    for x in signals.regions.values():
        ok &= np.isfinite(np.asarray(x, dtype=np.float64))
    return ok


def region_contrasts(signals: SignalsLike, config: SpotConfig = SpotConfig()) -> Contrasts:
    """Each region's (and the rigid motion's) smoothed signal minus its slow baseline."""
    fps = float(signals.fps)
    smooth = _window(config.smoothing_s, fps)
    width = _window(config.baseline_s, fps)
    usable = usable_frames(signals)
    unit = _px_unit(signals)
    px, z = {}, {}
    for region, x in signals.regions.items():
        xs = _smooth(_fill(x, usable), smooth)
        c = xs - baseline(xs, width)
        med, scale = _robust_scale(c[usable])
        # the noise of a still or nearly still face is the codec's: its contrast's spread can be
        # ~0, and then any flicker would count as many noise units
        raw = np.asarray(x, dtype=np.float64)[usable]
        level = float(np.percentile(raw, NOISE_PERCENTILE)) if len(raw) else 0.0
        scale = max(scale, config.noise_floor_px * unit, config.noise_floor_share * level)
        px[region] = c
        z[region] = (c - med) / scale
    head = None
    raw = getattr(signals, "head", None)
    if raw is not None and len(raw) == len(usable):
        hs = _smooth(_fill(raw, usable), smooth)
        head = hs - baseline(hs, width)
    return Contrasts(px, z, head, usable)


def _px_unit(signals: SignalsLike) -> float:
    """Crop px per px of the 64 px face the px settings are given for."""
    size = getattr(signals, "face_size", 64)
    return float(size) / 64.0 if isinstance(size, int | float) and size > 0 else 1.0


def speech_mask(signals: SignalsLike, config: SpotConfig = SpotConfig()) -> np.ndarray:
    """(N,) bool: frames where the person speaks (`mekit.spot.speech.speaking` on the signals'
    mouth aperture and sound level; all False when the signals have no mouth aperture)."""
    n = len(signals.face_ok)
    mouth = getattr(signals, "mouth", None)
    if not config.speech_aware or mouth is None or len(mouth) != n:
        return np.zeros(n, dtype=bool)
    times = getattr(signals, "time_s", None)
    if times is None or len(times) != n:
        times = np.arange(n) / float(signals.fps)
    return speaking(mouth, times, getattr(signals, "audio_db", None), config.speech)


def blink_mask(signals: SignalsLike, contrasts: Contrasts, config: SpotConfig) -> np.ndarray:
    """(N,) bool: signal frames that a blink moves.

    Either the eye region moves `blink_eye_z` noise units and `blink_dominance` x more (px)
    than every other region, or the EAR (frame t itself, no lag) dips under (1 -
    `blink_ear_drop`) x its 1 s running median; such a frame b moves the signal over b..b+k.
    Widened by `blink_margin_s` both ways.
    """
    usable = contrasts.usable
    n, fps, k = len(usable), float(signals.fps), int(signals.k)
    lagged = np.zeros(n, dtype=bool)  # already in signal time
    framed = np.zeros(n, dtype=bool)  # in frame time: moves the signal over b..b+k
    if "eyes" in contrasts.z:
        rest = _rest_of_face(contrasts.px)
        eyes_px = contrasts.px["eyes"]
        lagged = (
            usable
            & (contrasts.z["eyes"] >= config.blink_eye_z)
            & (eyes_px >= config.blink_dominance * np.maximum(rest, 0.0))
        )
    ear = getattr(signals, "ear", None)
    if ear is not None and config.blink_ear_drop > 0 and len(ear) == n:
        ok = np.asarray(signals.face_ok, dtype=bool) & np.isfinite(np.asarray(ear, float))
        if ok.sum() >= 3:
            e = _fill(np.asarray(ear, dtype=np.float64), ok)
            e = _smooth(e, _window(config.smoothing_s / 2, fps))
            ref = ndimage.median_filter(e, size=min(n, _window(1.0, fps)) | 1, mode="nearest")
            framed = ok & (e < (1.0 - config.blink_ear_drop) * ref)
    margin = int(round(config.blink_margin_s * fps))
    return _widen(lagged, margin, margin) | _widen(framed, margin, k + margin)


def _widen(mask: np.ndarray, before: int, after: int) -> np.ndarray:
    """mask with each True frame i spread over i - before .. i + after."""
    if not mask.any():
        return mask.copy()
    n = len(mask)
    marks = np.zeros(n + 1, dtype=np.int64)
    idx = np.flatnonzero(mask)
    np.add.at(marks, np.maximum(idx - before, 0), 1)
    np.add.at(marks, np.minimum(idx + after + 1, n), -1)
    return np.cumsum(marks)[:n] > 0


def _rest_of_face(px: Mapping[str, np.ndarray]) -> np.ndarray:
    others = [c for r, c in px.items() if r not in NOT_FACE]
    if not others:
        return np.zeros(len(next(iter(px.values()))))
    return np.max(others, axis=0)


def combined_contrast(
    signals: SignalsLike, config: SpotConfig = SpotConfig()
) -> tuple[np.ndarray, np.ndarray, Contrasts]:
    """(z, blink, contrasts): the regions' contrasts combined, in noise units.

    The eyes count only outside blinks, the mouth and cheeks only outside speech (unless
    `speech_aware` is off); unusable frames read 0.
    """
    contrasts = region_contrasts(signals, config)
    weights = {r: w for r, w in config.region_weights if w > 0 and r in contrasts.z}
    if not any(r not in NOT_FACE for r in weights):
        raise MekitError(
            "the signals have none of the regions spot.region_weights uses "
            f"({', '.join(r for r, w in config.region_weights if w > 0)}); "
            f"they have {', '.join(signals.regions) or 'none'}"
        )
    blink = blink_mask(signals, contrasts, config)
    usable = contrasts.usable
    # while the person speaks the lips, jaw and cheeks move with every syllable: only the brows
    # and eyes can show an expression then (signal t reads frames t - k .. t)
    talking = _widen(speech_mask(signals, config), 0, int(signals.k))
    parts = []
    for region, weight in weights.items():
        part = weight * contrasts.z[region]
        if region == "eyes":
            part = np.where(blink, 0.0, part)
        if region in SPEECH_REGIONS and config.speech_aware:
            part = np.where(talking, 0.0, part)
        parts.append(part)
    stack = np.stack(parts)
    if config.combine == "max":
        z = stack.max(axis=0)
    else:  # noise units again for independent regional noise
        z = stack.sum(axis=0) / math.sqrt(sum(w * w for w in weights.values()))
    z = np.where(usable, z, 0.0)
    return z, blink, contrasts


# ---------------------------------------------------------------------------------------------
# intervals


def threshold(z: np.ndarray, config: SpotConfig = SpotConfig()) -> float:
    """T = mean + p (max - mean) of z clipped at z_cap, at least min_z (noise units).

    The clip keeps a large macro-expression from lifting T (through the max, and through the
    mean of a short video) above every micro-expression's peak."""
    if len(z) == 0:
        return float(config.min_z)
    clipped = np.minimum(z, config.z_cap)
    mean = float(np.mean(clipped))
    top = float(np.max(clipped))
    return max(mean + config.p * (top - mean), float(config.min_z))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) of each run of True."""
    if not mask.any():
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


@dataclass
class Hump:
    """A run of the combined contrast: signal indices a..b, its positive mass, and its regional
    pattern (each region's peak contrast, px; regions in name order, the nose left out)."""

    a: int
    b: int
    mass: float
    pattern: np.ndarray
    paired: bool = False


def _hump(z: np.ndarray, px: Mapping[str, np.ndarray], a: int, b: int) -> Hump:
    mass = float(np.maximum(z[a : b + 1], 0.0).sum())
    pattern = np.array(
        [max(float(c[a : b + 1].max()), 0.0) for r, c in sorted(px.items()) if r != "nose"]
    )
    return Hump(a, b, mass, pattern)


def _pairs(h1: Hump, h2: Hump, config: SpotConfig) -> bool:
    """Do two humps look like the rise and return (or a short expression and its echo)?"""
    if min(h1.mass, h2.mass) <= 0:
        return False
    if max(h1.mass, h2.mass) / min(h1.mass, h2.mass) > config.pair_mass_ratio:
        return False
    n1, n2 = np.linalg.norm(h1.pattern), np.linalg.norm(h2.pattern)
    if n1 <= 0 or n2 <= 0:
        return False
    return float(h1.pattern @ h2.pattern) / (n1 * n2) >= config.pair_cosine


def grow_humps(
    z: np.ndarray, t: float, config: SpotConfig, px: Mapping[str, np.ndarray] | None = None
) -> list[Hump]:
    """Each run of z above t, grown while z >= low_fraction x its peak (at least 0.5)."""
    px = px if px is not None else {"all": z}
    humps: list[Hump] = []
    for s, e in _runs(z > t):
        if humps and humps[-1].a <= s <= humps[-1].b:
            continue  # already inside a grown hump
        peak = float(z[s : e + 1].max())
        low = max(config.low_fraction * peak, 0.5)
        a, b = s, e
        while a > 0 and z[a - 1] >= low:
            a -= 1
        while b < len(z) - 1 and z[b + 1] >= low:
            b += 1
        if humps and a <= humps[-1].b:  # grown into the previous one
            a = humps[-1].a
            humps.pop()
        humps.append(_hump(z, px, a, b))
    return humps


def merge_humps(
    humps: list[Hump],
    z: np.ndarray,
    config: SpotConfig,
    fps: float,
    k: int,
    px: Mapping[str, np.ndarray] | None = None,
) -> list[tuple[int, int]]:
    """Inclusive (a, b) regions, one per expression: humps that touch merge, and so do two
    that pair up as one expression's rise and return; regions too long for one expression are
    split at their deepest dip."""
    px = px if px is not None else {"all": z}
    touch = int(round(config.touch_gap_s * fps))
    pair_gap = max(k, int(round(config.merge_gap_s * fps)))
    longest = int(round(config.macro_max_s * fps)) + k
    merged: list[Hump] = []
    for h in humps:
        if merged:
            last = merged[-1]
            gap = h.a - last.b - 1
            fits = max(h.b, last.b) - last.a + 1 <= longest
            if gap <= touch or (
                fits and gap <= pair_gap and not last.paired and _pairs(last, h, config)
            ):
                joined = _hump(z, px, last.a, max(last.b, h.b))
                joined.paired = last.paired or gap > touch
                merged[-1] = joined
                continue
        merged.append(h)
    out: list[tuple[int, int]] = []
    stack = [(h.a, h.b) for h in reversed(merged)]
    while stack:
        a, b = stack.pop()
        if b - a + 1 <= longest or b - a < 4:
            out.append((a, b))
            continue
        cut = a + 1 + int(np.argmin(z[a + 1 : b]))
        stack.extend([(cut + 1, b), (a, cut - 1)])
    return out


def hump_regions(
    z: np.ndarray,
    t: float,
    config: SpotConfig,
    fps: float,
    k: int,
    px: Mapping[str, np.ndarray] | None = None,
) -> list[tuple[int, int]]:
    """[(a, b)] inclusive index ranges of z around each run above t, grown and merged."""
    return merge_humps(grow_humps(z, t, config, px), z, config, fps, k, px)


def _bounds(z: np.ndarray, a: int, b: int, k: int, smooth: int) -> tuple[int, int, float]:
    """(onset, offset, apex) signal indices of the expression behind region a..b."""
    n = len(z)
    half = (smooth - 1) // 2
    a2, b2 = min(a + half, b), max(b - half, a)  # undo the moving average's spread
    if b - a + 1 > k:  # the rise and the return (or their copies k frames apart) both seen
        return a2, max(b2 - k, a2), _dip(z, a, b) - k / 2.0
    # a lone hump of a short expression: the rise itself, or its copy k frames later?
    after = float(np.maximum(z[min(a + k, n) : min(b + k + 1, n)], 0.0).sum())
    before = float(np.maximum(z[max(a - k, 0) : max(b - k + 1, 0)], 0.0).sum())
    peak = a + int(np.argmax(z[a : b + 1]))
    if before > after and a2 - k >= 0:
        return a2 - k, b2 - k, float(peak - k)
    return a2, b2, float(peak)


def _dip(z: np.ndarray, a: int, b: int) -> float:
    """Where the face turns back over a..b: the lowest point of z between its largest peak
    before and its largest peak after the half-mass point (the rise and the return move the face
    by the same amount, so the half-mass point lies between them); the half-mass point itself
    when it has no peak on one side."""
    middle = _half_mass(z, a, b)
    m = int(round(middle))
    if not a < m < b:
        return middle
    left = a + int(np.argmax(z[a:m]))
    right = m + int(np.argmax(z[m : b + 1]))
    if right - left < 2:
        return middle
    return left + 1 + float(np.argmin(z[left + 1 : right]))


def _half_mass(z: np.ndarray, a: int, b: int) -> float:
    """Index where half of z's positive mass over a..b lies behind (the middle of a flat
    stretch there)."""
    w = np.maximum(z[a : b + 1], 0.0)
    total = float(w.sum())
    if total <= 0:
        return (a + b) / 2.0
    cum = np.cumsum(w)
    lo = int(np.searchsorted(cum, 0.5 * total * (1 - 1e-9)))
    hi = int(np.searchsorted(cum, 0.5 * total * (1 + 1e-9)))
    return a + (lo + hi) / 2.0


def _check_signals(signals: SignalsLike, reference: str = "sliding") -> int:
    n = len(signals.face_ok)
    fps, k = signals.fps, signals.k
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not fps > 0:
        raise MekitError(f"signals.fps must be a positive number, got {fps!r}")
    if not math.isfinite(fps):
        raise MekitError(f"signals.fps must be finite, got {fps!r}")
    if getattr(signals, "reference", "sliding") != reference:
        raise MekitError(
            f"this needs signals with reference={reference!r}, these have "
            f"reference={signals.reference!r} (interval spotting needs a sliding flow offset)"
        )
    if reference == "sliding" and int(k) < 1:
        raise MekitError(f"signals.k (the flow offset) must be at least 1, got {k!r}")
    if not signals.regions:
        raise MekitError("the signals have no regions")
    arrays = {"frame": signals.frame, **{f"regions[{r!r}]": x for r, x in signals.regions.items()}}
    for name in ("ear", "head", "time_s"):
        if getattr(signals, name, None) is not None:
            arrays[name] = getattr(signals, name)
    for name, x in arrays.items():
        if len(x) != n:
            raise MekitError(f"signals.{name} has {len(x)} frames but face_ok has {n}")
    return n


def _duration_s(signals: SignalsLike, i: int, j: int) -> float:
    times = getattr(signals, "time_s", None)
    if times is not None and len(times) > max(i, j):
        d = float(times[j]) - float(times[i])
        if math.isfinite(d) and d >= 0:
            return d
    return (j - i) / float(signals.fps)


def spot_details(signals: SignalsLike, config: SpotConfig = SpotConfig()) -> SpotResult:
    """Spot micro- and macro-expression intervals; also return what was vetoed and the curve."""
    n = _check_signals(signals)
    fps, k = float(signals.fps), int(signals.k)
    if n == 0:
        empty = np.zeros(0)
        msg = "the signals hold no frames: nothing could be spotted"
        return SpotResult(
            (), (), empty, config.min_z, empty.astype(bool), empty.astype(bool), (msg,)
        )
    z, blink, contrasts = combined_contrast(signals, config)
    usable = contrasts.usable
    warnings = [str(note) for note in getattr(signals, "notes", ())]  # e.g. a corrupt stream
    if not usable.any():
        msg = "no frame has both a tracked face and a motion value: nothing could be spotted"
        return SpotResult((), (), z, config.min_z, blink, usable, (*warnings, msg))
    if (~usable).sum() > k:  # the first k frames never have a value
        warnings.append(
            f"{int((~usable).sum())} of {n} frames have no tracked face or no motion value; "
            "intervals mostly on them are dropped"
        )
    t = threshold(z[usable], config)
    talking = speech_mask(signals, config)
    unit = _px_unit(signals)
    kept: list[Interval] = []
    vetoed: list[Vetoed] = []
    humps = grow_humps(z, t, config, contrasts.px)
    real: list[Hump] = []
    for h in humps:
        reason = _veto(h.a, h.b, blink, contrasts, config) or _judge(
            h.a, h.b, k, blink, talking, contrasts, config, unit
        )
        if reason:
            interval = _interval(signals, z, h.a, h.b, t, config)
            last = vetoed[-1] if vetoed else None
            if last and last.reason == reason and interval.onset <= last.interval.offset + k:
                # one blink or head movement shows twice: as it happens and k frames later
                interval = _union(last.interval, interval)
                vetoed.pop()
            vetoed.append(Vetoed(interval, reason))
        else:
            real.append(h)
    for a, b in merge_humps(real, z, config, fps, k, contrasts.px):
        interval = _interval(signals, z, a, b, t, config)
        peak = _peak_px(contrasts, blink, a, b)
        if interval.kind == "micro" and peak > config.micro_max_px * unit:
            interval = replace(interval, kind="macro")  # too much motion for a micro-expression
        if _in_speech(talking, a, b, k, config):
            interval = replace(interval, during="speech")
        kept.append(interval)
    kept = resolve_overlaps(kept, signals, config)
    return SpotResult(
        tuple(kept), tuple(vetoed), z, t, blink, usable, tuple(warnings), speech=talking
    )


def _peak_px(contrasts: Contrasts, blink: np.ndarray, a: int, b: int) -> float:
    """The largest regional contrast (px) over signal indices a..b, the nose left out and the
    eyes outside blinks."""
    span = slice(a, b + 1)
    peaks = [0.0]
    for region, c in contrasts.px.items():
        if region == "nose":
            continue
        values = c[span] if region != "eyes" else np.where(blink[span], 0.0, c[span])
        peaks.append(float(np.max(values)))
    return max(peaks)


def _in_speech(talking: np.ndarray, a: int, b: int, k: int, config: SpotConfig) -> bool:
    """Region a..b of the signal (frames a - k .. b move it) lies mostly in speech."""
    frames = talking[max(0, a - k) : b + 1]
    return bool(len(frames)) and float(frames.mean()) >= config.speech_share


def _judge(
    a: int,
    b: int,
    k: int,
    blink: np.ndarray,
    talking: np.ndarray,
    contrasts: Contrasts,
    config: SpotConfig,
    unit: float,
) -> str:
    """ "too small", "too large" or "speech" for region a..b of the signal ("" when none)."""
    peak = _peak_px(contrasts, blink, a, b)
    if peak < config.min_px * unit:
        return "too small"
    if peak > config.max_px * unit:
        return "too large"
    if _in_speech(talking, a, b, k, config):
        # speaking moves the head with the jaw; the brows and eyes must move more than it
        span = slice(a, b + 1)
        upper = 0.0
        for region in ("brows", "eyes"):
            if region in contrasts.px:
                c = contrasts.px[region][span]
                if region == "eyes":
                    c = np.where(blink[span], 0.0, c)
                upper = max(upper, float(c.max()))
        head = 0.0 if contrasts.head is None else float(contrasts.head[span].max())
        if upper < config.speech_head_ratio * head:
            return "speech"
    return ""


def resolve_overlaps(
    intervals: list[Interval], signals: SignalsLike, config: SpotConfig = SpotConfig()
) -> list[Interval]:
    """Intervals in time order with no two sharing a frame: overlapping ones become one (their
    union, the apex and score of the stronger, kind again by duration; macro if either was),
    unless the union would be longer than `macro_max_s`: then the weaker is dropped."""
    out: list[Interval] = []
    frames = np.asarray(signals.frame)
    for interval in sorted(intervals, key=lambda i: (i.onset, i.offset)):
        if not out or interval.onset > out[-1].offset:
            out.append(interval)
            continue
        last = out[-1]
        strong = last if last.score >= interval.score else interval
        onset, offset = min(last.onset, interval.onset), max(last.offset, interval.offset)
        i, j = np.searchsorted(frames, onset), np.searchsorted(frames, offset)
        seconds = _duration_s(signals, int(i), int(min(j, len(frames) - 1)))
        if seconds > config.macro_max_s:
            out[-1] = strong
            continue
        micro = seconds * 1000 <= config.micro_max_ms and "macro" not in (last.kind, interval.kind)
        out[-1] = replace(
            strong,
            onset=onset,
            offset=offset,
            kind="micro" if micro else "macro",
            during="speech" if "speech" in (last.during, interval.during) else "",
        )
    return out


def _interval(
    signals: SignalsLike, z: np.ndarray, a: int, b: int, t: float, config: SpotConfig
) -> Interval:
    """The expression interval behind region a..b of the signal (frame numbers)."""
    fps, k, n = float(signals.fps), int(signals.k), len(z)
    frames = np.asarray(signals.frame)
    on, off, apex = _bounds(z, a, b, k, _window(config.smoothing_s, fps))
    grow = config.extend * (off - on)
    on, off = int(math.floor(on - grow)), int(math.ceil(off + grow))
    shortest = config.micro_min_ms / 1000.0 * fps
    if off - on < shortest:
        pad = (shortest - (off - on)) / 2
        on, off = int(math.floor(on - pad)), int(math.ceil(off + pad))
    on, off = max(on, 0), min(max(off, on), n - 1)
    on = min(on, off)
    if not on < apex <= off and off > on:
        # the rise/return dip was not found inside: the lag-k curve peaks where frame t - k is
        # about the onset and t the apex
        apex = a + float(np.argmax(z[a : b + 1]))
    apex_i = int(round(min(max(apex, on + 1 if off > on else on), off)))
    peak = float(z[a : b + 1].max())
    micro = _duration_s(signals, on, off) * 1000 <= config.micro_max_ms
    return Interval(
        onset=int(frames[on]),
        offset=int(frames[off]),
        kind="micro" if micro else "macro",
        apex=int(frames[apex_i]),
        score=peak / (peak + t) if peak + t > 0 else 0.0,
    )


def _union(a: Interval, b: Interval) -> Interval:
    onset, offset = min(a.onset, b.onset), max(a.offset, b.offset)
    kind = a.kind if a.offset - a.onset >= b.offset - b.onset else b.kind
    apex = a.apex if a.score >= b.score else b.apex
    return Interval(onset, offset, kind, apex, max(a.score, b.score))


def _veto(a: int, b: int, blink: np.ndarray, contrasts: Contrasts, config: SpotConfig) -> str:
    """Why region a..b of the signal is not an expression ("" when it is one)."""
    span = slice(a, b + 1)
    if 1.0 - float(contrasts.usable[span].mean()) > config.max_bad_face:
        return "no face"
    rest = max(float(_rest_of_face(contrasts.px)[span].max()), EPS)
    eyes = contrasts.px.get("eyes")
    if blink[span].any():
        if eyes is None:
            if float(blink[span].mean()) >= 0.5:
                return "blink"
        elif float(eyes[span].max()) >= config.blink_dominance * rest:
            return "blink"
    if contrasts.head is not None and config.head_dominance > 0:
        face = rest if eyes is None else max(rest, float(eyes[span].max()))
        if float(contrasts.head[span].max()) >= config.head_dominance * face:
            return "head motion"
    return ""


def spot_intervals(signals: SignalsLike, config: SpotConfig = SpotConfig()) -> list[Interval]:
    """The spotted micro- and macro-expression intervals (onset, apex, offset, kind, score),
    in time order; frame numbers are `signals.frame`'s. See the module docstring for the
    method; `spot_details` also returns what was vetoed (blinks, head motion, no face), the
    curve and its threshold."""
    return list(spot_details(signals, config).intervals)


# ---------------------------------------------------------------------------------------------
# apex inside an annotated clip


def spot_apex(
    signals: SignalsLike,
    onset: int | None = None,
    offset: int | None = None,
    config: SpotConfig = SpotConfig(),
) -> int:
    """The apex frame of an expression annotated onset..offset (frame numbers of `signals`;
    None: its first / last frame), from a video's signals.

    Sliding signals (motion from frame t - k to t): the dip of the combined contrast between
    the rise and the return over onset .. offset + k, less k / 2 (as in `spot_intervals`),
    blink frames left out. Signals with reference="first" (motion from the
    first frame to t): the frame of the largest motion of the regions other than the eyes and
    nose (lightly smoothed), i.e. where the face is furthest from its onset.
    """
    reference = getattr(signals, "reference", "sliding")
    n = _check_signals(signals, reference=reference)
    frames = np.asarray(signals.frame)
    if n == 0:
        raise MekitError("the signals hold no frames: no apex to find")
    onset = int(frames[0]) if onset is None else int(onset)
    offset = int(frames[-1]) if offset is None else int(offset)
    if offset < onset:
        raise MekitError(f"offset {offset} is before onset {onset}")
    k = int(signals.k) if reference == "sliding" else 0
    inside = np.flatnonzero((frames >= onset) & (frames <= offset + k))
    if inside.size == 0:
        raise MekitError(
            f"frames {onset}..{offset} are outside the signals' frames "
            f"{int(frames[0])}..{int(frames[-1])}"
        )
    a, b = int(inside[0]), int(inside[-1])
    if reference == "sliding":
        z, blink, _ = combined_contrast(signals, config)
        index = _dip(np.where(blink, 0.0, z), a, b) - k / 2.0
    else:
        usable = usable_frames(signals)
        weights = {r: w for r, w in config.region_weights if r not in NOT_FACE and w > 0}
        motion = sum(
            w * _fill(signals.regions[r], usable)
            for r, w in weights.items()
            if r in signals.regions
        )
        if np.isscalar(motion):
            raise MekitError("the signals have none of the regions spot.region_weights uses")
        motion = _smooth(np.where(usable, motion, 0.0), _window(config.smoothing_s, signals.fps))
        index = a + int(np.argmax(motion[a : b + 1]))
    i = int(round(min(max(index, a), b)))
    return int(min(max(int(frames[i]), onset), offset))


class Rigid(Choice):
    MEDIAN = "median"
    NOSE = "nose"
    NONE = "none"


@dataclass(frozen=True)
class ApexConfig(Config, section="apex"):
    """Settings of `apex_in_clip`.

    rigid: how head motion is removed from each flow: "median" (the median flow of the face
    outside the eyes: most of the face does not move in a micro-expression), "nose" (the mean
    flow of the lower nose, landmarks 29-35) or "none".
    detrend: subtract from the curve the line from 0 at the first frame to its value at the last
    (slow head drift that the rigid step leaves grows through the clip; the expression is mostly
    gone by the offset); skipped when the clip ends in a blink.
    Defaults tuned on synthetic clips of seeds 1 and 3 (`benchmarks/spot_accuracy.py`).
    """

    size: int = 64  # the face is resized to size x size before the flow
    method: FlowMethod = FlowMethod.FARNEBACK
    smooth: int = 3  # moving average of the curve, frames
    detrend: bool = True
    rigid: Rigid = Rigid.MEDIAN
    eye_margin: float = 0.06  # eye box margin, fraction of the face side
    blink_ratio: float = 3.0  # a blink frame: eye motion >= this x the rest of the face's ...
    blink_share: float = 0.5  # ... and >= this share of the clip's largest eye motion
    blink_margin: int = 1  # frames left out on each side of a blink frame


def _box(points: np.ndarray, shape: tuple[int, int], pad: float) -> np.ndarray:
    h, w = shape
    x0, y0 = np.floor(points.min(axis=0) - pad * w).astype(int)
    x1, y1 = np.ceil(points.max(axis=0) + pad * w).astype(int)
    mask = np.zeros(shape, dtype=bool)
    mask[max(y0, 0) : min(y1 + 1, h), max(x0, 0) : min(x1 + 1, w)] = True
    return mask


def _clip_masks(
    landmarks: np.ndarray | None, shape: tuple[int, int], frame_shape: tuple[int, int], config
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(face outside the eyes, eyes, lower nose) masks in the size x size crop."""
    s = shape[0]
    if landmarks is None:
        return np.ones(shape, dtype=bool), None, None
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise MekitError(f"landmarks must be (68, 2), got {lm.shape}")
    h, w = frame_shape
    lm = lm * np.array([s / w, s / h])
    face = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(
        face, cv2.convexHull(lm[list(JAW) + list(range(17, 27))].astype(np.int32)), 1
    )
    # the forehead above the brows moves with AU1/2: keep a band above them too
    brows = lm[17:27]
    top = max(0, int(brows[:, 1].min() - 0.15 * s))
    x0, x1 = max(0, int(brows[:, 0].min())), int(brows[:, 0].max()) + 1
    face[top : int(brows[:, 1].max()) + 1, x0:x1] = 1
    eyes = _box(lm[list(EYES[:6])], shape, config.eye_margin) | _box(
        lm[list(EYES[6:])], shape, config.eye_margin
    )
    use = face.astype(bool) & ~eyes
    if use.sum() < 16:
        use = ~eyes
    nose = _box(lm[[29, 30, 31, 32, 33, 34, 35]], shape, 0.0)
    return use, eyes, nose


def _grow_down(mask: np.ndarray, x: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """mask with each run grown both ways over `allowed` frames while x keeps falling away from
    it (down the slopes of the peak it marks)."""
    out = mask.copy()
    for start, end in _runs(mask):
        i = start
        while i > 0 and allowed[i - 1] and x[i - 1] < x[i]:
            i -= 1
        j = end
        while j < len(x) - 1 and allowed[j + 1] and x[j + 1] < x[j]:
            j += 1
        out[i : j + 1] = True
    return out


def apex_in_clip(
    frames: np.ndarray,
    landmarks: np.ndarray | None = None,
    config: ApexConfig = ApexConfig(),
) -> tuple[int, np.ndarray]:
    """(apex index, curve) of an aligned clip: frames (T, H, W) grey uint8 (or BGR), onset first.

    curve[i] is the mean flow magnitude (px of the `config.size` crop) between frame 0 and
    frame i over the face, rigid motion removed (`config.rigid`). With `landmarks` (68, 2) in
    the frames' pixels the eyes are masked and blink frames (the eyes moving `blink_ratio` x
    more than the rest of the face, near their largest motion in the clip) are left out, with
    `blink_margin` frames each side, as they would swamp a subtle expression: there curve is NaN.
    The apex is the argmax of the curve, detrended (`config.detrend`) and lightly smoothed
    (index 0 when nothing moves).
    """
    frames = np.asarray(frames)
    if frames.ndim == 4 and frames.shape[-1] == 3:
        frames = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames])
    if frames.ndim != 3 or len(frames) == 0:
        raise MekitError(f"apex_in_clip needs frames (T, H, W), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise MekitError(f"apex_in_clip needs uint8 grey frames, got {frames.dtype}")
    t = len(frames)
    if t == 1:
        return 0, np.zeros(1)
    s = int(config.size)
    shape = (s, s)
    small = np.stack([cv2.resize(f, shape, interpolation=cv2.INTER_AREA) for f in frames])
    use, eyes, nose = _clip_masks(landmarks, shape, frames.shape[1:], config)
    curve = np.zeros(t)
    eye_curve = np.zeros(t)
    for i in range(1, t):
        flow = compute_flow(small[0], small[i], config.method)
        if config.rigid == "nose" and nose is not None and nose.any():
            rigid = flow[:, nose].mean(axis=1)
        elif config.rigid != "none":
            rigid = np.median(flow[:, use], axis=1)
        else:
            rigid = np.zeros(2, np.float32)
        flow = flow - rigid[:, None, None].astype(np.float32)
        mag = np.hypot(flow[0], flow[1])
        curve[i] = float(mag[use].mean())
        if eyes is not None:
            eye_curve[i] = float(mag[eyes].mean())
    blink = np.zeros(t, dtype=bool)
    if eyes is not None and eye_curve.max() > 0:
        blink = (eye_curve >= config.blink_ratio * curve) & (
            eye_curve >= config.blink_share * eye_curve.max()
        )
        ratio = eye_curve / np.maximum(curve, EPS)
        blink = _grow_down(blink, eye_curve, ratio >= config.blink_ratio / 2)
        blink = _widen(blink, config.blink_margin, config.blink_margin)
        blink[0] = False
    score = curve
    if config.detrend and not blink[-1]:  # (a blink at the end hides where the drift went)
        score = curve - curve[-1] * np.arange(t) / (t - 1)
    smooth = max(1, int(config.smooth))
    smoothed = ndimage.uniform_filter1d(score, smooth, mode="nearest") if smooth > 1 else score
    smoothed = np.where(blink, -np.inf, smoothed)
    out = curve.copy()
    out[blink] = np.nan
    return int(np.argmax(smoothed)), out
