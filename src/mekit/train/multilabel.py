"""Multi-label training (one independent sigmoid per label), as synthetic AU pretraining uses.

`fit_multilabel` trains any registered network on (N, C, H, W) flows and (N, L) 0/1 targets
with binary cross-entropy: AdamW under a one-cycle schedule, shuffled batches, each flow
mirrored left-right with probability 0.5 (u changes sign; the AU targets are symmetric or
carry no side), in the memory layout `memory_format` picks (as `train.memory_format` does:
"auto" trains MobileViTv3 channels-last, the AU network as before), on the device and in the
precision a run's `train.device` and `train.precision` name (the CPU in fp32 by default: the
packaged AU model is trained there). Every random draw comes from one CPU generator seeded
with `config.seed`, so a run is repeatable bit-for-bit on the same machine and thread count,
and draws the same batches and mirrors on any device. With a `progress_file`
(`mekit.train.group_state`) the training saves its progress at epoch ends, about once a minute,
and an interrupted one continues from there with the same result, bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mekit.config import Config, check_range
from mekit.train.augment import hflip
from mekit.train.device import (
    MemoryFormat,
    autocast,
    autocast_dtype,
    backward_and_step,
    describe,
    grad_scaler,
    memory_format,
    resolve_device,
    to_memory_format,
)
from mekit.train.group_state import (
    GroupState,
    cpu_copy,
    model_training,
    restore_model_training,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MultiLabelConfig(Config, section="multilabel"):
    """The schedule of `fit_multilabel`."""

    seed: int = 0
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    memory_format: MemoryFormat = MemoryFormat.AUTO

    def check(self) -> None:
        for name in ("epochs", "batch_size"):
            check_range(self, name, 1)
        check_range(self, "lr", 0, lo_open=True)
        check_range(self, "weight_decay", 0)


U_CHANNEL = 0  # of (u, v, strain): the component a left-right mirror negates (`hflip`)


def fit_multilabel(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: MultiLabelConfig,
    device: str = "cpu",
    precision: str = "auto",
    progress_file: GroupState | None = None,
) -> nn.Module:
    """Train `model` (a registered network, logits (B, L)) on flows `x` (N, 3, H, W) and
    targets `y` (N, L) in place, on `device` (as `train.device`: auto, cpu, cuda[:N], mps)
    under `precision` (as `train.precision`), in the memory layout `config.memory_format` picks
    for it; returns it on the CPU, in eval mode and contiguous. With `progress_file`, saves
    its progress there and continues from it (the caller removes it once the model is kept)."""
    where = resolve_device(device)
    dtype = autocast_dtype(precision, where)
    layout = memory_format(config.memory_format, model.spec)
    gen = torch.Generator().manual_seed(config.seed)
    # the samples move to the device once; each batch is gathered there
    xt = torch.from_numpy(x).to(where)
    yt = torch.from_numpy(y.astype(np.float32)).to(where)
    to_memory_format(model.to(where), layout)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * ((len(xt) + config.batch_size - 1) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    scaler = grad_scaler(where, dtype)
    loss_fn = nn.BCEWithLogitsLoss()
    log.info("multi-label training on %s", describe(where, dtype))
    training = _Progress(model, opt, sched, scaler, gen, where)
    saved = progress_file.load() if progress_file is not None else None
    start = training.restore(saved) if saved is not None else 0
    for epoch in range(start, config.epochs):
        model.train()
        total = torch.zeros((), device=where)  # summed there: no wait for the device per step
        for xb, yb in mirrored_batches(xt, yt, gen, config.batch_size):
            with autocast(where, dtype):
                loss = loss_fn(model(xb.contiguous(memory_format=layout)).float(), yb)
            opt.zero_grad()
            backward_and_step(loss, opt, scaler)
            sched.step()
            total += loss.detach() * len(xb)
        log.info("epoch %d/%d loss %.4f", epoch + 1, config.epochs, float(total) / len(xt))
        if progress_file is not None and epoch + 1 < config.epochs and progress_file.due():
            progress_file.save(lambda done=epoch + 1: training.state(done))
    return to_memory_format(model.cpu(), torch.contiguous_format).eval()


@dataclass
class _Progress:
    """What `fit_multilabel` carries from epoch to epoch: the model, AdamW, the one-cycle
    schedule, the fp16 loss scaler, the batch generator and the dropout generator of `device`."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    generator: torch.Generator
    device: torch.device

    def state(self, done: int) -> dict[str, Any]:
        """The state after `done` epochs, on the CPU."""
        state = {
            "step": done,
            **model_training(self.model, self.optimizer, self.scaler, self.generator, self.device),
            "schedule": self.schedule.state_dict(),
        }
        return cpu_copy(state)

    def restore(self, state: Mapping[str, Any]) -> int:
        """Continue from `state`; returns the epochs it had done."""
        restore_model_training(
            state, self.model, self.optimizer, self.scaler, self.generator, self.device
        )
        self.schedule.load_state_dict(state["schedule"])
        return int(state["step"])


def mirrored_batches(
    xt: torch.Tensor, yt: torch.Tensor, gen: torch.Generator, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled batches of flows `xt` and targets `yt`, made on their device, each
    flow mirrored with probability 0.5; the order and mirrors are drawn from the CPU `gen`."""
    order = torch.randperm(len(xt), generator=gen)
    for batch in torch.split(order, batch_size):
        flip = torch.rand(len(batch), generator=gen) < 0.5
        batch, flip = batch.to(xt.device), flip.to(xt.device)
        xb = xt[batch]
        yield torch.where(flip[:, None, None, None], hflip(xb, U_CHANNEL), xb), yt[batch]


def sigmoid_probabilities(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """(N, L) label probabilities of `model` on flows `x`: the mean of the sigmoid for each flow
    and its mirror image (run as one batch: one call, not two, for a single event)."""
    model.eval()
    with torch.no_grad():
        chunks = torch.split(torch.from_numpy(np.ascontiguousarray(x, np.float32)), batch_size)
        out = []
        for c in chunks:
            both = torch.sigmoid(model(torch.cat([c, hflip(c, U_CHANNEL)])))
            out.append((both[: len(c)] + both[len(c) :]) / 2)
        return torch.cat(out).numpy()
