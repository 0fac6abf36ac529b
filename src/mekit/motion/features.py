"""Onset -> apex flow features: (u, v, strain) on the aligned face, resized for the model.

This is the input of STSTNet-style models: a (3, S, S) float32 array, channels (u, v, strain),
u and v in pixels of the aligned face (config `faces.size`, 128 px by default) and head motion
removed by subtracting the nose bridge's mean flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mekit.faces.landmarks import NOSE_BRIDGE
from mekit.motion.flow import FlowMethod, compute_flow, optical_strain, subtract_region_motion

# Bump when anything changes what onset_apex_features returns: the cache key includes it.
FEATURE_VERSION = 1


@dataclass(frozen=True)
class FlowConfig:
    method: FlowMethod = FlowMethod.TVL1
    size: int = 28  # output side, px (STSTNet's 28x28)
    head_motion: bool = True  # subtract the nose bridge's mean flow
    nose_halfwidth: float = 0.06  # nose box half width, fraction of the aligned face side


def nose_mask(landmarks: np.ndarray, shape: tuple[int, int], halfwidth: float) -> np.ndarray:
    """Bool (H, W) box around the nose bridge landmarks 27-30."""
    h, w = shape
    pts = landmarks[list(NOSE_BRIDGE)]
    pad = halfwidth * w
    x0, y0 = np.floor(pts.min(axis=0) - pad).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0) + pad).astype(int)
    mask = np.zeros(shape, dtype=bool)
    mask[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)] = True
    return mask


def onset_apex_features(
    onset: np.ndarray, apex: np.ndarray, landmarks: np.ndarray, config: FlowConfig
) -> np.ndarray:
    """(3, S, S) float32 (u, v, strain) from aligned grey onset/apex frames and their landmarks."""
    flow = compute_flow(onset, apex, config.method)
    if config.head_motion:
        flow = subtract_region_motion(
            flow, nose_mask(landmarks, onset.shape, config.nose_halfwidth)
        )
    strain = optical_strain(flow)
    stack = np.concatenate([flow, strain[None]], axis=0)
    if config.size != onset.shape[0]:
        stack = np.stack(
            [cv2.resize(c, (config.size, config.size), interpolation=cv2.INTER_AREA) for c in stack]
        )
    return stack.astype(np.float32)
