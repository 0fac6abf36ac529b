"""A model for use: one network trained on every sample of a run, written as a model file.

Cross-validation estimates how well a model would do on people it has not seen, but each fold's
model saw only part of the data. The model to use on new videos (`mekit analyze`) is trained
once more on all samples with the run's schedule: the fixed number of epochs of its
`TrainConfig` (there is no held-out data left to stop early on, so "val-split" and
"test-oracle" selection fall back to the fixed schedule), then saved with `save_model`
(safetensors + JSON sidecar) together with the cross-validation metrics that estimate it.

The training saves its progress beside the model file (`NAME.progress.pt`, stamped with a hash
of the samples, labels, model and schedule; `model_progress`, `mekit.train.group_state`), so a
run interrupted while it trains this model continues it on a rerun instead of starting it over
(pretraining on images, `mekit.train.transfer`, does the same).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from mekit.train.checkpoint import model_paths, save_model
from mekit.train.group_state import GroupState
from mekit.train.loop import TrainConfig, fit

log = logging.getLogger(__name__)


def train_and_save(
    path: str | Path,
    X: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    model_name: str,
    train: TrainConfig,
    *,
    input: Mapping[str, Any],
    config: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Fit `model_name` on all of X (N, *input_shape) float32 / y (N,) class indices into
    `labels` with `train`'s fixed schedule, and save it at `path` (stem or either file name).

    Returns (weights path, sidecar path). `input`, `config`, `metrics` and `training` go to
    the sidecar as `save_model` describes; `training` gets the schedule and sample count added.
    """
    schedule = replace(train, selection="fixed")
    progress = model_progress(path, X, y, labels, model_name, schedule)
    result = fit(model_name, len(labels), X, y, schedule, progress_file=progress)
    provenance = {
        "samples": int(len(y)),
        "epochs": schedule.epochs,
        "selection": "fixed (all samples, no held-out data)",
        **dict(training or {}),
    }
    paths = save_model(
        path,
        result.model,
        model_name=model_name,
        labels=labels,
        model_kwargs={},
        input=input,
        config=config,
        metrics=metrics,
        training=provenance,
    )
    progress.clear()  # only now: a run stopped before the save continues the training
    log.info("model trained on all %d samples: %s", len(y), paths[1])
    return paths


def model_progress(
    path: str | Path,
    X: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    model_name: str,
    schedule: Any,
) -> GroupState:
    """The progress file (`NAME.progress.pt`) of the model to be saved at `path` (stem or
    either file name), trained on X, y (class indices, or 0/1 targets) with `schedule` (a
    dataclass: `TrainConfig`, `MultiLabelConfig`...): stamped with a hash of them all, so only
    the same training continues from it."""
    weights, _ = model_paths(path)
    fingerprint = _fingerprint(X, y, labels, model_name, schedule)
    return GroupState(weights.with_suffix(".progress.pt"), fingerprint)


def _fingerprint(
    X: np.ndarray, y: np.ndarray, labels: Sequence[str], model_name: str, schedule: Any
) -> str:
    h = hashlib.sha256()
    # the arrays' own buffers, not copies (a pretraining set can hold gigabytes)
    h.update(np.ascontiguousarray(X, dtype=np.float32).data)
    h.update(np.ascontiguousarray(y, dtype=np.int64).data)
    setup = {"shape": list(np.shape(X)), "labels": list(labels), "model": model_name}
    setup["train"] = asdict(schedule)
    h.update(json.dumps(setup, sort_keys=True, default=str).encode())
    return h.hexdigest()


def model_is_oracle(meta: Mapping[str, Any]) -> bool:
    """True when a model file's figures come from test-oracle epoch selection (the flag in its
    metrics, or, for files written before the flag existed, the selection in its config)."""
    metrics = meta.get("metrics")
    if isinstance(metrics, dict) and metrics.get("oracle") is not None:
        return bool(metrics["oracle"])
    config = meta.get("config")
    train = config.get("train") if isinstance(config, dict) else None
    return isinstance(train, dict) and train.get("selection") == "test-oracle"
