from __future__ import annotations

import numpy as np
import pytest
import torch

from mekit.config import from_mapping
from mekit.errors import MekitError
from mekit.models import ModelSpec, get_spec
from mekit.train import TrainConfig, fit
from mekit.train.augment import (
    ERASE_AREA,
    affine,
    hflip,
    mixup,
    mixup_loss,
    random_affine,
    random_erase,
    random_hflip,
    temporal_jitter,
)
from mekit.train.loop import _flow_channels


def _ramp() -> torch.Tensor:
    x = torch.zeros(1, 3, 4, 5)
    x[0, 0, :, 0] = 2.0  # u: rightward motion at the left edge
    x[0, 1, :, 0] = 1.0  # v: downward motion at the left edge
    x[0, 2, :, 0] = 0.5  # strain
    return x


def test_flow_flip_mirrors_and_negates_u_only():
    out = hflip(_ramp(), u_channel=0)
    assert (out[0, 0, :, -1] == -2.0).all() and (out[0, 0, :, :-1] == 0).all()
    assert (out[0, 1, :, -1] == 1.0).all()
    assert (out[0, 2, :, -1] == 0.5).all()


def test_image_flip_only_mirrors_and_flips_are_involutions():
    x = _ramp()
    assert (hflip(x, u_channel=None)[0, 0, :, -1] == 2.0).all()
    for u in (0, 1, None):
        assert torch.equal(hflip(hflip(x, u), u), x)
    seq = torch.randn(2, 2, 3, 4, 4)  # (B, C, T, H, W)
    assert torch.equal(hflip(seq, True)[:, 0], -torch.flip(seq[:, 0], dims=(-1,)))


