"""Recipes (`mekit recipes`, `mekit train --recipe`) and probability-averaging model files."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from mekit.app.recognise import load_recogniser
from mekit.cli.main import main
from mekit.errors import MekitError
from mekit.models import create_model
from mekit.models.averaging import normalise_per_sample
from mekit.pipeline import ExperimentConfig
from mekit.train.averaging import (
    AverageConfig,
    average_results,
    expected_calibration_error,
    fit_temperature,
    member_seed,
    tempered,
)
from mekit.train.checkpoint import load_model
from mekit.train.loop import TrainConfig, predict_proba
from mekit.train.loso import LosoResult
from mekit.train.recipes import list_recipes, load_recipe, parse_recipe, recipe_names
from test_engine_ensemble import write_flow_corpus


def test_every_shipped_recipe_builds_a_valid_experiment_config():
    names = recipe_names()
    assert {
        "composite-best",
        "composite-uv",
        "ststnet-default",
        "ststnet-paper",
        "ststnet-synthetic",
    } <= set(names)
    for recipe in list_recipes():
        assert recipe.description and "\n" not in recipe.description
        config = ExperimentConfig.from_dict(recipe.settings)  # raises if a key is unknown
        assert config.protocol == "loso"  # recipes never fix the protocol


def test_the_mobilevit_recipe_trains_and_pretrains_contiguous():
    """Pinned where `auto` would pick channels-last: the layout its documented runs used."""
    config = ExperimentConfig.from_dict(load_recipe("mobilevit-synthetic").settings)
    assert config.train.memory_format == config.pretrain.memory_format == "contiguous"


def test_mekit_recipes_lists_one_line_each(capsys):
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in recipe_names():
        (line,) = [x for x in lines if x.startswith(name + " ")]
        assert load_recipe(name).description in line


def test_malformed_recipes_are_refused_with_the_fix():
    with pytest.raises(MekitError, match="description"):
        parse_recipe("x", 'model = "ststnet"')
    with pytest.raises(MekitError, match="--protocol"):
        parse_recipe("x", 'description = "d"\nprotocol = "loso"')
    with pytest.raises(MekitError, match="not valid TOML"):
        parse_recipe("x", "description = ")
    with pytest.raises(MekitError, match="composite-best"):
        load_recipe("no-such-recipe")


def test_a_recipe_file_of_ones_own_loads_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('description = "mine"\n[train]\nepochs = 7\n')
    recipe = load_recipe(str(path))
    assert recipe.name == "mine" and recipe.settings == {"train": {"epochs": 7}}


def test_average_config_is_validated():
    assert not AverageConfig().active and AverageConfig(members=2).active
    assert AverageConfig(input_norm="minmax").active
    with pytest.raises(MekitError, match="input_norm"):
        AverageConfig(input_norm="zscore")
    with pytest.raises(MekitError, match="members"):
        AverageConfig(members=0)
    assert member_seed(3, 0) == 3 and member_seed(3, 2) == 2003


@pytest.mark.parametrize("mode", ["standardize", "median", "minmax"])
def test_per_sample_normalisation_ignores_each_samples_scale_and_offset(mode):
    x = torch.randn(4, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    scaled = x * torch.tensor([0.5, 2.0, 10.0, 3.0])[:, None, None, None] + 7.0
    a, b = normalise_per_sample(x, mode), normalise_per_sample(scaled, mode)
    assert torch.allclose(a, b, atol=1e-4)
    if mode == "minmax":
        assert (a.amin(dim=(2, 3)) + 1).abs().max() < 1e-5 and (
            a.amax(dim=(2, 3)) - 1
        ).abs().max() < 1e-4
    else:
        centre = a.mean(dim=(2, 3)) if mode == "standardize" else a.flatten(2).median(2).values
        assert centre.abs().max() < 1e-5 and (a.std(dim=(2, 3)) - 1).abs().max() < 0.01
    assert torch.equal(normalise_per_sample(torch.zeros(1, 3, 4, 4), mode), torch.zeros(1, 3, 4, 4))
    # the mirror's u (negated) normalises to the negated normalised u: flips stay right
    flipped = x.clone()
    flipped[:, 0] = -flipped[:, 0]
    expected = -a[:, 0]
    if mode == "median":  # the lower median of -u is minus the upper median of u
        u = x[:, 0].flatten(1).sort(dim=1).values
        middle = u.shape[1] // 2
        gap = (u[:, middle] - u[:, middle - 1]) / x[:, 0].std(dim=(1, 2), unbiased=False)
        expected = expected + gap[:, None, None]
    assert torch.allclose(normalise_per_sample(flipped, mode)[:, 0], expected, atol=1e-4)


def test_the_averaging_model_outputs_its_members_mean_probability():
    model = create_model("ststnet_average", 3, members=3, input_norm="standardize").eval()
    x = torch.randn(5, 3, 28, 28)
    xn = normalise_per_sample(x, "standardize")
    with torch.no_grad():
        want = torch.stack([torch.softmax(m(xn), 1) for m in model.members]).mean(0)
        got = torch.softmax(model(x), 1)
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, torch.softmax(model.members[0](xn), 1), atol=1e-3)


def _result(probs, ids, labels=("a", "b")):
    frame = pd.DataFrame({"id": ids, "subject": ids, "fold": 0, "true": "a", "pred": "a"})
    for k, label in enumerate(labels):
        frame[f"prob_{label}"] = probs[:, k]
    return LosoResult(frame, {}, {}, labels, "ststnet", TrainConfig(), False)


def test_average_results_joins_members_by_id_not_by_position():
    one = _result(np.array([[0.9, 0.1], [0.2, 0.8]]), ["x", "y"])
    two = _result(np.array([[0.0, 1.0], [0.1, 0.9]]), ["y", "x"])  # other order
    mean = average_results([one, two]).predictions.set_index("id")
    assert mean.loc["x", "prob_a"] == pytest.approx(0.5) and mean.loc["x", "pred"] == "a"
    assert mean.loc["y", "prob_b"] == pytest.approx(0.9) and mean.loc["y", "pred"] == "b"
    with pytest.raises(MekitError, match="different samples"):
        average_results([one, _result(np.array([[1.0, 0.0]]), ["x"])])


def _train(corpus, out, *extra):
    argv = ["train", "--corpus", str(corpus), "--labels", "raw", "--out", str(out), "--quiet"]
    argv += ["--no-cache", "--set", "train.epochs=20", "--set", "train.lr=0.01", *extra]
    return main(argv)


@pytest.mark.parametrize("engine", ["ensemble", "plain"])
def test_a_recipe_run_writes_one_averaging_model_file_that_loads_and_evaluates(
    tmp_path, capsys, engine
):
    corpus = write_flow_corpus(tmp_path / "corpus", subjects=3, per_subject=6)
    recipe = tmp_path / "two.toml"
    recipe.write_text(
        'description = "two members"\nmodel = "ststnet"\nengine = "auto"\n'
        "[train]\nepochs = 500\nbatch_size = 8\n[average]\nmembers = 2\n"
        'input_norm = "standardize"\ncalibrate = true\n'
    )
    argv = ["--recipe", str(recipe), "--set", "abstain_below=0.55", "--engine", engine]
    assert _train(corpus, tmp_path / "run", *argv) == 0  # the command line's epochs 20 win
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == 20 and config["train"]["batch_size"] == 8
    assert config["average"] == {"members": 2, "input_norm": "standardize", "calibrate": True}
    assert config["engine_used"] == {"ensemble": "kernel", "plain": "plain"}[engine]
    assert list((run / "member-1" / "folds").glob("fold_*.npz"))  # every engine resumes
    predictions = pd.read_csv(run / "predictions.csv")
    probs = predictions[[c for c in predictions.columns if c.startswith("prob_")]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5) and len(predictions) == 18
    loaded = load_model(run / "model.json")
    assert loaded.name == "ststnet_average" and len(loaded.model.members) == 2
    assert loaded.meta["training"]["member_seeds"] == [0, 1000]
    calibrated = loaded.meta["metrics"]["calibration"]
    assert loaded.meta["model_kwargs"] == {
        "members": 2,
        "input_norm": "standardize",
        "temperature": calibrated["temperature"],
    }
    assert calibrated["nll_after"] <= calibrated["nll_before"] + 1e-9
    assert load_recogniser(run / "model.json").abstain_below == 0.55
    x = np.random.default_rng(0).normal(size=(4, 3, 28, 28)).astype(np.float32)
    assert np.allclose(predict_proba(loaded.model, x).sum(1), 1, atol=1e-5)
    capsys.readouterr()
    argv = ["evaluate", "--model", str(run / "model.json"), "--corpus", str(corpus)]
    assert main([*argv, "--labels", "raw", "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["overall"]["uf1"] > 0.6  # learnable classes, its own training data


def test_averaging_needs_a_registered_averaging_model(tmp_path):
    corpus = write_flow_corpus(tmp_path / "corpus", subjects=2, per_subject=3)
    with pytest.raises(MekitError, match="mobilevitv3_xs_average"):
        from mekit.pipeline import run_experiment

        run_experiment(
            corpus,
            tmp_path / "run",
            ExperimentConfig.from_dict(
                {"model": "mobilevitv3_xs", "labels": "raw", "average": {"members": 2}}
            ),
        )


def test_a_minmax_model_sees_mekits_own_flow_as_it_saw_min_max_flow_images(tmp_path):
    """Trained on flow images min-max scaled per image by whoever made them, a model with
    input_norm "minmax" gets the same input from mekit's own flow (px) at analysis time."""
    import cv2

    from mekit.motion.extract import read_flow

    rng = np.random.default_rng(1)
    flow = rng.normal(0, 1.5, (3, 28, 28)).astype(np.float32)  # u, v in px, strain
    flow[2] = np.abs(flow[2]) * 0.05
    low, high = flow.min(axis=(1, 2), keepdims=True), flow.max(axis=(1, 2), keepdims=True)
    image = np.round((flow - low) / (high - low) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "flow.png"), image[::-1].transpose(1, 2, 0))  # RGB -> BGR
    from_image = read_flow(tmp_path / "flow.png", 28, 28, "s/c")
    x = torch.from_numpy(np.stack([flow, from_image]))
    for norm, same in (("minmax", True), ("none", False)):
        model = create_model("ststnet_average", 3, members=2, input_norm=norm).eval()
        with torch.no_grad():
            p = torch.softmax(model(x), 1)
        assert torch.allclose(p[0], p[1], atol=1e-3) is same


