"""Dense optical flow (OpenCV's TV-L1, Farneback, DIS) and optical strain.

All flows are (2, H, W) float32 arrays (u, v) in pixels: the motion that carries a point of the
first frame to the second (u to the right, v down).
"""

from __future__ import annotations

import cv2
import numpy as np

from mekit.config import Choice


class FlowMethod(Choice):
    TVL1 = "tvl1"
    FARNEBACK = "farneback"
    DIS = "dis"


def compute_flow(first: np.ndarray, second: np.ndarray, method: FlowMethod | str) -> np.ndarray:
    """Flow from `first` to `second` (grey uint8, same shape) -> (2, H, W) float32, px."""
    method = FlowMethod(method)
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(
            f"flow needs two grey frames of one shape, got {first.shape}, {second.shape}"
        )
    if method is FlowMethod.TVL1:
        flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(first, second, None)
    elif method is FlowMethod.FARNEBACK:
        flow = cv2.calcOpticalFlowFarneback(
            first,
            second,
            None,
            pyr_scale=0.5,
            levels=3,
            winsize=15,
            iterations=3,
            poly_n=5,
            poly_sigma=1.2,
            flags=0,
        )
    else:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow = dis.calc(first, second, None)
    return np.ascontiguousarray(flow.transpose(2, 0, 1), dtype=np.float32)


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Strain magnitude sqrt(ux^2 + vy^2 + 0.5 (uy + vx)^2) of a (2, H, W) flow -> (H, W)."""
    u, v = flow[0], flow[1]
    uy, ux = np.gradient(u)
    vy, vx = np.gradient(v)
    return np.sqrt(ux**2 + vy**2 + 0.5 * (uy + vx) ** 2).astype(np.float32)


def magnitude(flow: np.ndarray) -> np.ndarray:
    """Flow magnitude (H, W), px."""
    return np.hypot(flow[0], flow[1]).astype(np.float32)


def orientation(flow: np.ndarray) -> np.ndarray:
    """Flow direction (H, W) in radians, in (-pi, pi]; 0 = rightwards, pi/2 = downwards."""
    return np.arctan2(flow[1], flow[0]).astype(np.float32)


def mask_region(flow: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero the flow inside `mask` (H, W bool), e.g. the eyes, whose blinks dwarf AU motion."""
    out = flow.copy()
    out[:, mask] = 0.0
    return out


def subtract_region_motion(flow: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Remove rigid head motion: subtract the mean flow inside `mask` (H, W bool), e.g. the
    nose bridge, which no action unit moves much."""
    if not mask.any():
        return flow
    mean = flow[:, mask].mean(axis=1)
    return flow - mean[:, None, None].astype(np.float32)