def test_random_hflip_is_reproducible_and_leaves_input_alone():
    x = torch.randn(64, 3, 4, 4)
    before = x.clone()
    a = random_hflip(x, True, torch.Generator().manual_seed(1))
    b = random_hflip(x, True, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(x, before)
    flipped = [not torch.equal(a[i], x[i]) for i in range(64)]
    assert 10 < sum(flipped) < 54


# --- rotation / zoom / shift and temporal jitter ------------------------------------------


def _square_and_flow(size: int = 32, at: tuple[int, int] = (8, 0), flow=(1.0, 0.0)):
    """(1, 3, S, S): channels u, v (constant flow) and a 4x4 square centred `at` = (x, y)
    pixels from the image centre (x right, y down)."""
    x = torch.zeros(1, 3, size, size)
    x[0, 0], x[0, 1] = flow
    c = (size - 1) / 2
    col, row = round(c + at[0] - 1.5), round(c + at[1] - 1.5)
    x[0, 2, row : row + 4, col : col + 4] = 1.0
    return x


def _centroid(img: torch.Tensor) -> torch.Tensor:
    """(x, y) centroid of a (H, W) image in pixels from the centre."""
    h, w = img.shape
    ys, xs = torch.meshgrid(
        torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij"
    )
    m = img.sum()
    return torch.stack([(img * xs).sum() / m, (img * ys).sum() / m])


@pytest.mark.parametrize(
    "angle, flow, square", [(90.0, (0.0, 1.0), (0.0, 8.0)), (-90.0, (0.0, -1.0), (0.0, -8.0))]
)
def test_rotating_flow_turns_its_vectors_with_the_image(angle, flow, square):
    x = _square_and_flow()  # flow (1, 0): rightward; square right of the centre
    out = affine(x, torch.tensor([angle]), torch.ones(1), torch.zeros(1, 2), flow_channels=(0, 1))
    # the square moved a quarter turn: +90 deg carries "right of centre" to "below centre"
    assert _centroid(out[0, 2]).tolist() == pytest.approx(square, abs=1e-4)
    # and the flow turned the same way: rightward motion became downward (or upward) motion
    assert out[0, 0].abs().max() < 1e-5
    assert torch.allclose(out[0, 1], torch.full_like(out[0, 1], flow[1]), atol=1e-5)


def test_random_affine_keeps_flow_consistent_with_the_motion_it_describes():
    # channel 2: a square at p; channel 3: the same square at p + d; (u, v) = d everywhere.
    # After any transform the flow must still carry the first square onto the second.
    d = (5.0, -3.0)
    a = _square_and_flow(48, at=(-2, 3), flow=d)
    b = _square_and_flow(48, at=(3, 0))
    x = torch.cat([a, b[:, 2:]], dim=1).repeat(16, 1, 1, 1)
    out = random_affine(x, torch.Generator().manual_seed(0), 30.0, 0.2, 0.05, flow_channels=(0, 1))
    moved = []
    for i in range(16):
        shift = _centroid(out[i, 3]) - _centroid(out[i, 2])
        assert out[i, :2, 24, 24].tolist() == pytest.approx(shift.tolist(), abs=0.05)
        moved.append(not torch.allclose(out[i, :2, 24, 24], torch.tensor(d)))
    assert all(moved)
    # the transforms differ per sample and the flow length follows the zoom
    lengths = out[:, :2, 24, 24].norm(dim=1) / torch.tensor(d).norm()
    assert 0.8 - 1e-4 <= lengths.min() < lengths.max() <= 1.2 + 1e-4
    assert lengths.std() > 0.02


def test_affine_scales_magnitude_but_not_other_channels():
    x = torch.ones(2, 4, 16, 16)  # u, v, magnitude, strain
    out = affine(
        x,
        torch.zeros(2),
        torch.tensor([0.5, 1.5]),
        torch.zeros(2, 2),
        flow_channels=(0, 1),
        magnitude_channels=(2,),
    )
    assert torch.allclose(out[:, 2, 8, 8], torch.tensor([0.5, 1.5]))
    assert torch.allclose(out[:, 0, 8, 8], torch.tensor([0.5, 1.5]))
    assert torch.allclose(out[:, 3], torch.ones(2, 16, 16))


def test_affine_translates_and_identity_is_identity():
    x = _square_and_flow()
    same = affine(x, torch.zeros(1), torch.ones(1), torch.zeros(1, 2), flow_channels=(0, 1))
    assert torch.allclose(same, x, atol=1e-5)
    out = affine(x, torch.zeros(1), torch.ones(1), torch.tensor([[3.0, -2.0]]))
    assert _centroid(out[0, 2]).tolist() == pytest.approx([11.0, -2.0], abs=1e-4)


def test_random_affine_applies_one_transform_to_all_frames():
    g = torch.Generator().manual_seed(3)
    frames = torch.randn(4, 2, 1, 12, 12, generator=g)
    seq = torch.cat([frames, 2 * frames, -frames], dim=2)  # (B, C, 3, H, W)
    out = random_affine(seq, torch.Generator().manual_seed(5), 20.0, 0.1, 0.1, (0, 1))
    assert out.shape == seq.shape
    assert torch.allclose(out[:, :, 1], 2 * out[:, :, 0], atol=1e-5)
    assert torch.allclose(out[:, :, 2], -out[:, :, 0], atol=1e-5)
    # the same draws on the 4-D first frame give the same result
    flat = random_affine(frames[:, :, 0], torch.Generator().manual_seed(5), 20.0, 0.1, 0.1, (0, 1))
    assert torch.allclose(out[:, :, 0], flat, atol=1e-6)


def test_random_affine_is_reproducible_and_leaves_input_alone():
    x = torch.randn(8, 3, 16, 16)
    before = x.clone()
    a = random_affine(x, torch.Generator().manual_seed(1), 10.0, 0.1, 0.1, (0, 1))
    b = random_affine(x, torch.Generator().manual_seed(1), 10.0, 0.1, 0.1, (0, 1))
    c = random_affine(x, torch.Generator().manual_seed(2), 10.0, 0.1, 0.1, (0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(x, before)
    off = random_affine(x, torch.Generator().manual_seed(1), 0.0, 0.0, 0.0, (0, 1))
    assert torch.allclose(off, x, atol=1e-5)
    with pytest.raises(ValueError):
        random_affine(x, torch.Generator(), 10.0, 1.0, 0.0)


def test_temporal_jitter_shifts_windows_and_repeats_edges():
    t = torch.arange(6.0).reshape(1, 1, 6, 1, 1)
    x = t.repeat(64, 2, 1, 3, 3)  # frame k holds the value k
    before = x.clone()
    out = temporal_jitter(x, torch.Generator().manual_seed(0), max_shift=2)
    assert torch.equal(x, before) and out.shape == x.shape
    shifts = set()
    for i in range(64):
        values = out[i, 0, :, 0, 0]
        assert torch.equal(out[i], values.reshape(1, 6, 1, 1).expand(2, 6, 3, 3))
        k = int(values[2] - 2)  # the middle frames are never clamped for |k| <= 2
        assert values.tolist() == [min(max(f + k, 0), 5) for f in range(6)]
        shifts.add(k)
    assert shifts == {-2, -1, 0, 1, 2}
    again = temporal_jitter(x, torch.Generator().manual_seed(0), max_shift=2)
    assert torch.equal(out, again)


def test_temporal_jitter_ignores_still_input_and_zero_shift():
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    x = torch.randn(4, 3, 8, 8)
    assert temporal_jitter(x, g, 3) is x
    seq = torch.randn(2, 3, 4, 8, 8)
    assert temporal_jitter(seq, g, 0) is seq
    assert torch.equal(g.get_state(), state)  # nothing drawn


# --- wiring into training --------------------------------------------------------------


def test_flow_channels_from_the_spec():
    assert _flow_channels(get_spec("ststnet")) == ((0, 1), ())
    assert _flow_channels(get_spec("cnn_lstm_fusion")) == ((0, 1), (2,))
    assert _flow_channels(get_spec("apex_neighbour_fusion")) == ((1, 2), (3,))
    assert _flow_channels(get_spec("mobilevitv3_xs_two_stream")) == ((1, 2), ())
    assert _flow_channels(get_spec("resnet18")) == (None, ())
    unnamed = ModelSpec(name="t", input_kind="flow", channels=2, size=8)
    assert _flow_channels(unnamed) == ((0, 1), ())
    lonely = ModelSpec(name="t", input_kind="flow", channels=2, size=8, channel_names=("u", "s"))
    with pytest.raises(MekitError, match="no vertical"):
        _flow_channels(lonely)


def test_train_config_validates_augmentation():
    for bad in (
        {"augment_rotation_deg": -1.0},
        {"augment_rotation_deg": 200.0},
        {"augment_scale": 1.0},
        {"augment_translate": 0.6},
        {"augment_temporal_jitter": -1},
        {"augment_temporal_jitter": 1.5},
        {"augment_erase": -0.1},
        {"augment_erase": 1.5},
        {"augment_mixup": -0.2},
    ):
        with pytest.raises(MekitError, match=next(iter(bad))):
            TrainConfig(**bad)
    cfg = from_mapping(TrainConfig, {"augment_rotation_deg": 10, "augment_temporal_jitter": 2})
    assert cfg.augment_affine and cfg.augment_temporal_jitter == 2
    assert not TrainConfig().augment_affine


def test_fit_with_augmentation_is_reproducible_and_changes_training(toy_flow):
    X, y, _, _ = toy_flow(2, 8, amplitude=0.5)
    base = {"epochs": 2, "batch_size": 8, "lr": 1e-2}
    plain = fit("ststnet", 2, X, y, TrainConfig(**base))
    # temporal jitter does nothing to (B, C, H, W) input and draws nothing
    jitter = fit("ststnet", 2, X, y, TrainConfig(**base, augment_temporal_jitter=2))
    assert jitter.history == plain.history
    aug = {"augment_rotation_deg": 15.0, "augment_scale": 0.1, "augment_translate": 0.05}
    a = fit("ststnet", 2, X, y, TrainConfig(**base, **aug))
    b = fit("ststnet", 2, X, y, TrainConfig(**base, **aug))
    assert a.history == b.history != plain.history


def test_random_erase_zeroes_one_rectangle_per_chosen_sample():
    x = torch.arange(1.0, 1.0 + 64 * 2 * 20 * 30).reshape(64, 2, 20, 30)  # no zero anywhere
    out = random_erase(x, torch.Generator().manual_seed(0), 0.5)
    assert torch.equal(x, torch.arange(1.0, 1.0 + 64 * 2 * 20 * 30).reshape(64, 2, 20, 30))
    erased = 0
    for i, sample in enumerate(out):
        zero = sample[0] == 0
        assert torch.equal(zero, sample[1] == 0)  # every channel alike
        if not zero.any():
            continue
        erased += 1
        rows, cols = torch.nonzero(zero, as_tuple=True)
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert int(zero.sum()) == h * w  # one solid rectangle
        assert ERASE_AREA[0] * 600 - 20 <= h * w <= ERASE_AREA[1] * 600 + 20  # rounding
        kept = ~zero.expand_as(sample)
        assert torch.equal(sample[kept], x[i][kept])  # the rest untouched
    assert 20 <= erased <= 44  # about half of 64
    # p = 0 and p = 1; the same draws for any p; temporal input: the same rectangle each frame
    assert torch.equal(random_erase(x, torch.Generator().manual_seed(0), 0.0), x)
    every = random_erase(x, torch.Generator().manual_seed(0), 1.0)
    assert all(bool((s == 0).any()) for s in every)
    assert torch.equal(every[(out == 0).flatten(1).any(1)], out[(out == 0).flatten(1).any(1)])
    clip = torch.ones(3, 2, 5, 10, 10)
    erased_clip = random_erase(clip, torch.Generator().manual_seed(1), 1.0)
    assert torch.equal(erased_clip[:, :, :1].expand_as(erased_clip), erased_clip)
    with pytest.raises(ValueError, match="p"):
        random_erase(x, torch.Generator(), 1.5)


@pytest.mark.parametrize("setting", [{"augment_erase": 0.5}, {"augment_mixup": 0.2}])
def test_fit_with_erasing_or_mixup_is_reproducible_and_changes_training(toy_flow, setting):
    X, y, _, _ = toy_flow(2, 8, amplitude=0.5)
    base = {"epochs": 2, "batch_size": 8, "lr": 1e-2}
    plain = fit("ststnet", 2, X, y, TrainConfig(**base))
    a = fit("ststnet", 2, X, y, TrainConfig(**base, **setting))
    b = fit("ststnet", 2, X, y, TrainConfig(**base, **setting))
    assert a.history == b.history != plain.history


def test_mixup_mixes_each_sample_with_a_partner_by_one_weight():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 2, 5, 5)
    y = torch.arange(16) % 3
    x_before, y_before = x.clone(), y.clone()
    mixed, y_other, lam = mixup(x, y, g, 0.4)
    assert torch.equal(x, x_before) and torch.equal(y, y_before)  # inputs untouched
    assert 0.0 <= lam <= 1.0
    # replay the generator's draws (the seed of lam, then the pairing): y_other is y paired,
    # and each mixed sample is lam * its own + (1 - lam) * its partner
    again = torch.Generator().manual_seed(3)
    torch.randint(0, 2**31 - 1, (1,), generator=again)  # the seed of lam
    pair = torch.randperm(16, generator=again)
    assert torch.equal(y_other, y[pair])
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[pair])
    # the same generator state gives the same mix; another state another lam
    m2, y2, lam2 = mixup(x, y, torch.Generator().manual_seed(3), 0.4)
    assert torch.equal(m2, mixed) and torch.equal(y2, y_other) and lam2 == lam
    lams = {mixup(x, y, torch.Generator().manual_seed(s), 0.4)[2] for s in range(20)}
    assert len(lams) == 20
    # small alpha: lam near 0 or 1 (Beta(0.1, 0.1) is U-shaped); large alpha: near 0.5
    small = [mixup(x, y, torch.Generator().manual_seed(s), 0.1)[2] for s in range(200)]
    large = [mixup(x, y, torch.Generator().manual_seed(s), 50.0)[2] for s in range(200)]
    assert np.mean([min(v, 1 - v) < 0.1 for v in small]) > 0.6
    assert all(0.3 < v < 0.7 for v in large)
    with pytest.raises(ValueError, match="alpha"):
        mixup(x, y, g, 0.0)


def test_mixup_loss_weighs_the_two_labels_by_lam():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y, y_other = torch.tensor([0, 1]), torch.tensor([1, 1])
    ce = torch.nn.functional.cross_entropy
    expected = 0.3 * ce(logits, y) + 0.7 * ce(logits, y_other)
    assert torch.allclose(mixup_loss(ce, logits, y, y_other, 0.3), expected)
    assert torch.equal(mixup_loss(ce, logits, y, y_other, 1.0), ce(logits, y))


def test_fit_with_temporal_jitter_on_sequences():
    g = np.random.default_rng(0)
    X = g.normal(size=(4, 3, 10, 48, 48)).astype(np.float32)  # dtscnn: (3, 10, 48, 48)
    y = np.array([0, 1, 0, 1])
    cfg = {"epochs": 1, "batch_size": 4}
    plain = fit("dtscnn", 2, X, y, TrainConfig(**cfg))
    jit = fit("dtscnn", 2, X, y, TrainConfig(**cfg, augment_temporal_jitter=2))
    again = fit("dtscnn", 2, X, y, TrainConfig(**cfg, augment_temporal_jitter=2))
    assert jit.history == again.history != plain.history


def test_every_augmentation_transforms_the_batch_on_its_own_device():
    # the meta device checks device placement as a GPU does (a CPU tensor beside a meta one
    # raises), so this is what fold-batched training on a GPU runs: CPU draws, device batch
    def each(x: torch.Tensor, seed: int = 0) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        clip = x.unsqueeze(2).expand(-1, -1, 4, -1, -1)
        return [
            random_hflip(x, 0, g),
            random_affine(x, g, 10.0, 0.1, 0.05, (0, 1), (2,)),
            random_erase(x, g, 1.0),
            temporal_jitter(clip, g, 1),
            mixup(x, torch.zeros(4, dtype=torch.long), g, 0.2)[0],
        ]

    on_meta = each(torch.zeros(4, 3, 8, 8, device="meta"))
    on_cpu = each(torch.randn(4, 3, 8, 8))
    assert [t.device.type for t in on_meta] == ["meta"] * 5
    assert [t.shape for t in on_meta] == [t.shape for t in on_cpu]
