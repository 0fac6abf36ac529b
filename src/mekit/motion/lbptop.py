"""LBP-TOP (Zhao & Pietikäinen 2007): local binary patterns on three orthogonal planes, the
classical micro-expression baseline feature.

For every voxel, P neighbours on a circle (ellipse, radii Rx, Ry, Rt) in each of the XY, XT and
YT planes through it are compared with the voxel: bit p is 1 where neighbour p >= centre. The
neighbours sit at angle 2 pi p / P:

    XY: (x + Rx cos, y - Ry sin, t)
    XT: (x + Rx cos, y, t - Rt sin)
    YT: (x, y + Ry cos, t - Rt sin)

and are read with bilinear interpolation in their plane (offsets rounded to 1e-6 px, so those
that are whole numbers read one pixel). Codes are computed where every plane's neighbourhood
lies inside the volume (a border of ceil(R) per axis is skipped); the rest is split into a grid
of blocks and each block's codes are histogrammed per plane.
"""

from __future__ import annotations

import math

import numpy as np

from mekit.errors import MekitError

PLANES = ("xy", "xt", "yt")
_TIE = 1e-3  # grey levels: interpolation round-off must not turn a tie into "less than"


def uniform_mapping(neighbours: int) -> np.ndarray:
    """(2**P,) int: code -> bin. The P(P-1)+2 uniform codes (at most two circular 0/1
    transitions) get bins 0.. in increasing code order; all others share the last bin,
    P(P-1)+2. With P = 8: 59 bins, and 255 (all neighbours >= centre) maps to bin 57."""
    codes = np.arange(2**neighbours)
    rotated = (codes >> 1) | ((codes & 1) << (neighbours - 1))
    changed = codes ^ rotated
    transitions = sum((changed >> b) & 1 for b in range(neighbours))
    uniform = transitions <= 2
    mapping = np.full(codes.shape, neighbours * (neighbours - 1) + 2)
    mapping[uniform] = np.arange(int(uniform.sum()))
    return mapping


def n_bins(neighbours: int, uniform: bool = True) -> int:
    """Histogram bins per block and plane: P(P-1)+3 for uniform patterns, else 2**P."""
    return neighbours * (neighbours - 1) + 3 if uniform else 2**neighbours


def _margins(radius: tuple[float, float, float]) -> tuple[int, int, int]:
    """(t, y, x) border skipped, px / frames."""
    rx, ry, rt = radius
    return math.ceil(rt), math.ceil(ry), math.ceil(rx)


def _sample(
    volume: np.ndarray, offset: tuple[float, float, float], margins: tuple[int, int, int]
) -> np.ndarray:
    """The volume at every interior voxel + `offset` (dt, dy, dx), bilinear (only one or two axes
    have a fractional offset)."""
    t_m, y_m, x_m = margins
    shape = np.subtract(volume.shape, 2 * np.array(margins))
    axes = []
    for d in offset:
        d = round(d, 6)
        lo = math.floor(d)
        frac = d - lo
        axes.append([(lo, 1.0 - frac), (lo + 1, frac)] if frac > 0 else [(lo, 1.0)])
    out = np.zeros(shape, np.float32)
    for dt, wt in axes[0]:
        for dy, wy in axes[1]:
            for dx, wx in axes[2]:
                t0, y0, x0 = t_m + dt, y_m + dy, x_m + dx
                part = volume[t0 : t0 + shape[0], y0 : y0 + shape[1], x0 : x0 + shape[2]]
                out += np.float32(wt * wy * wx) * part
    return out


