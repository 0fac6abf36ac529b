"""A model trained on all samples of a run, written as a model file."""

from __future__ import annotations

import json

import numpy as np
import torch

from mekit.train import TrainConfig
from mekit.train.checkpoint import load_model
from mekit.train.export import train_and_save
from mekit.train.loop import fit


def test_train_and_save_writes_the_model_fit_gives(tmp_path, toy_flow):
    X, y, _, _ = toy_flow(3, 8)
    config = TrainConfig(epochs=3, seed=1, selection="val-split")  # no held-out data: fixed
    weights, sidecar = train_and_save(
        tmp_path / "model",
        X,
        y,
        ["negative", "positive"],
        "ststnet",
        config,
        input={"features": {"method": "farneback"}},
        config={"model": "ststnet"},
        metrics={"uf1": 0.75},
        training={"trained_on": "toy flow", "demo": True},
    )
    assert (weights.name, sidecar.name) == ("model.safetensors", "model.json")
    meta = json.loads(sidecar.read_text())
    assert meta["training"]["samples"] == 24 and meta["training"]["epochs"] == 3
    assert meta["training"]["selection"].startswith("fixed")
    assert meta["training"]["demo"] is True and meta["training"]["trained_on"] == "toy flow"
    assert meta["metrics"] == {"uf1": 0.75} and meta["input"]["features"]["method"] == "farneback"
    loaded = load_model(sidecar)
    assert loaded.labels == ("negative", "positive")
    reference = fit("ststnet", 2, X, y, TrainConfig(epochs=3, seed=1)).model
    x = torch.from_numpy(X[:5])
    with torch.no_grad():
        np.testing.assert_allclose(loaded.model(x).numpy(), reference(x).numpy(), atol=1e-6)
