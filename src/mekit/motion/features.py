"""Features on aligned faces, by kind, for every family of models in the literature.

| kind         | output                        | frames used                     | method of      |
|--------------|-------------------------------|---------------------------------|----------------|
| `onset_apex` | (3, S, S) u, v, strain        | onset, apex                     | STSTNet, OffApex|
| `keyframes`  | (N-1, 3, S, S) u, v, strain   | N keyframes onset..apex (N=11)  | ME-ResNet      |
| `flow_clip`  | (L-1, 3, S, S) dx, dy, mag    | onset..offset, trimmed/padded L | CNN-LSTM       |
| `lbptop`     | (D,) histograms               | onset..offset (TIM optional)    | LBP-TOP + SVM  |
| `apex`       | (1, S, S) grey in [0, 1]      | apex                            | apex CNNs      |
| `apex_flow`  | (4, S, S) apex, u, v, strain  | onset, apex                     | two-stream     |
| `frames`     | (T, 1, S, S) grey in [0, 1]   | T frames onset..offset          | keyframe GRU   |
| `apex_flow_clip` | (T-1, 4, S, S) apex, dx, dy, mag | T frames around the apex | apex+LSTM    |

u, v are in pixels of the aligned face (`FaceConfig.size`, 128 px by default), rigid head motion
removed by subtracting the nose bridge's mean flow; the eyes can be masked (blinks). `keyframes`
applies ME-ResNet's spatio-temporal continuity filter (threshold U = a * p) inside the face.
Eulerian magnification and temporal interpolation are optional steps before the features.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mekit.config import Choice, Config
from mekit.faces.landmarks import EYES, JAW, NOSE_BRIDGE
from mekit.motion.continuity import improved_farneback
from mekit.motion.flow import (
    FlowMethod,
    compute_flow,
    mask_region,
    optical_strain,
    subtract_region_motion,
)
from mekit.motion.keyframes import (
    dx_dy_magnitude,
    every_kth,
    flow_sequence,
    keyframe_numbers,
    normalise_length,
    temporal_interpolate,
)
from mekit.motion.lbptop import lbp_top
from mekit.motion.magnify import eulerian_magnify

# Bump when anything changes what these functions return: cache keys include it.
FEATURE_VERSION = 3  # 3: crop-aware alignment (faces near the frame edge)


class FeatureKind(Choice):
    ONSET_APEX = "onset_apex"
    KEYFRAMES = "keyframes"
    FLOW_CLIP = "flow_clip"
    LBPTOP = "lbptop"
    APEX = "apex"
    APEX_FLOW = "apex_flow"
    FRAMES = "frames"
    APEX_FLOW_CLIP = "apex_flow_clip"


CHANNELS: dict[FeatureKind, tuple[str, ...]] = {
    FeatureKind.ONSET_APEX: ("u", "v", "strain"),
    FeatureKind.KEYFRAMES: ("u", "v", "strain"),
    FeatureKind.FLOW_CLIP: ("dx", "dy", "magnitude"),
    FeatureKind.LBPTOP: (),
    FeatureKind.APEX: ("apex",),
    FeatureKind.APEX_FLOW: ("apex", "u", "v", "strain"),
    FeatureKind.FRAMES: ("grey",),
    FeatureKind.APEX_FLOW_CLIP: ("apex", "dx", "dy", "magnitude"),
}


@dataclass(frozen=True)
class FeatureConfig(Config, section="features"):
    kind: FeatureKind = FeatureKind.ONSET_APEX
    method: FlowMethod = FlowMethod.TVL1
    size: int = 28  # output side, px (STSTNet's 28x28)
    # onset -> apex flow on the aligned faces shrunk to this side first (px; 0: at the aligned
    # face's size). flow_size = size computes the flow at the model's own input size: TV-L1 on
    # 28 px is about 20x faster than on 128 px, but the flow (px of a 28 px face) differs, so
    # only a model trained so reads it (its sidecar records the setting)
    flow_size: int = 0
    head_motion: bool = True  # subtract the nose bridge's mean flow
    nose_halfwidth: float = 0.06  # nose box half width, fraction of the aligned face side
    mask_eyes: bool = False  # zero the flow on the eyes (blinks)
    eye_margin: float = 0.04  # eye box margin, fraction of the aligned face side
    keyframes: int = 11  # frames read: N keyframes (N-1 flows), T `frames`, T `apex_flow_clip`
    keyframe_step: int = 0  # > 0: every k-th frame onset..apex (trimmed/padded to N) instead
    continuity_scale: float = 0.8  # a in U = a * p; 0 turns ME-ResNet's filter off
    clip_length: int = 20  # L for `flow_clip`
    interpolate: int = 0  # TIM to this many frames before `lbptop` (0 = keep all)
    magnify_alpha: float = 0.0  # Eulerian magnification factor before flow (0 = off)
    magnify_band_hz: tuple[float, float] = (1.0, 10.0)
    lbp_radius: tuple[int, int, int] = (1, 1, 1)  # x, y, t
    lbp_neighbours: int = 8
    lbp_grid: tuple[int, int, int] = (5, 5, 1)  # rows, cols, time blocks
    # Precomputed inputs (flow, apex image; no frames) moved from their crop into mekit's face
    # alignment, from the landmarks of the sample's apex image (`mekit.faces.realign`)
    realign: bool = False


def frames_needed(onset: int, apex: int, offset: int, config: FeatureConfig) -> tuple[int, ...]:
    """Frame numbers a feature kind reads, in time order (consecutive where magnified)."""
    kind = FeatureKind(config.kind)
    magnify = config.magnify_alpha > 0
    if kind in (FeatureKind.FLOW_CLIP, FeatureKind.LBPTOP) or (
        magnify and kind is FeatureKind.FRAMES
    ):
        return tuple(range(onset, offset + 1))
    if kind is FeatureKind.APEX_FLOW_CLIP:
        return tuple(sorted({onset, *apex_window(onset, apex, offset, config.keyframes)}))
    if magnify:
        return tuple(range(onset, apex + 1))
    if kind is FeatureKind.FRAMES:
        return tuple(sorted(set(keyframe_numbers(onset, offset, config.keyframes))))
    if kind is FeatureKind.KEYFRAMES:
        return _keyframe_span(onset, apex, config)
    return (onset, apex)  # the apex kinds read the onset too: the face is found there


def _keyframe_span(onset: int, apex: int, config: FeatureConfig) -> tuple[int, ...]:
    if config.keyframe_step > 0:
        return every_kth(onset, apex, config.keyframe_step)
    return tuple(sorted(set(keyframe_numbers(onset, apex, config.keyframes))))


def apex_window(onset: int, apex: int, offset: int, n: int) -> tuple[int, ...]:
    """Up to `n` consecutive frame numbers centred on the apex, kept inside onset..offset."""
    start = max(onset, min(apex - n // 2, offset - n + 1))
    return tuple(range(start, min(start + n, offset + 1)))


def _box(landmarks: np.ndarray, idx, shape: tuple[int, int], pad: float) -> np.ndarray:
    h, w = shape
    pts = landmarks[list(idx)]
    x0, y0 = np.floor(pts.min(axis=0) - pad * w).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0) + pad * w).astype(int)
    mask = np.zeros(shape, dtype=bool)
    mask[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)] = True
    return mask


def nose_mask(landmarks: np.ndarray, shape: tuple[int, int], halfwidth: float) -> np.ndarray:
    """Bool (H, W) box around the nose bridge landmarks 27-30."""
    return _box(landmarks, NOSE_BRIDGE, shape, halfwidth)


def eye_mask(landmarks: np.ndarray, shape: tuple[int, int], margin: float) -> np.ndarray:
    """Bool (H, W): boxes around each eye's landmarks 36-41 and 42-47."""
    return _box(landmarks, EYES[:6], shape, margin) | _box(landmarks, EYES[6:], shape, margin)


