from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mekit.errors import MekitError
from mekit.motion.normalise import minmax_flow
from mekit.synth import SynthConfig, au_flows
from mekit.synth.au_flows import (
    AUS,
    AUFlowConfig,
    au_flow_dataset,
    au_flow_sample,
    is_rendered,
)
from mekit.synth.aus import AU_LIBRARY, au_field
from mekit.synth.subjects import subject_identity


@pytest.fixture(scope="module")
def landmarks() -> np.ndarray:
    return subject_identity(0, SynthConfig()).landmarks


def test_a_unilateral_au_moves_one_half_of_the_image(landmarks):
    both = np.hypot(*au_field([12], landmarks, (192, 192)).transpose(2, 0, 1))
    middle = int(round(landmarks[27:31, 0].mean()))
    for side, moving, still in (
        ("image_left", slice(0, middle), slice(middle, None)),
        ("image_right", slice(middle, None), slice(0, middle)),
    ):
        one = np.hypot(*au_field([12], landmarks, (192, 192), {12: side}).transpose(2, 0, 1))
        assert one[:, moving].max() == pytest.approx(both[:, moving].max(), rel=0.05)
        assert one[:, still].max() < 0.05 * both[:, still].max()


def test_an_unknown_side_is_refused(landmarks):
    with pytest.raises(MekitError, match="unknown side"):
        au_field([12], landmarks, (64, 64), {12: "up"})


def test_samples_are_normalised_labelled_and_reproducible():
    x, y = au_flow_dataset(40)
    assert x.shape == (40, 3, 28, 28) and x.dtype == np.float32
    assert y.shape == (40, len(AUS)) and set(np.unique(y)) <= {0.0, 1.0}
    assert x[:, :2].min() == -1.0 and x[:, :2].max() == 1.0
    assert x[:, 2].min() == 0.0 and x[:, 2].max() == 1.0
    np.testing.assert_array_equal(minmax_flow(x), x)  # already as an 8-bit flow image reads
    again, labels = au_flow_dataset(5, start=10)
    np.testing.assert_array_equal(again, x[10:15])  # per-sample streams: any slice, same bytes
    np.testing.assert_array_equal(labels, y[10:15])
    other, _ = au_flow_sample(10, AUFlowConfig(seed=1))
    assert not np.array_equal(other, x[10])


def test_every_au_is_drawn_and_samples_hold_one_to_a_few():
    _, y = au_flow_dataset(300)
    assert (y.sum(axis=0) >= 10).all(), dict(zip(AUS, y.sum(axis=0), strict=True))
    assert 1.2 < y.sum(axis=1).mean() < 3


def test_the_field_sits_where_its_au_acts():
    """Without nuisances to speak of, AU4 moves the top of the crop and AU17 the bottom."""
    config = AUFlowConfig(none_share=0, prototype_share=1, blink_prob=0, outlier_prob=0)
    rows = {4: [], 17: []}
    for i in range(200):
        x, y = au_flow_sample(i, config)
        present = {a for a, v in zip(AUS, y, strict=True) if v}
        for au in rows:
            if present == {au}:
                u, v = x[0] - np.median(x[0]), x[1] - np.median(x[1])
                rows[au].append(np.argmax(np.hypot(u, v).mean(axis=1)))
    assert rows[4] and rows[17]
    assert np.median(rows[4]) < 10 < 18 < np.median(rows[17])


def test_cancelling_aus_are_never_drawn_together_and_brows_can_carry_the_forehead():
    from mekit.synth.au_flows import CANCELLING, SKIN_LIBRARY

    _, y = au_flow_dataset(300)
    for dropped, kept in CANCELLING:
        both = (y[:, AUS.index(dropped)] > 0) & (y[:, AUS.index(kept)] > 0)
        assert not both.any()
    for au in (1, 2, 4, 12):
        assert len(SKIN_LIBRARY[au]) == len(AU_LIBRARY[au]) + 1