def lbp_top_codes(
    volume: np.ndarray, radius: tuple[int, int, int] = (1, 1, 1), neighbours: int = 8
) -> np.ndarray:
    """(T, H, W) grey volume -> (3, T - 2 ceil(Rt), H - 2 ceil(Ry), W - 2 ceil(Rx)) int64 LBP
    codes of the interior voxels, planes in the order XY, XT, YT. `radius` is (Rx, Ry, Rt) in
    px, px and frames."""
    if volume.ndim != 3:
        raise ValueError(f"LBP-TOP needs a (T, H, W) grey volume, got {volume.shape}")
    if not 2 <= neighbours <= 16:
        raise MekitError(f"LBP neighbours must be between 2 and 16, got {neighbours}")
    if min(radius) <= 0:
        raise MekitError(f"LBP radii (x, y, t) must be > 0, got {radius}")
    margins = _margins(radius)
    if any(s <= 2 * m for s, m in zip(volume.shape, margins, strict=True)):
        raise MekitError(
            f"a {volume.shape} (T, H, W) volume is too small for LBP radii {radius}: it needs "
            f"more than {2 * margins[0]} frames, {2 * margins[1]} rows and {2 * margins[2]} columns"
        )
    rx, ry, rt = radius
    vol = volume.astype(np.float32)
    t_m, y_m, x_m = margins
    centre = vol[t_m : vol.shape[0] - t_m, y_m : vol.shape[1] - y_m, x_m : vol.shape[2] - x_m]
    codes = np.zeros((3, *centre.shape), np.int64)
    for p in range(neighbours):
        angle = 2.0 * np.pi * p / neighbours
        c, s = math.cos(angle), math.sin(angle)
        offsets = ((0.0, -ry * s, rx * c), (-rt * s, 0.0, rx * c), (-rt * s, ry * c, 0.0))
        for plane, offset in enumerate(offsets):
            bit = _sample(vol, offset, margins) >= centre - _TIE
            codes[plane] |= bit.astype(np.int64) << p
    return codes


def _block_ids(length: int, blocks: int) -> np.ndarray:
    """(length,) block index of each position, blocks as equal as np.array_split makes them."""
    return np.concatenate(
        [np.full(len(part), i) for i, part in enumerate(np.array_split(np.arange(length), blocks))]
    )


def lbp_top(
    volume: np.ndarray,
    radius: tuple[int, int, int] = (1, 1, 1),
    neighbours: int = 8,
    grid: tuple[int, int, int] = (5, 5, 1),
    uniform: bool = True,
) -> np.ndarray:
    """(T, H, W) grey volume -> 1D float32 LBP-TOP feature.

    `radius` (Rx, Ry, Rt); `grid` (rows, cols, time blocks) splits the interior voxels. Length
    rows * cols * tblocks * 3 * bins (bins = P(P-1)+3 uniform, else 2**P), laid out as
    (time block, row, col, plane XY/XT/YT, bin); each block-plane histogram sums to 1.
    """
    rows, cols, tblocks = grid
    if min(grid) < 1:
        raise MekitError(f"LBP-TOP grid (rows, cols, time blocks) must be >= 1, got {grid}")
    codes = lbp_top_codes(volume, radius, neighbours)
    _, t, h, w = codes.shape
    if t < tblocks or h < rows or w < cols:
        raise MekitError(
            f"LBP-TOP grid {grid} has more blocks than the {t}x{h}x{w} (T, H, W) interior: "
            "use fewer blocks or a larger volume"
        )
    if uniform:
        codes = uniform_mapping(neighbours)[codes]
    bins = n_bins(neighbours, uniform)
    block = (
        _block_ids(t, tblocks)[:, None, None] * rows + _block_ids(h, rows)[None, :, None]
    ) * cols + _block_ids(w, cols)[None, None, :]
    n_blocks = rows * cols * tblocks
    hist = np.empty((n_blocks, 3, bins), np.float64)
    for plane in range(3):
        index = (block * bins + codes[plane]).ravel()
        hist[:, plane] = np.bincount(index, minlength=n_blocks * bins).reshape(n_blocks, bins)
    hist /= hist.sum(axis=2, keepdims=True)
    return hist.astype(np.float32).ravel()
