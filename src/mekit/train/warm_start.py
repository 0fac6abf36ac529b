"""Warm start: initialise a model from the tensors of a saved mekit model file.

`TrainConfig.init_from` names such a file; `fit` calls `transfer_weights` before training. Its
own module so that the training loop and the pretraining driver (`mekit.train.transfer`, which
trains with the loop) both import it without importing each other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mekit.errors import MekitError
from mekit.train.checkpoint import load_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferReport:
    loaded: tuple[str, ...]  # parameter/buffer names copied from the pretrained model
    fresh: tuple[str, ...]  # names left at their initial values (missing or other shape)


def transfer_weights(model: nn.Module, path: Path | str) -> TransferReport:
    """Copy every tensor of the model file at `path` whose name and shape match `model`'s."""
    source = load_model(path).model.state_dict()
    target = model.state_dict()
    loaded, fresh = [], []
    with torch.no_grad():
        for name, tensor in target.items():
            if name in source and source[name].shape == tensor.shape:
                tensor.copy_(source[name])
                loaded.append(name)
            else:
                fresh.append(name)
    if not loaded:
        raise MekitError(f"{path}: no tensor matches {type(model).__name__}; is it the same model?")
    log.info("transferred %d tensors from %s (%d fresh)", len(loaded), path, len(fresh))
    return TransferReport(tuple(loaded), tuple(fresh))