def test_the_real_face_options_pair_cheek_with_smile_and_stretch_the_crop():
    from mekit.synth.au_flows import SHAPE_LIBRARY

    paired = AUFlowConfig(cheek_with_smile=1.0, real_shapes=1.0)
    _, y = au_flow_dataset(300, paired)
    with_cheek = y[:, AUS.index(6)] > 0
    assert with_cheek.any() and (y[with_cheek, AUS.index(12)] > 0).all()
    assert set(SHAPE_LIBRARY) == {7, 10, 12}

    def chin_row(config: AUFlowConfig) -> float:
        rows = []
        for i in range(150):
            x, y = au_flow_sample(i, config)
            if {a for a, v in zip(AUS, y, strict=True) if v} == {17}:
                u, v = x[0] - np.median(x[0]), x[1] - np.median(x[1])
                rows.append(np.argmax(np.hypot(u, v).mean(axis=1)))
        return float(np.median(rows))

    clean = AUFlowConfig(none_share=0, prototype_share=1, blink_prob=0, outlier_prob=0)
    taller = replace(clean, crop_stretch=(1.3, 1.3))
    assert chin_row(taller) > chin_row(clean)  # a taller crop puts the chin lower


def test_patch_noise_is_flat_regions_and_off_by_default():
    from mekit.synth.au_flows import _patches

    patches = _patches(np.random.default_rng(3))
    values = {tuple(v) for v in patches.reshape(2, -1).T}
    assert 2 <= len(values) <= 12  # one motion per cell, some cells still
    x, _ = au_flow_dataset(6)
    off, _ = au_flow_dataset(6, AUFlowConfig(patch_noise=(0.0, 0.0), patch_share=0.5))
    np.testing.assert_array_equal(off, x)
    noisy, _ = au_flow_dataset(6, AUFlowConfig(patch_noise=(1.0, 2.0)))
    assert not np.array_equal(noisy, x)


def test_rendered_samples_are_spread_evenly_over_the_indexes():
    def rendered(share: float, n: int = 40) -> list[int]:
        return [i for i in range(n) if is_rendered(i, AUFlowConfig(rendered=share))]

    assert rendered(0.0) == []
    assert rendered(1.0) == list(range(40))
    assert rendered(0.5) == list(range(1, 40, 2))
    quarter = rendered(0.25)
    assert all(sum(i in quarter for i in range(k, k + 4)) == 1 for k in range(0, 37))
    with pytest.raises(MekitError, match="rendered"):
        AUFlowConfig(rendered=1.5)


def test_rendered_samples_are_normalised_labelled_and_reproducible():
    config = AUFlowConfig(rendered=0.5)
    x, y = au_flow_dataset(6, config)
    assert x.shape == (6, 3, 28, 28) and np.isfinite(x).all()
    np.testing.assert_array_equal(minmax_flow(x), x)
    written, labels = au_flow_dataset(6)
    np.testing.assert_array_equal(x[0::2], written[0::2])  # the others are as without
    np.testing.assert_array_equal(y[0::2], labels[0::2])
    assert not np.array_equal(x[1::2], written[1::2])
    again, _ = au_flow_dataset(2, config, start=3)
    np.testing.assert_array_equal(again, x[3:5])
    stretched, _ = au_flow_dataset(2, replace(config, crop_stretch=(1.2, 1.3)))
    assert not np.array_equal(stretched[1], x[1])  # the crop settings apply to rendered ones too


def test_workers_make_the_same_bytes(monkeypatch):
    monkeypatch.setattr(au_flows, "CHUNK", 3)
    config = AUFlowConfig(rendered=0.5, seed=2)
    x1, y1 = au_flow_dataset(8, config, start=5)
    x2, y2 = au_flow_dataset(8, config, start=5, workers=2)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


def test_tvl1_measures_the_au_field_on_a_rendered_face():
    """The truth is the field the apex was warped with: where it moves the face by at least a
    third of its 1 px peak, TV-L1's flow points the same way, at a sub-pixel size."""
    config = AUFlowConfig(render_noise=(0.3, 0.3))
    onset, lm = au_flows._crop_face(np.random.default_rng(0), config)
    for au in (4, 12, 15):
        field = au_field([au], lm, onset.shape)
        field *= np.float32(1.0 / np.hypot(field[..., 0], field[..., 1]).max())
        flow = au_flows.measured_flow(onset, field, np.random.default_rng(au), config)
        moving = np.hypot(field[..., 0], field[..., 1]) > 1 / 3
        dot = (flow[0] * field[..., 0] + flow[1] * field[..., 1])[moving]
        lengths = np.hypot(*flow)[moving] * np.hypot(field[..., 0], field[..., 1])[moving]
        assert dot.sum() / lengths.sum() > 0.8, au
        assert 0.1 < np.hypot(*flow)[moving].mean() < 1.5, au
