"""`mekit evaluate --model`: a trained model file scored on another corpus, no training."""

from __future__ import annotations

import csv
import json

import pandas as pd

from mekit.cli.main import main
from mekit.train.metrics import classification_metrics
from test_engine_ensemble import write_flow_corpus


def test_a_model_file_scored_on_another_corpus_writes_a_run_report(tmp_path, capsys):
    train = write_flow_corpus(tmp_path / "a", subjects=3, per_subject=6, seed=0)
    other = write_flow_corpus(tmp_path / "b", subjects=2, per_subject=6, seed=1)
    with open(other / "samples.csv", "a", newline="") as handle:  # a class the model lacks
        csv.writer(handle).writerow(["s9", "c0", "contempt", "flows/s0_c0.npy"])
    argv = ["train", "--corpus", str(train), "--labels", "raw", "--out", str(tmp_path / "run")]
    argv += ["--quiet", "--no-cache", "--set", "train.epochs=40", "--set", "train.lr=0.01"]
    assert main(argv) == 0
    model = tmp_path / "run" / "model.json"
    capsys.readouterr()
    argv = ["evaluate", "--model", str(model), "--corpus", str(other), "--labels", "raw"]
    assert main([*argv, "--out", str(tmp_path / "eval"), "--quiet", "--no-cache"]) == 0
    printed = capsys.readouterr()
    assert "evaluated on generic" in printed.out and "12 samples (1 skipped)" in printed.out
    assert "warning" not in json.loads((tmp_path / "eval" / "metrics.json").read_text())["extra"]
    out = tmp_path / "eval"
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 12 and set(predictions["fold"]) == {"model"}
    labels = ["negative", "positive", "surprise"]
    assert [c for c in predictions.columns if c.startswith("prob_")] == [
        f"prob_{c}" for c in labels
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    by_hand = classification_metrics(predictions["true"], predictions["pred"], labels)
    assert metrics["overall"]["uf1"] == by_hand.uf1 and by_hand.uf1 > 0.6  # learnable classes
    assert "model_own_estimate" in metrics["extra"]
    assert (out / "confusion.png").stat().st_size > 0
    skipped = pd.read_csv(out / "skipped.csv")
    assert "not one the model outputs" in skipped.loc[0, "reason"]
    # on its own training corpus it says so
    argv = ["evaluate", "--model", str(model), "--corpus", str(train), "--labels", "raw"]
    assert main([*argv, "--out", str(tmp_path / "self"), "--quiet", "--no-cache"]) == 0
    warning = json.loads((tmp_path / "self" / "metrics.json").read_text())["extra"]["warning"]
    assert "own training data" in warning


def test_evaluate_needs_a_run_or_a_model_and_corpus(tmp_path, capsys):
    assert main(["evaluate"]) == 2
    assert "mekit evaluate --model" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "m.json")]) == 2
    assert "give both" in capsys.readouterr().err
