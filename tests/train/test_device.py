"""`train.device` and `train.precision`: CPU results unchanged, unavailable devices named."""

from __future__ import annotations

import pytest
import torch

from mekit.errors import MekitError
from mekit.train.device import autocast_dtype, resolve_device
from mekit.train.loop import TrainConfig, fit


def test_cpu_is_fp32_and_explicit_cpu_equals_auto_on_a_cpu_machine(toy_flow):
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(MekitError, match="needs a GPU"):
        autocast_dtype("fp16", torch.device("cpu"))
    if torch.cuda.is_available():
        pytest.skip("auto is a GPU here")
    X, y, _, _ = toy_flow(2, 4)
    a = fit("ststnet", 2, X, y, TrainConfig(epochs=2, batch_size=4, device="auto")).model
    b = fit("ststnet", 2, X, y, TrainConfig(epochs=2, batch_size=4, device="cpu")).model
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert next(a.parameters()).device.type == "cpu"


def test_bf16_autocast_trains_on_the_cpu(toy_flow):
    X, y, _, _ = toy_flow(2, 4)
    result = fit("ststnet", 2, X, y, TrainConfig(epochs=2, batch_size=4, precision="bf16"))
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert next(result.model.parameters()).dtype == torch.float32  # weights stay fp32


def test_unknown_or_missing_devices_are_named():
    with pytest.raises(MekitError, match="not one of auto, cpu, cuda, mps"):
        TrainConfig(device="tpu")
    with pytest.raises(MekitError, match="precision"):
        TrainConfig(precision="int8")
    if not torch.cuda.is_available():
        with pytest.raises(MekitError, match="sees no CUDA GPU"):
            resolve_device("cuda")
