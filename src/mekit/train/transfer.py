"""Transfer learning: pretrain an image model on macro expressions, then fine-tune on micro ones.

Seeds 002 and 003 pretrain on a macro-expression corpus (FER2013, CK+'s peak frames) and
fine-tune on the micro-expression corpus. `pretrain` trains a registered apex-image model on an
`ImageSet` and saves it as a mekit model file; `transfer_weights` (`mekit.train.warm_start`,
re-exported here) copies every tensor whose name and shape match into a new model, so the
classifier head (a different number of classes) starts fresh. Fine-tuning is
`TrainConfig.init_from = "path/to/model"`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from mekit.data.images import ImageSet
from mekit.errors import MekitError
from mekit.models import get_spec
from mekit.train.checkpoint import save_model
from mekit.train.export import model_progress
from mekit.train.loop import TrainConfig, fit, predict_proba
from mekit.train.warm_start import TransferReport, transfer_weights

__all__ = [
    "PretrainOutcome",
    "TransferReport",
    "images_to_inputs",
    "pretrain",
    "transfer_weights",
]

log = logging.getLogger(__name__)

IMAGE_INPUTS = ("apex",)  # models whose input is one face image


@dataclass(frozen=True)
class PretrainOutcome:
    model_path: Path
    labels: tuple[str, ...]
    n_train: int
    n_held_out: int
    held_out_score: float  # on samples never trained on (not used to select anything)
    score: str = "accuracy"  # what held_out_score measures


def images_to_inputs(images: np.ndarray, channels: int, size: int) -> np.ndarray:
    """(N, H, W) uint8 grey faces -> (N, channels, size, size) float32 in [0, 1], the same
    scaling as the apex-frame feature."""
    if images.ndim != 3:
        raise MekitError(f"expected (N, H, W) grey images, got shape {images.shape}")
    out = np.empty((len(images), channels, size, size), np.float32)
    for i, image in enumerate(images):
        resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        out[i] = resized.astype(np.float32)[None] / np.float32(255)
    return out


def pretrain(
    images: ImageSet,
    model_name: str,
    config: TrainConfig,
    out: Path,
    held_out_fraction: float = 0.1,
) -> PretrainOutcome:
    """Train `model_name` on `images` and save it (safetensors + JSON) at `out`.

    FER2013's own split is honoured (Training vs PublicTest/PrivateTest); other image sets
    hold out `held_out_fraction` of their images, drawn with `config.seed`. The held-out
    accuracy is reported only; the schedule is fixed. The training saves its progress beside
    `out` (`mekit.train.export.model_progress`) and continues from it when rerun.
    """
    spec = get_spec(model_name)
    if spec.input_kind not in IMAGE_INPUTS:
        raise MekitError(
            f"pretraining on images needs a model whose input is a face image "
            f"({', '.join(IMAGE_INPUTS)}); {model_name} takes {spec.input_kind}. "
            "Image models: resnet18, resnet18_dual_attention"
        )
    if len(images.ids) == 0:
        raise MekitError("the image set is empty")
    labels = tuple(sorted(set(images.labels)))
    y = np.array([labels.index(label) for label in images.labels], dtype=np.int64)
    held = _held_out(images, held_out_fraction, config.seed)
    channels, size = spec.input_shape[0], spec.input_shape[-1]
    X = images_to_inputs(images.images, channels, size)
    train_config = replace(config, selection="fixed", init_from="")
    x_train, y_train = X[~held], y[~held]
    progress = model_progress(out, x_train, y_train, labels, model_name, train_config)
    result = fit(model_name, len(labels), x_train, y_train, train_config, progress_file=progress)
    accuracy = float("nan")
    if held.any():
        accuracy = float((predict_proba(result.model, X[held]).argmax(1) == y[held]).mean())
    paths = save_model(
        Path(out),
        result.model,
        model_name=model_name,
        labels=labels,
        model_kwargs={},
        input={"kind": spec.input_kind, "channels": channels, "size": size},
        config={"train": _plain(train_config)},
        metrics={"held_out_accuracy": accuracy, "n_held_out": int(held.sum())},
        training={"corpus": images.dataset, "samples": int((~held).sum()), "task": "pretrain"},
    )
    progress.clear()  # only now: a run stopped before the save continues the training
    log.info("pretrained %s on %d images: %s", model_name, int((~held).sum()), paths[0])
    return PretrainOutcome(paths[0], labels, int((~held).sum()), int(held.sum()), accuracy)


def _held_out(images: ImageSet, fraction: float, seed: int) -> np.ndarray:
    split = np.asarray(images.split)
    if (split == "Training").any() and (split != "Training").any():
        return split != "Training"
    rng = np.random.default_rng(seed)
    held = np.zeros(len(images.ids), bool)
    n = int(round(fraction * len(held)))
    if 0 < n < len(held):
        held[rng.choice(len(held), n, replace=False)] = True
    return held


def _plain(config: TrainConfig) -> dict[str, object]:
    from mekit.config import to_dict

    return to_dict(config)