def test_temperature_scaling_undoes_known_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (4000, 3))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in true])
    overconfident = tempered(true, 0.5)  # logits doubled
    t = fit_temperature(overconfident, y)
    assert 1.8 < t < 2.2
    fixed = tempered(overconfident, t)
    assert expected_calibration_error(fixed, y) < expected_calibration_error(overconfident, y) / 2
    assert (fixed.argmax(1) == overconfident.argmax(1)).all()  # the winner never changes


def test_a_tempered_averaging_model_outputs_the_tempered_mean():
    model = create_model("ststnet_average", 3, members=2, temperature=2.0).eval()
    plain = create_model("ststnet_average", 3, members=2).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(3, 3, 28, 28)
    with torch.no_grad():
        want = tempered(torch.softmax(plain(x), 1).double().numpy(), 2.0)
        got = torch.softmax(model(x), 1).double().numpy()
    assert np.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("composite-best", "off_apexnet_strain_average"),
        ("composite-uv", "off_apexnet_average"),
        ("ststnet-synthetic", "ststnet_average"),
    ],
)
def test_the_shipped_pretrained_recipes_train_with_overrides(tmp_path, name, model):
    corpus = write_flow_corpus(tmp_path / "corpus", subjects=3, per_subject=6)
    argv = [
        "--recipe",
        name,
        "--set",
        "average.members=2",
        "--set",
        "train.epochs=3",
    ]
    argv += ["--set", "pretrain.samples=40", "--set", "pretrain.epochs=1"]
    assert _train(corpus, tmp_path / "run", *argv) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    recipe = load_recipe(name).settings
    assert config["average"] == {**recipe["average"], "members": 2}
    assert recipe["pretrain"]["synthetic"] is True
    assert config["pretrain"] | {"samples": 40, "epochs": 1} == config["pretrain"]
    assert config["pretrain"]["synthetic"] is True
    pretrained = tmp_path / "run" / "pretrained.safetensors"
    assert config["train"]["init_from"] == str(pretrained) and pretrained.is_file()
    assert load_model(pretrained).meta["input"]["normalisation"] == "median"
    assert config["train"]["epochs"] == 3 and config["abstain_below"] == recipe["abstain_below"]
    loaded = load_model(tmp_path / "run" / "model.json")
    assert loaded.name == model and len(loaded.model.members) == 2
    assert "temperature" in loaded.meta["model_kwargs"]  # calibrated


