from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mekit.train import TrainConfig, fit
from mekit.train.optim import make_adam


def _params(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(64, 48, generator=g), torch.randn(48, generator=g)]


def test_fused_adam_is_the_foreach_update_up_to_rounding():
    fused, foreach = _params(), _params()
    opt_fused = make_adam([p.requires_grad_() for p in fused], lr=1e-2, weight_decay=1e-3)
    opt_foreach = make_adam(
        [p.requires_grad_() for p in foreach], lr=1e-2, weight_decay=1e-3, fused=False
    )
    assert opt_fused.defaults["fused"] and not opt_foreach.defaults["fused"]
    start = [p.detach().clone() for p in fused]
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        grads = [torch.randn(p.shape, generator=g) for p in fused]
        for p, q, grad in zip(fused, foreach, grads, strict=True):
            p.grad, q.grad = grad.clone(), grad.clone()
        opt_fused.step()
        opt_foreach.step()
    for p, q, p0 in zip(fused, foreach, start, strict=True):
        assert (p - p0).abs().max() > 0.05  # 20 steps of lr 1e-2 moved it
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)


def test_a_build_without_a_fused_kernel_gets_the_foreach_update(monkeypatch):
    real = torch.optim.Adam

    def no_fused(params, **kwargs):
        if kwargs.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be on cuda")
        return real(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", no_fused)
    opt = make_adam(_params(), lr=1e-3)
    assert isinstance(opt, real) and not opt.defaults["fused"]


@pytest.mark.parametrize("model", ["ststnet", "off_apexnet"])
def test_fit_trains_the_same_network_with_either_update(toy_flow, model):
    # same draws (batches, flips, dropout), so the two differ only by the update's rounding
    X, y, _, _ = toy_flow(2, 12, amplitude=0.5)
    if model == "off_apexnet":
        X = X[:, :2]
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-3)
    fused = fit(model, 2, X, y, config).model.state_dict()
    plain = fit(model, 2, X, y, replace(config, fused_adam=False)).model.state_dict()
    other_seed = fit(model, 2, X, y, replace(config, seed=1)).model.state_dict()
    assert fused.keys() == plain.keys()
    # a tolerance that tells trainings apart: another seed lands further away than it
    assert any(not torch.allclose(fused[k], other_seed[k], atol=1e-3) for k in fused)
    for name, tensor in fused.items():
        np.testing.assert_allclose(tensor.numpy(), plain[name].numpy(), atol=1e-4, err_msg=name)
