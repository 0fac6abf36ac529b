"""`mekit train-aus`: the AU model's training as a command."""

from __future__ import annotations

import pytest

from mekit.cli.main import main
from mekit.train.au_model import RETRAIN_COMMAND, AUDetector, shipped_model_path
from mekit.train.checkpoint import model_paths, read_sidecar


def test_train_aus_writes_a_model_the_detector_loads(tmp_path, capsys):
    out = tmp_path / "au"
    assert main(["train-aus", "--out", str(out), "--n-train", "64", "--epochs", "1"]) == 0
    assert str(model_paths(out)[0]) in capsys.readouterr().out
    meta = read_sidecar(out)
    assert meta["config"]["train"]["n_train"] == 64 and meta["config"]["train"]["epochs"] == 1
    # the packaged model's command with the options that differ from it
    assert meta["training"]["retrain"] == f"{RETRAIN_COMMAND} --seed 0 --n-train 64 --epochs 1"
    detector = AUDetector.load(out)
    assert detector.threshold == meta["input"]["threshold"]


def test_train_aus_is_listed_and_refuses_a_bad_setting(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "train-aus" in capsys.readouterr().out
    assert main(["train-aus", "--out", str(tmp_path / "x"), "--epochs", "0"]) == 2
    assert "epochs" in capsys.readouterr().err


def test_train_aus_renders_half_the_samples_as_packaged_unless_told(tmp_path, capsys):
    out = tmp_path / "au"
    args = ["--n-train", "8", "--n-val", "8", "--epochs", "1"]
    assert main(["train-aus", "--out", str(out), *args, "--workers", "2"]) == 0
    meta = read_sidecar(out)
    assert meta["config"]["data"]["rendered"] == 0.5  # the packaged model's share
    assert meta["training"]["retrain"].endswith("--n-train 8 --n-val 8 --epochs 1")
    assert AUDetector.load(out).threshold == meta["input"]["threshold"]
    packaged = read_sidecar(shipped_model_path())
    assert packaged["config"]["data"]["rendered"] == 0.5
    written = tmp_path / "written"
    assert main(["train-aus", "--out", str(written), *args, "--rendered", "0"]) == 0
    meta = read_sidecar(written)
    assert meta["config"]["data"]["rendered"] == 0.0
    assert meta["training"]["retrain"].endswith("--n-train 8 --n-val 8 --epochs 1 --rendered 0")
    assert main(["train-aus", "--out", str(tmp_path / "x"), "--rendered", "2"]) == 2
    assert "rendered" in capsys.readouterr().err
