import json

import pandas as pd
import pytest

from mekit import __version__
from mekit.cli.main import main


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("demo", "synth", "train", "models", "analyze"):
        assert command in out


def test_user_errors_exit_2_without_traceback(tmp_path, capsys):
    assert main(["train", "--corpus", str(tmp_path / "missing"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "mekit: error:" in err and "does not exist" in err and "Traceback" not in err
    assert main(["train", "--corpus", str(tmp_path), "--set", "train.epoch=3"]) == 2
    assert "unknown setting 'train.epoch'" in capsys.readouterr().err


def test_models_lists_ststnet(capsys):
    assert main(["models"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("ststnet"))
    assert "3x28x28" in line


@pytest.mark.slow
def test_synth_then_train_writes_every_report_file(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    args = ["--subjects", "3", "--clips-per-subject", "3", "--no-long-videos", "--quiet"]
    assert main(["synth", str(corpus), *args]) == 0
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--corpus",
            str(corpus),
            "--dataset",
            "synthetic",
            "--out",
            str(run),
            "--set",
            "train.epochs=3",
            "--workers",
            "1",
            "--no-cache",
            "--quiet",
        ]
    )
    assert code == 0
    for name in (
        "summary.md",
        "metrics.json",
        "predictions.csv",
        "confusion.png",
        "learning_curves.png",
        "config.json",
        "skipped.csv",
    ):
        assert (run / name).is_file(), name
    preds = pd.read_csv(run / "predictions.csv")
    assert len(preds) == 9 and preds["id"].str.startswith("synthetic/sub").all()
    assert set(preds["subject"]) == {"sub01", "sub02", "sub03"}
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == 3 and config["protocol"] == "loso"
    out = capsys.readouterr().out
    assert "UF1" in out and "summary.md" in out
    # the model for `mekit analyze`: trained on all 9 samples, with the LOSO estimate
    model = json.loads((run / "model.json").read_text())
    assert (run / "model.safetensors").is_file()
    assert model["training"]["samples"] == 9 and model["training"]["demo"] is False
    metrics = json.loads((run / "metrics.json").read_text())
    assert model["metrics"]["uf1"] == metrics["overall"]["uf1"]
    assert f"mekit analyze VIDEO --model {run / 'model.json'}" in out


@pytest.mark.slow
def test_prepare_twice_second_run_all_from_cache(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    args = ["--subjects", "2", "--clips-per-subject", "2", "--no-long-videos", "--quiet"]
    assert main(["synth", str(corpus), *args]) == 0
    prepare = [
        "prepare",
        "--corpus",
        str(corpus),
        "--features",
        "onset_apex,lbptop",
        "--cache",
        str(tmp_path / "cache"),
        "--workers",
        "1",
        "--quiet",
        "--set",
        "features.method=farneback",
    ]
    assert main(prepare) == 0
    capsys.readouterr()
    assert main(prepare) == 0
    rows = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines()}
    assert rows["onset_apex"][1:5] == ["3x28x28", "4", "4", "0"]  # shape, done, cached, failed
    assert rows["lbptop"][2:5] == ["4", "4", "0"]
    assert main(["prepare", "--corpus", str(corpus), "--features", "hog"]) == 2
    assert "choose from onset_apex" in capsys.readouterr().err


@pytest.mark.slow
def test_train_lbptop_svm_baseline(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    args = ["--subjects", "3", "--clips-per-subject", "4", "--no-long-videos", "--quiet"]
    assert main(["synth", str(corpus), *args]) == 0
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--corpus",
                str(corpus),
                "--model",
                "lbptop_svm",
                "--out",
                str(run),
                "--workers",
                "1",
                "--no-cache",
                "--quiet",
            ]
        )
        == 0
    )
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "lbptop_svm" and config["features"]["kind"] == "lbptop"
    assert len(pd.read_csv(run / "predictions.csv")) == 12


def test_demo_recovers_from_an_interrupted_synthesis(tmp_path, monkeypatch):
    from mekit.pipeline import demo

    def interrupted(out, config, progress=True):
        (out / "sub01").mkdir(parents=True)  # a half-written corpus, no synth.json
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "generate_corpus", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(tmp_path, subjects=2, clips_per_subject=2, workers=1, progress=False)
    assert not (tmp_path / "corpus").exists()  # nothing that a rerun would mistake for done
    calls = []

    def complete(out, config, progress=True):
        calls.append(out)
        (out / "synth.json").parent.mkdir(parents=True)
        raise RuntimeError("stop after synthesis")  # the rest of the demo is tested elsewhere

    monkeypatch.setattr(demo, "generate_corpus", complete)
    with pytest.raises(RuntimeError):
        demo.run_demo(tmp_path, subjects=2, clips_per_subject=2, workers=1, progress=False)
    assert calls == [tmp_path / "corpus.partial"]  # the leftover was cleared and rewritten
