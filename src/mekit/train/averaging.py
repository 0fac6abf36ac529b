"""Probability averaging: several networks (seeds) trained alike, one prediction, one file.

`AverageConfig` says how many members a run trains and how each sample's input is normalised
first. Member m trains with seed `train.seed + MEMBER_SEED_STRIDE * m` (so in a LOSO run its
fold i uses seed `train.seed + 1000 m + i`, never another member's). Cross-validation runs
each member's folds as usual and `average_results` averages the members' probabilities per
sample; `train_average_and_save` trains every member on all samples and writes one model file
(registered model `<model>_average`, e.g. `ststnet_average`) whose output is that average.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mekit.config import Config, check_range, choice_enum
from mekit.errors import MekitError
from mekit.models import create_model, get_spec
from mekit.models.averaging import INPUT_NORMS, normalise_per_sample
from mekit.train.checkpoint import save_model
from mekit.train.loop import TrainConfig, fit
from mekit.train.loso import LosoResult
from mekit.train.splits import Fold

log = logging.getLogger(__name__)

MEMBER_SEED_STRIDE = 1000


# One name per mode of `mekit.models.averaging.normalise_per_sample`, which owns the list.
InputNorm = choice_enum("InputNorm", INPUT_NORMS, __name__)


@dataclass(frozen=True)
class AverageConfig(Config, section="average"):
    """members: networks trained per run (1: a plain run); input_norm: "none",
    "standardize", "median" or "minmax", per sample and channel (`mekit.models.averaging`);
    calibrate: fit a temperature on the run's out-of-fold predictions (`fit_temperature`) and
    write it into the model file, so its probabilities are calibrated (argmax unchanged)."""

    members: int = 1
    input_norm: InputNorm = InputNorm("none")
    calibrate: bool = False

    def check(self) -> None:
        check_range(self, "members", 1, 100)

    @property
    def active(self) -> bool:
        """Whether runs differ from a plain single-network run."""
        return self.members > 1 or self.input_norm != "none" or self.calibrate


def member_seed(seed: int, member: int) -> int:
    return seed + MEMBER_SEED_STRIDE * member


def averaged_model_name(model: str) -> str:
    """The registered averaging model for `model` (e.g. "ststnet" -> "ststnet_average")."""
    name = f"{model}_average"
    try:
        spec = get_spec(name)
    except MekitError:
        raise MekitError(
            f"average.members / average.input_norm need a registered '{name}' model; "
            f"{model} has none (set average.members = 1 and average.input_norm = 'none')"
        ) from None
    if spec.input_shape != get_spec(model).input_shape:
        raise MekitError(f"internal: {name} takes other input than {model}")
    return name


def normalise_inputs(X: np.ndarray, mode: str) -> np.ndarray:
    """X (N, C, H, W) float32 normalised per sample as the averaging model does it."""
    if mode == "none":
        return np.ascontiguousarray(X, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    return normalise_per_sample(x, mode).numpy()


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature T in [0.2, 5] minimising the negative log-likelihood of
    softmax(log(probs) / T) on labels y (N,): probs (N, K) held-out class probabilities."""
    log_p = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))
    y = np.asarray(y, dtype=np.int64)
    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 401))
    losses = [_nll(log_p / t, y) for t in grid]
    return float(grid[int(np.argmin(losses))])


def _nll(logits: np.ndarray, y: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_softmax[np.arange(len(y)), y].mean())


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / temperature), row by row."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)) / temperature
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE: the sample-weighted mean |accuracy - confidence| over `bins` equal-width bins of
    the top-class probability."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / len(confidence))


def calibration(result: LosoResult) -> dict[str, float]:
    """A temperature fitted on `result`'s out-of-fold probabilities, with the negative
    log-likelihood and ECE before and after it."""
    frame = result.predictions
    probs = frame[[f"prob_{label}" for label in result.labels]].to_numpy()
    y = frame["true"].map({label: k for k, label in enumerate(result.labels)}).to_numpy()
    t = fit_temperature(probs, y)
    after = tempered(probs, t)
    return {
        "temperature": t,
        "nll_before": _nll(np.log(np.clip(probs, 1e-12, 1.0)), y),
        "nll_after": _nll(np.log(after), y),
        "ece_before": expected_calibration_error(probs, y),
        "ece_after": expected_calibration_error(after, y),
    }


