from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mekit.motion.extract import read_flow
from mekit.motion.normalise import minmax_flow


def test_matches_what_read_flow_gives_for_a_min_max_flow_image(tmp_path: Path):
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 2, (3, 28, 28)).astype(np.float32)
    flow[2] = np.abs(flow[2])
    channels = [np.rint((c - c.min()) / (c.max() - c.min()) * 255).astype(np.uint8) for c in flow]
    path = tmp_path / "flow.png"
    cv2.imwrite(str(path), np.dstack(channels[::-1]))  # B = strain, G = v, R = u
    read = read_flow(path, 28, 128, "s")
    np.testing.assert_allclose(minmax_flow(flow), read, atol=1e-6)
    np.testing.assert_allclose(minmax_flow(read), read, atol=1e-6)  # idempotent


def test_scale_and_offset_do_not_matter_and_batches_work():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (4, 3, 8, 8))
    np.testing.assert_array_equal(minmax_flow(x), minmax_flow(3 * x + 5))
    np.testing.assert_array_equal(minmax_flow(x)[2], minmax_flow(x[2]))


def test_a_constant_channel_is_zero_and_bad_shapes_raise():
    x = np.zeros((3, 4, 4))
    assert not minmax_flow(x).any()
    with pytest.raises(ValueError, match="u, v, strain"):
        minmax_flow(np.zeros((2, 4, 4)))