def test_every_member_gets_the_runs_own_folds(tmp_path, monkeypatch):
    from mekit.pipeline import cross_validation, run_experiment

    seen = []
    real = cross_validation.protocol_folds

    def spy(protocol, subjects, datasets, y, k, seed):
        seen.append(seed)
        return real(protocol, subjects, datasets, y, k, seed)

    monkeypatch.setattr(cross_validation, "protocol_folds", spy)
    corpus = write_flow_corpus(tmp_path / "corpus", subjects=4, per_subject=3)
    config = ExperimentConfig.from_dict(
        {
            "labels": "raw",
            "protocol": "kfold",
            "k": 2,
            "engine": "ensemble",
            "train": {"epochs": 2, "seed": 7},
            "average": {"members": 3},
        }
    )
    run_experiment(corpus, tmp_path / "run", config, progress=False)
    assert seen == [7, 7, 7]  # kfold draws its split from the seed: one split for all members


@pytest.mark.parametrize("ensemble", [False, True])
def test_exported_members_are_the_chosen_engines_fits_with_their_member_seeds(tmp_path, ensemble):
    from mekit.train.averaging import normalise_inputs, train_average_and_save
    from mekit.train.ensemble import fit_fold_ensemble
    from mekit.train.loop import fit
    from mekit.train.splits import Fold

    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3, 28, 28)).astype(np.float32)
    y = np.arange(12) % 3
    train = TrainConfig(epochs=2, batch_size=4, seed=5)
    average = AverageConfig(members=2, input_norm="standardize")
    train_average_and_save(
        tmp_path / "m", X, y, ["a", "b", "c"], "ststnet", train, average,
        input={}, config={}, ensemble=ensemble,
    )  # fmt: skip
    members = load_model(tmp_path / "m").model.members
    Xn = normalise_inputs(X, "standardize")
    everything, none = np.arange(12), np.zeros(0, dtype=np.int64)
    if ensemble:
        folds = [Fold(1000 * m, f"m{m}", everything, none) for m in range(2)]
        want = fit_fold_ensemble(Xn, y, folds, 3, train).models
    else:
        want = [fit("ststnet", 3, Xn, y, replace(train, seed=5 + 1000 * m)).model for m in range(2)]
    for member, reference in zip(members, want, strict=True):
        for key, value in reference.state_dict().items():
            assert torch.allclose(member.state_dict()[key], value), key
