"""A model trained on all samples of a run, written as a model file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mekit.train import TrainConfig, group_state, loop
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


class Interrupted(Exception):
    """Stands for the Ctrl-C or kill that stops a run."""


def test_an_interrupted_model_training_continues_from_its_progress(tmp_path, toy_flow, monkeypatch):
    X, y, _, _ = toy_flow(3, 8)
    labels = ["negative", "positive"]
    config = TrainConfig(epochs=3, seed=1, augment_mixup=0.2)  # dropout and mixup draws
    kwargs = {"input": {}, "config": {}}
    reference, _ = train_and_save(tmp_path / "reference", X, y, labels, "ststnet", config, **kwargs)

    monkeypatch.setattr(group_state, "SAVE_EVERY_S", 0.0)  # a save at every epoch's end
    monkeypatch.setattr(group_state, "SAVE_COST_SHARE", 0)
    real_epoch = loop._train_epoch
    epochs = []

    def interrupted_at_the_third(*args, **kw):
        epochs.append(1)
        if len(epochs) == 3:
            raise Interrupted
        return real_epoch(*args, **kw)

    monkeypatch.setattr(loop, "_train_epoch", interrupted_at_the_third)
    with pytest.raises(Interrupted):
        train_and_save(tmp_path / "model", X, y, labels, "ststnet", config, **kwargs)
    progress = tmp_path / "model.progress.pt"
    assert torch.load(progress, weights_only=True)["state"]["step"] == 2  # epochs done
    assert not (tmp_path / "model.safetensors").exists()

    epochs.clear()
    monkeypatch.setattr(
        loop, "_train_epoch", lambda *a, **kw: epochs.append(1) or real_epoch(*a, **kw)
    )
    weights, _ = train_and_save(tmp_path / "model", X, y, labels, "ststnet", config, **kwargs)
    assert len(epochs) == 1  # only the third epoch was trained again
    assert weights.read_bytes() == reference.read_bytes()
    assert not progress.exists()


def test_another_schedule_does_not_continue_a_models_progress(tmp_path, toy_flow, monkeypatch):
    X, y, _, _ = toy_flow(3, 8)
    labels = ["negative", "positive"]
    kwargs = {"input": {}, "config": {}}
    monkeypatch.setattr(group_state, "SAVE_EVERY_S", 0.0)
    real_epoch = loop._train_epoch

    def stop_at_the_second(*args, **kw):
        stop_at_the_second.calls += 1
        if stop_at_the_second.calls == 2:
            raise Interrupted
        return real_epoch(*args, **kw)

    stop_at_the_second.calls = 0
    monkeypatch.setattr(loop, "_train_epoch", stop_at_the_second)
    with pytest.raises(Interrupted):
        train_and_save(tmp_path / "m", X, y, labels, "ststnet", TrainConfig(epochs=3), **kwargs)
    monkeypatch.setattr(loop, "_train_epoch", real_epoch)
    other = TrainConfig(epochs=3, lr=1e-2)
    weights, _ = train_and_save(tmp_path / "m", X, y, labels, "ststnet", other, **kwargs)
    fresh, _ = train_and_save(tmp_path / "fresh", X, y, labels, "ststnet", other, **kwargs)
    assert weights.read_bytes() == fresh.read_bytes()  # trained from its start
