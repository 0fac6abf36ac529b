import numpy as np
import pytest
from scipy import ndimage

from mekit.errors import MekitError
from mekit.motion.lbptop import lbp_top, lbp_top_codes, n_bins, uniform_mapping


def volume(shape=(8, 24, 24), seed=0):
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


def split(feature, grid=(5, 5, 1), neighbours=8):
    rows, cols, tblocks = grid
    return feature.reshape(tblocks, rows, cols, 3, n_bins(neighbours))


def reference_codes(vol, radius, neighbours):
    """Codes by the definition: every neighbour of every interior voxel read with scipy's
    (tri)linear interpolation, one point at a time."""
    rx, ry, rt = radius
    mt, my, mx = int(np.ceil(rt)), int(np.ceil(ry)), int(np.ceil(rx))
    t, y, x = np.mgrid[mt : vol.shape[0] - mt, my : vol.shape[1] - my, mx : vol.shape[2] - mx]
    centre = vol[t, y, x].astype(np.float64)
    codes = np.zeros((3, *t.shape), np.int64)
    for p in range(neighbours):
        a = 2 * np.pi * p / neighbours
        c, s = np.cos(a), np.sin(a)
        points = [
            (t, y - ry * s, x + rx * c),
            (t - rt * s, y, x + rx * c),
            (t - rt * s, y + ry * c, x),
        ]
        for plane, (pt, py, px) in enumerate(points):
            coords = np.round(np.stack([pt, py, px]).astype(np.float64), 6)
            values = ndimage.map_coordinates(vol.astype(np.float64), coords, order=1)
            codes[plane] |= (values >= centre - 1e-3).astype(np.int64) << p
    return codes


@pytest.mark.parametrize("radius,neighbours", [((1, 1, 1), 8), ((2, 1, 1), 8), ((2, 2, 1), 4)])
def test_codes_match_the_definition(radius, neighbours):
    vol = volume()
    assert np.array_equal(
        lbp_top_codes(vol, radius, neighbours), reference_codes(vol, radius, neighbours)
    )


def test_uniform_mapping_counts_and_order():
    m = uniform_mapping(8)
    assert m.shape == (256,) and m.max() == 58
    assert len(set(m.tolist()) - {58}) == 58  # P(P-1)+2 uniform patterns, each its own bin
    assert m[0] == 0 and m[255] == 57 and m[0b00111000] < 58
    assert m[0b01010000] == 58  # four transitions: not uniform
    assert uniform_mapping(4).max() == 14


@pytest.mark.parametrize("value", [0, 13, 77, 255])  # 13: interpolation round-off < 13
def test_constant_volume_puts_all_mass_in_the_all_ones_bin(value):
    vol = np.full((6, 30, 30), value, np.uint8)
    feature = split(lbp_top(vol))
    all_ones = uniform_mapping(8)[255]
    assert np.all(feature[..., all_ones] == 1.0)
    assert feature.sum() == pytest.approx(5 * 5 * 3)


@pytest.mark.parametrize(
    "grid,neighbours,uniform,bins",
    [((5, 5, 1), 8, True, 59), ((2, 3, 2), 8, True, 59), ((4, 4, 1), 4, True, 15),
     ((2, 2, 1), 8, False, 256)],
)  # fmt: skip
def test_feature_length_and_normalised_block_histograms(grid, neighbours, uniform, bins):
    feature = lbp_top(volume((10, 40, 36)), grid=grid, neighbours=neighbours, uniform=uniform)
    rows, cols, tblocks = grid
    assert feature.dtype == np.float32 and feature.ndim == 1
    assert feature.shape == (rows * cols * tblocks * 3 * bins,)
    per_block_plane = feature.reshape(-1, bins).sum(axis=1)
    assert np.allclose(per_block_plane, 1.0, atol=1e-6)


def test_change_in_time_alone_shows_in_xt_yt_but_not_xy():
    texture = volume((1, 40, 40), seed=3)[0] // 2  # 0..127, room for brightness offsets
    static = np.stack([texture] * 9)
    offsets = np.array([0, 40, 5, 60, 20, 0, 80, 10, 30], np.uint8)  # flicker, no translation
    flickering = static + offsets[:, None, None]
    a, b = split(lbp_top(static)), split(lbp_top(flickering))
    assert np.array_equal(a[..., 0, :], b[..., 0, :])  # XY: same texture in every frame
    for plane in (1, 2):  # XT, YT
        assert np.abs(a[..., plane, :] - b[..., plane, :]).sum(axis=-1).min() > 0.5


def test_too_small_volume_or_grid_raises():
    with pytest.raises(MekitError, match="too small"):
        lbp_top(volume((2, 20, 20)))
    with pytest.raises(MekitError, match="more blocks"):
        lbp_top(volume((5, 8, 8)), grid=(7, 7, 1))
