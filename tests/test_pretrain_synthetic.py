"""Synthetic AU pretraining (`mekit pretrain --synthetic`, a recipe's [pretrain]) and the
multi-label trainer under it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mekit.cli.main import main
from mekit.errors import MekitError
from mekit.models import create_model
from mekit.pipeline import ExperimentConfig, run_experiment
from mekit.pipeline.config import SyntheticPretrainConfig
from mekit.pipeline.pretrain import run_synthetic_pretrain, synthetic_au_inputs
from mekit.synth.au_flows import AUS
from mekit.train.augment import hflip
from mekit.train.checkpoint import load_model
from mekit.train.multilabel import (
    U_CHANNEL,
    MultiLabelConfig,
    fit_multilabel,
    mirrored_batches,
    sigmoid_probabilities,
)
from mekit.train.warm_start import transfer_weights
from test_engine_ensemble import write_flow_corpus

TINY = SyntheticPretrainConfig(samples=64, epochs=1, batch_size=32)


def _separable(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flows whose label 0 is "the strain map is bright", label 1 "v points down"."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=(n, 2)).astype(np.float32)
    x = rng.normal(0, 0.1, size=(n, 3, 28, 28)).astype(np.float32)
    x[:, 2] += y[:, :1, None] * 1.0
    x[:, 1] += y[:, 1:, None] * 1.0
    return x, y


def test_fit_multilabel_learns_independent_labels_and_repeats_bit_for_bit():
    x, y = _separable(160, 0)
    config = MultiLabelConfig(epochs=8, batch_size=32, lr=1e-2)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(fit_multilabel(create_model("ststnet", 2), x, y, config))
    xt, yt = _separable(128, 1)
    pred = sigmoid_probabilities(models[0], xt) >= 0.5
    assert (pred == (yt > 0)).mean() > 0.95  # each label on its own, both at once
    first, second = (m.state_dict() for m in models)
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_the_mirror_of_a_flow_flips_the_image_and_the_sign_of_u_only():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    m = hflip(x, U_CHANNEL)
    assert torch.equal(m[:, 0], -torch.flip(x[:, 0], dims=(-1,)))
    assert torch.equal(m[:, 1:], torch.flip(x[:, 1:], dims=(-1,)))
    assert torch.equal(hflip(m, U_CHANNEL), x)


def test_synthetic_inputs_take_the_models_size_and_the_runs_normalisation():
    x, y = synthetic_au_inputs(6, 64, "median", seed=3)
    assert x.shape == (6, 3, 64, 64) and x.dtype == np.float32 and y.shape == (6, len(AUS))
    assert np.allclose(np.median(x.reshape(6, 3, -1), axis=2), 0, atol=5e-3)  # torch: lower median
    again, _ = synthetic_au_inputs(6, 64, "median", seed=3)
    assert np.array_equal(x, again)  # seeded per sample


def test_a_u_v_model_gets_the_u_and_v_of_the_same_synthetic_flows():
    full, y = synthetic_au_inputs(4, 28, "median", seed=2)
    uv, y_uv = synthetic_au_inputs(4, 28, "median", seed=2, channels=("u", "v"))
    assert uv.shape == (4, 2, 28, 28) and np.array_equal(y, y_uv)
    assert np.array_equal(uv, full[:, :2])  # each channel is normalised on its own


def test_off_apexnet_pretrains_on_u_and_v_and_warm_starts_all_but_its_output_layer(tmp_path):
    outcome = run_synthetic_pretrain("off_apexnet", tmp_path / "pre", TINY, "median")
    assert load_model(outcome.model_path).meta["input"]["normalisation"] == "median"
    report = transfer_weights(create_model("off_apexnet", 3), outcome.model_path)
    assert set(report.fresh) == {"classifier.5.weight", "classifier.5.bias"}


def test_pretrained_model_file_names_the_aus_and_warm_starts_all_but_the_head(tmp_path):
    outcome = run_synthetic_pretrain("ststnet", tmp_path / "pre", TINY, "standardize")
    loaded = load_model(outcome.model_path)
    assert loaded.labels == tuple(f"AU{a}" for a in AUS) == outcome.labels
    assert loaded.meta["input"]["normalisation"] == "standardize"
    assert "no real data" in loaded.meta["training"]["trained_on"]
    assert 0.0 <= outcome.held_out_score <= 1.0 and outcome.n_train == 64
    assert outcome.score == "AU macro F1"
    report = transfer_weights(create_model("ststnet", 3), outcome.model_path)
    assert set(report.fresh) == {"classifier.weight", "classifier.bias"}


def test_synthetic_pretraining_refuses_other_inputs_and_norms(tmp_path):
    with pytest.raises(MekitError, match="u/v/strain flows"):
        run_synthetic_pretrain("resnet18", tmp_path / "x", TINY)
    with pytest.raises(MekitError, match="input_norm must be one of"):
        run_synthetic_pretrain("ststnet", tmp_path / "x", TINY, "zscore")
    with pytest.raises(MekitError, match="samples"):
        SyntheticPretrainConfig(samples=0)


def test_mekit_pretrain_synthetic_writes_a_model_file(tmp_path, capsys):
    out = tmp_path / "pre"
    argv = ["pretrain", "--synthetic", "--model", "ststnet", "--out", str(out)]
    assert main([*argv, "--set", "pretrain.samples=40", "--set", "pretrain.epochs=1"]) == 0
    printed = capsys.readouterr().out
    assert "40 synthetic AU flows" in printed and "--init" in printed
    assert load_model(out.with_suffix(".json")).name == "ststnet"
    assert main([*argv, "--set", "train.epochs=1"]) != 0
    assert "takes only pretrain.* settings" in capsys.readouterr().err


def test_a_run_with_synthetic_pretraining_starts_every_network_from_it(tmp_path):
    corpus = write_flow_corpus(tmp_path / "corpus", subjects=3, per_subject=4)
    values = {
        "labels": "raw",
        "engine": "plain",
        "train": {"epochs": 2},
        "pretrain": {"synthetic": True, "samples": 48, "epochs": 1},
    }
    run = tmp_path / "run"
    run_experiment(corpus, run, ExperimentConfig.from_dict(values), progress=False)
    weights = run / "pretrained.safetensors"
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["init_from"] == str(weights)
    assert config["pretrain"]["synthetic"] is True
    made = weights.stat().st_mtime_ns
    run_experiment(corpus, run, ExperimentConfig.from_dict(values), progress=False)
    assert weights.stat().st_mtime_ns == made  # a resumed run reuses it


def test_synthetic_pretraining_and_an_explicit_init_exclude_each_other():
    with pytest.raises(MekitError, match="pretrain.synthetic"):
        ExperimentConfig.from_dict(
            {"train": {"init_from": "x.safetensors"}, "pretrain": {"synthetic": True}}
        )


def test_mirrored_batches_are_made_on_the_samples_device_from_cpu_draws():
    x, y = (torch.from_numpy(a) for a in _separable(10, 0))
    epochs = [list(mirrored_batches(x, y, torch.Generator().manual_seed(4), 4)) for _ in range(2)]
    assert [len(xb) for xb, _ in epochs[0]] == [4, 4, 2]
    for (xa, ya), (xb, yb) in zip(*epochs, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)  # the same draws, the same batches
    seen = torch.cat([xb for xb, _ in epochs[0]])
    mirrored = torch.stack([hflip(s[None], U_CHANNEL)[0] for s in x])
    # every flow once, as it is or mirrored
    assert all(any(torch.equal(s, t) for t in torch.cat([x, mirrored])) for s in seen)
    assert sorted(seen[:, 2].sum(dim=(1, 2)).tolist()) == pytest.approx(
        sorted(x[:, 2].sum(dim=(1, 2)).tolist())
    )
    # on another device (meta checks placement as a GPU does) the draws stay on the CPU
    on_meta = list(mirrored_batches(x.to("meta"), y.to("meta"), torch.Generator(), 4))
    assert {t.device.type for batch in on_meta for t in batch} == {"meta"}


def test_fit_multilabel_trains_under_bf16_autocast_and_returns_fp32_weights():
    x, y = _separable(160, 0)
    config = MultiLabelConfig(epochs=8, batch_size=32, lr=1e-2)
    models = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        models[precision] = fit_multilabel(
            create_model("ststnet", 2), x, y, config, "cpu", precision
        )
    xt, yt = _separable(128, 1)
    assert ((sigmoid_probabilities(models["bf16"], xt) >= 0.5) == (yt > 0)).mean() > 0.95
    weights = {k: dict(m.named_parameters()) for k, m in models.items()}
    assert {p.dtype for p in weights["bf16"].values()} == {torch.float32}
    assert {p.device.type for p in weights["bf16"].values()} == {"cpu"}
    first = "streams.0.0.0.weight"
    assert not torch.equal(weights["bf16"][first], weights["fp32"][first])  # autocast ran


def test_mekit_pretrain_synthetic_takes_device_and_precision(tmp_path, capsys):
    out = tmp_path / "pre"
    argv = ["pretrain", "--synthetic", "--model", "ststnet", "--out", str(out)]
    small = ["--set", "pretrain.samples=40", "--set", "pretrain.epochs=1"]
    assert main([*argv, *small, "--device", "cpu", "--precision", "bf16"]) == 0
    training = load_model(out.with_suffix(".json")).meta["training"]
    assert (training["device"], training["precision"]) == ("cpu", "bf16")
    assert main([*argv, *small, "--device", "tpu"]) != 0
    assert "train.device 'tpu' is not one of" in capsys.readouterr().err
    assert main([*argv, *small, "--device", "cpu", "--precision", "fp16"]) != 0
    assert "fp16 needs a GPU" in capsys.readouterr().err  # before any flow is made


def test_a_run_pretrains_on_its_train_device_and_precision(tmp_path):
    corpus = write_flow_corpus(tmp_path / "corpus", subjects=3, per_subject=4)
    values = {
        "labels": "raw",
        "engine": "plain",
        "train": {"epochs": 1, "device": "cpu", "precision": "bf16"},
        "pretrain": {"synthetic": True, "samples": 32, "epochs": 1},
    }
    run = tmp_path / "run"
    run_experiment(corpus, run, ExperimentConfig.from_dict(values), progress=False)
    training = load_model(run / "pretrained.json").meta["training"]
    assert (training["device"], training["precision"]) == ("cpu", "bf16")


def test_mekit_pretrain_images_takes_device_and_precision_as_train_settings(tmp_path, capsys):
    argv = ["pretrain", "--images", str(tmp_path), "--out", str(tmp_path / "pre")]
    assert main([*argv, "--device", "tpu"]) != 0  # checked as train.device, before any data
    assert "train.device 'tpu' is not one of" in capsys.readouterr().err
    assert main([*argv, "--device", "cpu", "--precision", "fp16"]) != 0
    assert "fp16 needs a GPU" in capsys.readouterr().err


class Stopped(Exception):
    """Stands for the Ctrl-C or kill that stops a run."""


def test_an_interrupted_synthetic_pretraining_continues_from_its_last_epoch(tmp_path, monkeypatch):
    from mekit.train import group_state, multilabel

    # STSTNet's dropout, the mirrors and the one-cycle schedule all carry across the stop
    config = SyntheticPretrainConfig(samples=64, epochs=3, batch_size=32)
    reference = run_synthetic_pretrain("ststnet", tmp_path / "reference", config).model_path

    monkeypatch.setattr(group_state, "SAVE_EVERY_S", 0.0)  # at every epoch's end
    monkeypatch.setattr(group_state, "SAVE_COST_SHARE", 0)
    real, epochs = multilabel.mirrored_batches, []

    def counted(*args, **kwargs):
        epochs.append(1)
        if len(epochs) == stop_at:
            raise Stopped
        return real(*args, **kwargs)

    monkeypatch.setattr(multilabel, "mirrored_batches", counted)
    stop_at = 3
    with pytest.raises(Stopped):
        run_synthetic_pretrain("ststnet", tmp_path / "pre", config)
    progress = tmp_path / "pre.progress.pt"
    assert torch.load(progress, weights_only=True)["state"]["step"] == 2  # epochs done

    epochs.clear()
    stop_at = 0
    outcome = run_synthetic_pretrain("ststnet", tmp_path / "pre", config)
    assert len(epochs) == 1  # only the third epoch was trained again
    assert outcome.model_path.read_bytes() == reference.read_bytes()
    assert not progress.exists()
