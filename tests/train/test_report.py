from __future__ import annotations

import json

import pandas as pd
import pytest

from mekit.errors import MekitError
from mekit.train import LosoResult, TrainConfig, classification_metrics, write_report
from mekit.train.report import ORACLE_WARNING

LABELS = ["negative", "positive", "surprise"]


def _result(selection: str = "fixed") -> LosoResult:
    true = ["negative", "negative", "positive", "surprise", "negative", "positive"]
    pred = ["negative", "positive", "positive", "negative", "negative", "positive"]
    subjects = ["s2", "s2", "s2", "s1", "s1", "s1"]
    frame = pd.DataFrame(
        {
            "id": ["c", "a", "f", "b", "e", "d"],  # deliberately not sorted
            "subject": subjects,
            "fold": [1, 1, 1, 0, 0, 0],
            "true": true,
            "pred": pred,
        }
    )
    for lab in LABELS:
        frame[f"prob_{lab}"] = [0.9 if p == lab else 0.05 for p in pred]
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e} for e in (1, 2, 3)]
    return LosoResult(
        predictions=frame,
        histories={"s1": history, "s2": history[:2]},
        best_epochs={"s1": 3, "s2": 2},
        labels=tuple(LABELS),
        model_name="ststnet",
        config=TrainConfig(selection=selection),
        oracle=selection == "test-oracle",
    )


def test_writes_every_file_and_metrics_match_predictions_csv(tmp_path):
    config = {"train": {"epochs": 200, "lr": 0.001}, "model": "ststnet"}
    paths = write_report(
        tmp_path / "run",
        title="STSTNet on a toy corpus",
        config=config,
        result=_result(),
        labels=LABELS,
        skipped=[("sub09/EP01", "apex frame missing on disk")],
        extra={"corpus": "toy", "calibration": {"temperature": 2.123456, "ece_after": 0.05}},
    )
    for p in (
        paths.config,
        paths.predictions,
        paths.metrics,
        paths.summary,
        paths.confusion,
        paths.learning_curves,
        paths.skipped,
    ):
        assert p.is_file() and p.stat().st_size > 0, p
    assert paths.confusion.read_bytes()[:4] == b"\x89PNG"

    assert json.loads(paths.config.read_text()) == config
    csv = pd.read_csv(paths.predictions, dtype={"id": str, "true": str, "pred": str})
    assert csv["id"].tolist() == sorted(csv["id"])
    expected = classification_metrics(csv["true"], csv["pred"], LABELS)
    metrics = json.loads(paths.metrics.read_text())
    # JSON round-trips floats exactly, so the figures must be equal, not just close
    assert metrics["overall"] == {
        "accuracy": expected.accuracy,
        "uf1": expected.uf1,
        "uar": expected.uar,
        "n": 6,
    }
    assert metrics["per_class"] == expected.per_class
    assert metrics["confusion"] == expected.confusion
    assert metrics["per_subject"] == {
        "s1": {"accuracy": pytest.approx(2 / 3), "n": 3},
        "s2": {"accuracy": pytest.approx(2 / 3), "n": 3},
    }
    assert metrics["oracle"] is False and metrics["mekit_version"]
    assert metrics["extra"]["calibration"]["temperature"] == 2.123456  # full precision

    summary = paths.summary.read_text()
    assert summary.startswith("# STSTNet on a toy corpus\n")
    assert ORACLE_WARNING not in summary
    assert "Leave-one-subject-out, 2 folds" in summary
    assert f"| {expected.accuracy:.4f} | {expected.uf1:.4f} | {expected.uar:.4f} | 6 |" in summary
    assert "| surprise | 1 | 0 | 0 |" in summary  # confusion row: the surprise sample -> negative
    assert "apex frame missing on disk" in summary
    assert "| calibration | temperature 2.1235, ece_after 0.0500 |" in summary
    skipped = pd.read_csv(paths.skipped)
    assert skipped.to_dict("records") == [
        {"id": "sub09/EP01", "reason": "apex frame missing on disk"}
    ]


def test_oracle_runs_are_flagged(tmp_path):
    paths = write_report(
        tmp_path, title="Replication", config={}, result=_result("test-oracle"), labels=LABELS
    )
    summary = paths.summary.read_text()
    assert summary.splitlines()[0] == f"# Replication — {ORACLE_WARNING}"
    assert json.loads(paths.metrics.read_text())["oracle"] is True


def test_empty_skipped_still_has_a_header(tmp_path):
    paths = write_report(tmp_path, title="t", config={}, result=_result(), labels=LABELS)
    assert paths.skipped.read_text().strip() == "id,reason"
    assert "None." in paths.summary.read_text()


def test_labels_must_match_the_run(tmp_path):
    with pytest.raises(MekitError, match="labels"):
        write_report(tmp_path, title="t", config={}, result=_result(), labels=["a", "b"])