def face_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool (H, W): the hull of the jaw line and brows."""
    hull = cv2.convexHull(landmarks[list(JAW) + list(range(17, 27))].astype(np.int32))
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def _clean(flow: np.ndarray, landmarks: np.ndarray, config: FeatureConfig) -> np.ndarray:
    shape = flow.shape[1:]
    if config.head_motion:
        flow = subtract_region_motion(flow, nose_mask(landmarks, shape, config.nose_halfwidth))
    if config.mask_eyes:
        flow = mask_region(flow, eye_mask(landmarks, shape, config.eye_margin))
    return flow


def _resize(stack: np.ndarray, size: int) -> np.ndarray:
    """(..., C, H, W) -> (..., C, size, size) by area averaging."""
    if stack.shape[-1] == size:
        return stack.astype(np.float32)
    flat = stack.reshape(-1, *stack.shape[-2:])
    out = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in flat])
    return out.reshape(*stack.shape[:-2], size, size).astype(np.float32)


def onset_apex_flow(
    onset: np.ndarray, apex: np.ndarray, landmarks: np.ndarray, config: FeatureConfig
) -> np.ndarray:
    """(2, H, W) float32 u, v from aligned grey onset to apex frames (H x W, the aligned face),
    px, with head motion removed and the eyes masked as `config` says; with
    `config.flow_size` > 0 the frames (and landmarks) are shrunk to that side first, and the
    flow is (2, flow_size, flow_size) in its px."""
    side = int(config.flow_size)
    if side > 0 and side != onset.shape[-1]:
        scale = np.array([side / onset.shape[1], side / onset.shape[0]], np.float32)
        onset, apex = (
            cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in (onset, apex)
        )
        landmarks = np.asarray(landmarks, np.float32) * scale
    return _clean(compute_flow(onset, apex, config.method), landmarks, config)


def flow_features(flow: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(3, S, S) float32 (u, v, strain) of an `onset_apex_flow` result, resized to S."""
    return _resize(np.concatenate([flow, optical_strain(flow)[None]], axis=0), config.size)


