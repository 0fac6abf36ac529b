"""`mekit train --engine ensemble`: the batched fold ensemble behind the command line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd

from mekit.cli.main import main

LABELS = ("negative", "positive", "surprise")


def write_flow_corpus(root, subjects=4, per_subject=6, seed=0):
    """A generic-format corpus of precomputed (3, 28, 28) flows whose class sets u's sign and
    region: learnable, so both engines must beat chance."""
    rng = np.random.default_rng(seed)
    (root / "flows").mkdir(parents=True)
    rows = []
    for s in range(subjects):
        for c in range(per_subject):
            label = c % 3
            flow = rng.normal(0, 0.3, (3, 28, 28)).astype(np.float32)
            rows_slice = slice(2, 12) if label == 2 else slice(14, 26)
            flow[0, rows_slice] += 2.0 if label == 0 else -2.0
            name = f"flows/s{s}_c{c}.npy"
            np.save(root / name, flow)
            rows.append({"subject": f"s{s}", "clip": f"c{c}", "label": LABELS[label], "flow": name})
    with open(root / "samples.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["subject", "clip", "label", "flow"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def train(corpus, out, engine):
    return main(
        ["train", "--corpus", str(corpus), "--labels", "raw", "--out", str(out), "--quiet"]
        + ["--engine", engine, "--no-cache", "--set", "train.epochs=30"]
        + ["--set", "train.batch_size=8", "--set", "train.lr=0.01"]
    )


def test_ensemble_engine_writes_the_same_report_as_the_plain_one(tmp_path, capsys):
    corpus = write_flow_corpus(tmp_path / "corpus")
    assert train(corpus, tmp_path / "ens", "ensemble") == 0
    assert train(corpus, tmp_path / "plain", "plain") == 0
    a = pd.read_csv(tmp_path / "ens" / "predictions.csv")
    b = pd.read_csv(tmp_path / "plain" / "predictions.csv")
    assert list(a.columns) == list(b.columns)
    assert a["id"].tolist() == b["id"].tolist() and len(a) == 24
    # every sample predicted by the fold that held its subject out
    assert (a["subject"] == a["id"].str.split("/").str[1]).all()
    assert set(a["fold"]) == set(b["fold"]) and a.groupby("fold")["subject"].nunique().eq(1).all()
    for run in ("ens", "plain"):
        metrics = json.loads((tmp_path / run / "metrics.json").read_text())
        assert metrics["overall"]["accuracy"] > 0.6, (run, metrics["overall"])
    config = json.loads((tmp_path / "ens" / "config.json").read_text())
    assert config["engine"] == "ensemble"


def test_ensemble_engine_refuses_what_it_cannot_train(tmp_path, capsys):
    corpus = write_flow_corpus(tmp_path / "corpus")
    code = main(
        ["train", "--corpus", str(corpus), "--labels", "raw", "--out", str(tmp_path / "r")]
        + ["--engine", "ensemble", "--selection", "val-split", "--quiet", "--no-cache"]
    )
    assert code == 2
    assert "ensemble engine" in capsys.readouterr().err
