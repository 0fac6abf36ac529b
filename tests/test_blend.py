"""Blends: recipes of different networks trained in one run, probabilities averaged with
weights, one model file (`mekit.pipeline.blend`, `mekit.models.blend`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mekit.cli.main import main
from mekit.errors import MekitError
from mekit.models import create_model
from mekit.models.blend import check_part, resize_flow
from mekit.pipeline import ExperimentConfig
from mekit.pipeline.blend import blend_predictions, part_configs
from mekit.train.checkpoint import load_model
from mekit.train.loop import predict_proba
from test_engine_ensemble import write_flow_corpus

PARTS = [
    {"model": "ststnet_average", "options": {"members": 2, "input_norm": "median"}},
    {"model": "mobilevitv3_xxs_average", "options": {"input_norm": "median"}},
]


def _probs(model, x):
    with torch.no_grad():
        return torch.softmax(model(x), 1).double()


def test_a_blend_outputs_the_weighted_mean_of_its_parts_each_at_its_own_size():
    torch.manual_seed(0)
    blend = create_model("flow_blend", 3, parts=PARTS, weights=[3, 1]).eval()
    x = torch.randn(5, 3, 64, 64)
    small = torch.nn.functional.adaptive_avg_pool2d(x, 28)  # area resampling 64 -> 28
    want = 0.75 * _probs(blend.parts[0], small) + 0.25 * _probs(blend.parts[1], x)
    assert torch.allclose(_probs(blend, x), want, atol=1e-5)
    hot = create_model("flow_blend", 3, parts=PARTS, weights=[3, 1], temperature=2.0).eval()
    hot.load_state_dict(blend.state_dict())
    logits = torch.log(want) / 2.0
    assert torch.allclose(_probs(hot, x), torch.softmax(logits, 1), atol=1e-5)
    zero = create_model("flow_blend", 3, parts=PARTS, weights=[1, 0]).eval()
    zero.load_state_dict(blend.state_dict())
    assert torch.allclose(_probs(zero, x), _probs(blend.parts[0], small), atol=1e-5)


def test_resize_flow_keeps_its_own_size_and_averages_areas():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert resize_flow(x, 4) is x
    assert torch.equal(resize_flow(x, 2)[0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))


def test_a_blend_holds_only_flow_networks_up_to_its_size():
    assert check_part("ststnet") == (28, (0, 1, 2))
    assert check_part("mobilevitv3_xxs_average") == (64, (0, 1, 2))
    assert check_part("off_apexnet") == check_part("off_apexnet_average") == (28, (0, 1))  # u, v
    with pytest.raises(MekitError, match="u/v/strain flow image"):
        check_part("resnet18_dual_attention")
    with pytest.raises(MekitError, match="weights"):
        create_model("flow_blend", 3, parts=PARTS, weights=[1])


def _frame(ids, probs, truth):
    frame = pd.DataFrame({"id": ids, "subject": ids, "fold": 0, "true": truth, "pred": "a"})
    frame["prob_a"], frame["prob_b"] = probs[:, 0], probs[:, 1]
    return frame


def test_blended_predictions_are_joined_by_id_and_weighted(tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    _frame(["x", "y"], np.array([[0.9, 0.1], [0.2, 0.8]]), ["a", "b"]).to_csv(one, index=False)
    _frame(["y", "x"], np.array([[1.0, 0.0], [0.1, 0.9]]), ["b", "a"]).to_csv(two, index=False)
    out = blend_predictions([one, two], [0.75, 0.25]).predictions.set_index("id")
    # x: .75 * .9 + .25 * .1 = .7 for a; y: .75 * .2 + .25 * 1.0 = .4 for a
    assert out.loc["x", "prob_a"] == pytest.approx(0.7) and out.loc["x", "pred"] == "a"
    assert out.loc["y", "prob_a"] == pytest.approx(0.4) and out.loc["y", "pred"] == "b"
    _frame(["x", "z"], np.array([[0.5, 0.5]] * 2), ["a", "b"]).to_csv(two, index=False)
    with pytest.raises(MekitError, match="other samples"):
        blend_predictions([one, two], [0.5, 0.5])
    _frame(["x", "y"], np.array([[0.5, 0.5]] * 2), ["b", "b"]).to_csv(two, index=False)
    with pytest.raises(MekitError, match="true labels"):
        blend_predictions([one, two], [0.5, 0.5])


def _recipe(path, text):
    path.write_text(text)
    return str(path)


def test_parts_take_the_runs_data_and_protocol_and_nothing_else(tmp_path):
    a = _recipe(tmp_path / "a.toml", 'description = "a"\nmodel = "ststnet"\n[train]\nepochs = 9\n')
    b = _recipe(tmp_path / "b.toml", 'description = "b"\nmodel = "off_apexnet"\n')
    config = ExperimentConfig.from_dict(
        {"blend": {"parts": [a, b]}, "protocol": "kfold", "k": 3, "labels": "raw",
         "train": {"seed": 4}}
    )  # fmt: skip
    (_, first), (_, second) = part_configs(config)
    assert first.train.epochs == 9 and second.model == "off_apexnet"
    assert first.protocol == second.protocol == "kfold" and first.k == 3
    assert first.labels == "raw" and first.train.seed == second.train.seed == 4
    assert first.input_from == second.input_from == 64  # resampled as the blend's file does
    stray = ExperimentConfig.from_dict({"blend": {"parts": [a, b]}, "train": {"epochs": 3}})
    with pytest.raises(MekitError, match="train.epochs would not reach them"):
        part_configs(stray)
    oracle = _recipe(tmp_path / "o.toml", 'description = "o"\n[train]\nselection = "test-oracle"\n')
    with pytest.raises(MekitError, match="honest parts"):
        part_configs(ExperimentConfig.from_dict({"blend": {"parts": [a, oracle]}}))
    apex = _recipe(tmp_path / "r.toml", 'description = "r"\nmodel = "resnet18"\n')
    with pytest.raises(MekitError, match="flow image"):
        part_configs(ExperimentConfig.from_dict({"blend": {"parts": [a, apex]}}))
    with pytest.raises(MekitError, match="one weight per part"):
        ExperimentConfig.from_dict({"blend": {"parts": [a, b], "weights": [1.0]}})


def test_a_blend_run_reports_its_parts_and_writes_one_model_file(tmp_path, capsys):
    corpus = write_flow_corpus(tmp_path / "corpus", subjects=3, per_subject=6)
    st = _recipe(
        tmp_path / "st.toml",
        'description = "st"\nmodel = "ststnet"\n[train]\nepochs = 20\nbatch_size = 8\n'
        'lr = 0.01\n[average]\nmembers = 2\ninput_norm = "median"\n',
    )
    mv = _recipe(
        tmp_path / "mv.toml",
        'description = "mv"\nmodel = "mobilevitv3_xxs"\n[train]\nepochs = 2\nbatch_size = 8\n'
        '[average]\ninput_norm = "median"\n',
    )
    blend = _recipe(
        tmp_path / "blend.toml",
        f'description = "both"\nabstain_below = 0.4\n[blend]\nparts = ["{st}", "{mv}"]\n'
        "weights = [3.0, 1.0]\ncalibrate = true\n",
    )
    run = tmp_path / "run"
    argv = ["train", "--corpus", str(corpus), "--labels", "raw", "--out", str(run), "--quiet"]
    assert main([*argv, "--no-cache", "--recipe", blend]) == 0
    parts = [run / "part-1-st", run / "part-2-mv"]
    frames = [pd.read_csv(p / "predictions.csv").set_index("id") for p in parts]
    mine = pd.read_csv(run / "predictions.csv").set_index("id")
    cols = ["prob_negative", "prob_positive", "prob_surprise"]
    want = 0.75 * frames[0][cols] + 0.25 * frames[1].loc[frames[0].index, cols]
    assert np.allclose(mine.loc[want.index, cols], want, atol=1e-6) and len(mine) == 18
    part_config = json.loads((parts[0] / "config.json").read_text())
    assert part_config["input_from"] == 64 and part_config["features"]["size"] == 64
    metrics = json.loads((run / "metrics.json").read_text())
    assert [p["recipe"] for p in metrics["extra"]["parts"]] == [st, mv]
    assert metrics["title"].startswith("blend of st (0.75) + mv (0.25)")
    assert (
        "each part's own (st the last epoch of 20, mv the last epoch of 2)" in metrics["protocol"]
    )
    loaded = load_model(run / "model.json")
    assert loaded.name == "flow_blend" and loaded.input["size"] == 64
    assert loaded.meta["config"]["abstain_below"] == 0.4
    temperature = loaded.meta["metrics"]["calibration"]["temperature"]
    assert loaded.meta["model_kwargs"]["temperature"] == temperature
    # the blend's parts are the parts' own model files, without their temperatures
    x = torch.randn(4, 3, 64, 64)
    own = [load_model(p / "model.json").model for p in parts]
    mix = 0.75 * _probs(own[0], resize_flow(x, 28)) + 0.25 * _probs(own[1], x)
    got = predict_proba(loaded.model, x.numpy())
    assert np.allclose(got, torch.softmax(torch.log(mix) / temperature, 1).numpy(), atol=1e-5)
    argv = ["evaluate", "--model", str(run / "model.json"), "--corpus", str(corpus)]
    assert main([*argv, "--labels", "raw", "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    evaluated = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert evaluated["overall"]["uf1"] > 0.6  # learnable classes, its own training data
    capsys.readouterr()
    argv = ["train", "--corpus", str(corpus), "--labels", "raw", "--quiet", "--recipe", blend]
    assert main([*argv, "--out", str(tmp_path / "r2"), "--seeds", "0,1"]) != 0
    assert "a blend runs one seed" in capsys.readouterr().err


def test_input_from_only_resamples_a_flow_image_down(tmp_path):
    from mekit.pipeline import run_experiment

    corpus = write_flow_corpus(tmp_path / "corpus", subjects=2, per_subject=3)
    for model, side in (("mobilevitv3_xxs", 32), ("resnet18", 128)):
        config = ExperimentConfig.from_dict({"model": model, "labels": "raw", "input_from": side})
        with pytest.raises(MekitError, match="resamples one flow image down"):
            run_experiment(corpus, tmp_path / model, config, progress=False)