def average_results(
    results: Sequence[LosoResult],
    weights: Sequence[float] | None = None,
    sources: Sequence[str] | None = None,
) -> LosoResult:
    """One `LosoResult` whose probabilities are the results' mean per sample (joined by id),
    weighted by `weights` (default equal; a blend's parts) and divided by their sum; histories
    and best epochs are the first result's. `sources` name the results in errors (default
    "member N"). `MekitError` when they predict other classes, samples or true labels."""
    if not results:
        raise MekitError("no member results to average")
    weights = [1.0] * len(results) if weights is None else [float(w) for w in weights]
    names = list(sources) if sources else [f"member {m}" for m in range(len(results))]
    first = results[0]
    frame = first.predictions.copy()
    columns = [f"prob_{label}" for label in first.labels]
    index = frame["id"].astype(str)
    frame[columns] = weights[0] * frame[columns].to_numpy()
    for other, weight, name in zip(results[1:], weights[1:], names[1:], strict=True):
        if other.labels != first.labels:
            raise MekitError(
                f"{name} predicts classes {other.labels}, {names[0]} {first.labels}; "
                "cannot average them"
            )
        rows = other.predictions.set_index(other.predictions["id"].astype(str))
        if set(rows.index) != set(index):
            raise MekitError(
                f"{name} predicts other samples than {names[0]}: different samples cannot be "
                "averaged"
            )
        if not (rows.loc[index, "true"].to_numpy() == frame["true"].to_numpy()).all():
            raise MekitError(f"{name} gives other true labels than {names[0]}")
        frame[columns] = frame[columns].to_numpy() + weight * rows.loc[index, columns].to_numpy()
    frame[columns] = frame[columns].to_numpy() / sum(weights)
    names_of = np.asarray(first.labels, dtype=object)
    frame["pred"] = names_of[frame[columns].to_numpy().argmax(axis=1)]
    return replace(first, predictions=frame)


def _fit_members(
    model_name: str,
    num_classes: int,
    X: np.ndarray,
    y: np.ndarray,
    train: TrainConfig,
    average: AverageConfig,
    ensemble: bool,
) -> list[torch.nn.Module]:
    """The members fitted on all of X, y, member m with seed `member_seed(train.seed, m)`."""
    seeds = [member_seed(train.seed, m) for m in range(average.members)]
    if not ensemble:
        return [fit(model_name, num_classes, X, y, replace(train, seed=s)).model for s in seeds]
    from mekit.train.ensemble import fit_fold_ensemble  # the ensemble imports loso, as we do

    everything = np.arange(len(y), dtype=np.int64)
    # one "fold" per member, all samples for training; fold index i trains with seed + i
    folds = [
        Fold(index=s - train.seed, test_subject=f"member-{m}", train_idx=everything,
             test_idx=np.zeros(0, dtype=np.int64))
        for m, s in enumerate(seeds)
    ]  # fmt: skip
    return fit_fold_ensemble(X, y, folds, num_classes, train, model_name=model_name).models


def train_average_and_save(
    path: str | Path,
    X: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    model_name: str,
    train: TrainConfig,
    average: AverageConfig,
    *,
    input: Mapping[str, Any],
    config: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    temperature: float = 1.0,
    ensemble: bool = False,
) -> tuple[Path, Path]:
    """Fit `average.members` copies of `model_name` on all of X (N, C, H, W), y (N,), each
    with its member seed and `train`'s fixed schedule, on inputs normalised by
    `average.input_norm`, and save them as one averaging model file at `path` with
    `temperature` (from `calibration` of the run's cross-validation). With `ensemble`, the
    members train side by side in the fold ensemble (`mekit.train.ensemble`, STSTNet), which
    the caller has checked supports `train`."""
    name = averaged_model_name(model_name)
    schedule = replace(train, selection="fixed")
    Xn = normalise_inputs(X, average.input_norm)
    kwargs: dict[str, Any] = {"members": average.members, "input_norm": average.input_norm}
    if temperature != 1.0:
        kwargs["temperature"] = float(temperature)
    with torch.random.fork_rng(devices=[]):
        model = create_model(name, len(labels), **kwargs)
    fitted = _fit_members(model_name, len(labels), Xn, y, schedule, average, ensemble)
    for member, trained in zip(model.members, fitted, strict=True):
        member.load_state_dict(trained.state_dict())
    model.eval()
    provenance = {
        "samples": int(len(y)),
        "epochs": schedule.epochs,
        "selection": "fixed (all samples, no held-out data)",
        "members": average.members,
        "member_seeds": [member_seed(train.seed, m) for m in range(average.members)],
        "input_norm": average.input_norm,
        **dict(training or {}),
    }
    paths = save_model(
        path,
        model,
        model_name=name,
        labels=labels,
        model_kwargs=kwargs,
        input=input,
        config=config,
        metrics=metrics,
        training=provenance,
    )
    log.info("%d-member model trained on all %d samples: %s", average.members, len(y), paths[1])
    return paths
