"""A model trained on all samples of a run, written as a model file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mekit.train import TrainConfig, export
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


def test_an_interrupted_model_training_continues_from_its_progress(tmp_path, toy_flow, epochs):
    X, y, _, _ = toy_flow(3, 8)
    labels = ["negative", "positive"]
    config = TrainConfig(epochs=3, seed=1, augment_mixup=0.2)  # dropout and mixup draws
    kwargs = {"input": {}, "config": {}}
    reference, _ = train_and_save(tmp_path / "reference", X, y, labels, "ststnet", config, **kwargs)

    epochs.stop_at(3)
    with pytest.raises(epochs.Interrupted):
        train_and_save(tmp_path / "model", X, y, labels, "ststnet", config, **kwargs)
    progress = tmp_path / "model.progress.pt"
    assert torch.load(progress, weights_only=True)["state"]["step"] == 2  # epochs done
    assert not (tmp_path / "model.safetensors").exists()

    epochs.reset()
    weights, _ = train_and_save(tmp_path / "model", X, y, labels, "ststnet", config, **kwargs)
    assert epochs.trained == 1  # only the third epoch was trained again
    assert weights.read_bytes() == reference.read_bytes()
    assert not progress.exists()


def test_another_schedule_does_not_continue_a_models_progress(tmp_path, toy_flow, epochs):
    X, y, _, _ = toy_flow(3, 8)
    labels = ["negative", "positive"]
    kwargs = {"input": {}, "config": {}}
    epochs.stop_at(2)
    with pytest.raises(epochs.Interrupted):
        train_and_save(tmp_path / "m", X, y, labels, "ststnet", TrainConfig(epochs=3), **kwargs)
    assert (tmp_path / "m.progress.pt").exists()
    other = TrainConfig(epochs=3, lr=1e-2)
    epochs.reset()
    weights, _ = train_and_save(tmp_path / "m", X, y, labels, "ststnet", other, **kwargs)
    assert epochs.trained == 3  # from its start
    fresh, _ = train_and_save(tmp_path / "fresh", X, y, labels, "ststnet", other, **kwargs)
    assert weights.read_bytes() == fresh.read_bytes()


def test_a_model_stopped_before_its_file_is_written_keeps_its_progress(
    tmp_path, toy_flow, epochs, monkeypatch
):
    X, y, _, _ = toy_flow(3, 8)
    args = (X, y, ["a", "b"], "ststnet", TrainConfig(epochs=3))
    kwargs = {"input": {}, "config": {}}

    def stopped(*args, **kwargs):
        raise epochs.Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(export, "save_model", stopped)
        with pytest.raises(epochs.Interrupted):
            train_and_save(tmp_path / "m", *args, **kwargs)
    progress = tmp_path / "m.progress.pt"
    assert torch.load(progress, weights_only=True)["state"]["step"] == 2  # the last save
    epochs.reset()
    train_and_save(tmp_path / "m", *args, **kwargs)
    assert epochs.trained == 1
    assert not progress.exists()