def onset_apex_features(
    onset: np.ndarray, apex: np.ndarray, landmarks: np.ndarray, config: FeatureConfig
) -> np.ndarray:
    """(3, S, S) float32 (u, v, strain) from aligned grey onset/apex frames and their landmarks."""
    return flow_features(onset_apex_flow(onset, apex, landmarks, config), config)


def compute_features(
    frames: np.ndarray,
    numbers: tuple[int, ...],
    onset: int,
    apex: int,
    offset: int,
    fps: float,
    landmarks: np.ndarray,
    config: FeatureConfig,
) -> np.ndarray:
    """Features of one clip from its aligned grey frames (T, H, W) uint8 numbered `numbers`
    (as `frames_needed` lists them)."""
    if config.magnify_alpha > 0:
        low, high = config.magnify_band_hz
        magnified = eulerian_magnify(frames, fps, low, high, alpha=config.magnify_alpha)
        frames = np.clip(np.rint(magnified), 0, 255).astype(np.uint8)
    at = {n: i for i, n in enumerate(numbers)}
    kind = FeatureKind(config.kind)
    if kind is FeatureKind.ONSET_APEX:
        return onset_apex_features(frames[at[onset]], frames[at[apex]], landmarks, config)
    if kind is FeatureKind.APEX:
        return _resize(frames[at[apex]][None] / np.float32(255), config.size)
    if kind is FeatureKind.APEX_FLOW:
        apex_image = _resize(frames[at[apex]][None] / np.float32(255), config.size)
        flow = onset_apex_features(frames[at[onset]], frames[at[apex]], landmarks, config)
        return np.concatenate([apex_image, flow])
    if kind is FeatureKind.FRAMES:
        picked = frames[[at[n] for n in keyframe_numbers(onset, offset, config.keyframes)]]
        return _resize(picked[:, None] / np.float32(255), config.size)
    if kind is FeatureKind.APEX_FLOW_CLIP:
        span = apex_window(onset, apex, offset, config.keyframes)
        window = normalise_length(frames[[at[n] for n in span]], config.keyframes)
        flows = np.stack(
            [_clean(f, landmarks, config) for f in flow_sequence(window, config.method)]
        )
        motion = _resize(dx_dy_magnitude(flows), config.size)
        apex_image = _resize(frames[at[apex]][None] / np.float32(255), config.size)
        return np.concatenate([np.repeat(apex_image[None], len(motion), axis=0), motion], axis=1)
    if kind is FeatureKind.KEYFRAMES:
        if config.keyframe_step > 0:
            span = every_kth(onset, apex, config.keyframe_step)
            keys = normalise_length(frames[[at[n] for n in span]], config.keyframes)
        else:
            keys = frames[[at[n] for n in keyframe_numbers(onset, apex, config.keyframes)]]
        if config.continuity_scale > 0:
            roi = face_mask(landmarks, keys.shape[1:])
            flows = improved_farneback(keys, config.continuity_scale, roi, method=config.method)
        else:
            flows = flow_sequence(keys, method=config.method)
        cleaned = [_clean(f, landmarks, config) for f in flows]
        stack = np.stack([np.concatenate([f, optical_strain(f)[None]]) for f in cleaned])
        return _resize(stack, config.size)
    if kind is FeatureKind.FLOW_CLIP:
        clip = normalise_length(frames, config.clip_length)
        flows = np.stack([_clean(f, landmarks, config) for f in flow_sequence(clip, config.method)])
        return _resize(dx_dy_magnitude(flows), config.size)
    volume = frames
    if config.interpolate:
        volume = np.clip(np.rint(temporal_interpolate(frames, config.interpolate)), 0, 255)
    return lbp_top(
        volume.astype(np.uint8),
        radius=config.lbp_radius,
        neighbours=config.lbp_neighbours,
        grid=config.lbp_grid,
    )
