"""`mekit train --engine ensemble`: the batched fold ensemble behind the command line."""

from __future__ import annotations

import csv
import json
from enum import Enum

import numpy as np
import pandas as pd
import pytest
import torch

from mekit.cli.main import main
from mekit.errors import MekitError

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


def _other_value(value):
    if isinstance(value, Enum):  # a choice: another of its members
        return next(member for member in type(value) if member != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.25
    if isinstance(value, str):
        return "x"
    return (0.5, 0.5)


def test_the_ensemble_refuses_every_setting_outside_its_whitelist():
    # --init was once silently ignored: the LOSO figure and the exported model then came from
    # different recipes. Any TrainConfig field not known to the ensemble must be refused.
    from dataclasses import fields

    from mekit.train.ensemble import SUPPORTED_SETTINGS, unsupported_settings
    from mekit.train.loop import TrainConfig

    default = TrainConfig()
    assert unsupported_settings(default) == []
    outside = [f.name for f in fields(TrainConfig) if f.name not in SUPPORTED_SETTINGS]
    assert "augment_scale" in outside and "init_from" not in outside
    for name in outside:
        changed = TrainConfig(**{name: _other_value(getattr(default, name))})
        assert any(s.startswith(f"train.{name}=") for s in unsupported_settings(changed)), name
    assert unsupported_settings(TrainConfig(selection="val-split")) == [
        "train.selection='val-split'"
    ]


def test_init_is_loaded_by_the_kernel_and_changes_what_it_learns(tmp_path, capsys):
    # --init was once silently ignored by the fused kernel; it now loads the file into every
    # fold's model as fit() does (parity: tests/train/test_ensemble.py), and it matters.
    corpus = write_flow_corpus(tmp_path / "corpus", subjects=3, per_subject=3)
    assert train(corpus, tmp_path / "first", "plain") == 0  # a model file to start from
    init = tmp_path / "first" / "model.json"
    assert init.is_file()
    capsys.readouterr()
    base = ["train", "--corpus", str(corpus), "--labels", "raw", "--quiet", "--no-cache"]
    base += ["--no-export", "--set", "train.epochs=2"]
    probs = {}
    for name, extra in (("init", ["--init", str(init)]), ("fresh", [])):
        assert main([*base, *extra, "--out", str(tmp_path / name), "--engine", "ensemble"]) == 0
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["engine_used"] == "kernel"
        assert config["train"]["init_from"] == (str(init) if extra else "")
        probs[name] = pd.read_csv(tmp_path / name / "predictions.csv").filter(like="prob_")
    assert not np.allclose(probs["init"].to_numpy(), probs["fresh"].to_numpy(), atol=1e-3)


def test_auto_trains_one_model_per_fold_on_the_cpu_where_the_kernel_does_not_apply():
    from mekit.pipeline.config import ExperimentConfig
    from mekit.pipeline.cross_validation import fold_engine

    def engine(model: str, choice: str) -> str:
        values = {"model": model, "engine": choice, "train": {"device": "cpu"}}
        return fold_engine(ExperimentConfig.from_dict(values))

    # fold-batching is slower than one model per fold on the CPU, so auto trains the latter...
    assert engine("mobilevitv3_xxs", "auto") == "plain"
    assert engine("off_apexnet", "auto") == "plain"
    # ...unless all folds at once are asked for; STSTNet keeps its fused kernel
    assert engine("mobilevitv3_xxs", "ensemble") == "batched"
    assert engine("off_apexnet", "ensemble") == "batched"
    assert engine("ststnet", "auto") == "kernel"


def test_auto_batches_folds_on_a_gpu(monkeypatch):
    from mekit.pipeline import cross_validation
    from mekit.pipeline.config import ExperimentConfig

    monkeypatch.setattr(cross_validation, "resolve_device", lambda name: torch.device("cuda"))
    config = ExperimentConfig.from_dict({"model": "off_apexnet", "engine": "auto"})
    assert cross_validation.fold_engine(config) == "batched"
    # a layout asked for explicitly is one fold-batching does not keep: one model per fold
    nhwc = {"model": "mobilevitv3_xxs", "train": {"memory_format": "channels_last"}}
    assert cross_validation.fold_engine(ExperimentConfig.from_dict(nhwc)) == "plain"
    with pytest.raises(MekitError, match="memory_format='channels_last'"):
        cross_validation.fold_engine(ExperimentConfig.from_dict({**nhwc, "engine": "ensemble"}))


def test_only_the_runs_own_question_explains_the_engine_choice(caplog):
    # fold_engine is asked for every member and the export too: the reason is logged once.
    import logging

    from mekit.pipeline.config import ExperimentConfig
    from mekit.pipeline.cross_validation import fold_engine

    config = ExperimentConfig.from_dict(
        {"model": "mobilevitv3_xxs", "engine": "auto", "train": {"device": "cpu"}}
    )
    with caplog.at_level(logging.INFO, logger="mekit.pipeline.cross_validation"):
        assert fold_engine(config) == fold_engine(config) == "plain"
        assert not [r for r in caplog.records if r.levelno >= logging.INFO]
        assert fold_engine(config, explain=True) == "plain"
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(said) == 1 and "engine auto: the plain loop" in said[0]
