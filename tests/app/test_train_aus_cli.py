"""`mekit train-aus`: the AU model's training as a command."""

from __future__ import annotations

import pytest

from mekit.cli.main import main
from mekit.train.au_model import AUDetector
from mekit.train.checkpoint import model_paths, read_sidecar


def test_train_aus_writes_a_model_the_detector_loads(tmp_path, capsys):
    out = tmp_path / "au"
    assert main(["train-aus", "--out", str(out), "--n-train", "64", "--epochs", "1"]) == 0
    assert str(model_paths(out)[0]) in capsys.readouterr().out
    meta = read_sidecar(out)
    assert meta["config"]["train"]["n_train"] == 64 and meta["config"]["train"]["epochs"] == 1
    assert meta["training"]["retrain"].endswith("--seed 0")  # unset options keep the defaults
    detector = AUDetector.load(out)
    assert detector.threshold == meta["input"]["threshold"]


def test_train_aus_is_listed_and_refuses_a_bad_setting(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "train-aus" in capsys.readouterr().out
    assert main(["train-aus", "--out", str(tmp_path / "x"), "--epochs", "0"]) == 2
    assert "epochs" in capsys.readouterr().err
