from __future__ import annotations

import torch

from mekit.train.augment import hflip, random_hflip


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
