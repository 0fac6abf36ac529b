"""The progress of a fold, or of a group of folds trained together, saved while it trains, so
an interrupted run resumes it where it stopped instead of starting it over.

The fold runner saves a fold's result when the fold ends; folds trained together (fold-batched,
the fused STSTNet kernel) end together, so without this a run killed near the end of its only
group (all 68 folds of a GPU run, or of STSTNet on the CPU) loses everything, and a run of one
model per fold loses the folds in training (minutes to tens of minutes each for the larger
networks on a CPU). A trainer saves its whole training state (parameters, optimiser,
normalisation statistics, every random stream, the step or epoch) at a point it can continue
from, every `SAVE_EVERY_S` seconds or, where a save takes long, so that saving costs at most
1/`SAVE_COST_SHARE` of the time (68 MobileViTv3-XXS folds' weights with Adam's moments are
0.6 GB); on resume it continues from there, and the result is the same, bit for bit, as that
of an uninterrupted run on the same machine.

The file, `group_FIRST-LAST_N.pt` for a group of N folds and `fold_INDEX.progress.pt` for one
fold trained alone, sits beside the fold results, stamped with the fingerprints of its folds
(data, trainer, settings, samples), so it is never resumed by another run. The fold runner
removes it once the results of all its folds are saved (not when the training ends: a run
stopped in between would lose the training), and on a rerun that finds them all saved.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mekit.fileio import atomic_open
from mekit.train.splits import Fold

log = logging.getLogger(__name__)

SAVE_EVERY_S = 60.0
SAVE_COST_SHARE = 50  # the wait after a save is at least this many times its duration


@dataclass(frozen=True)
class GroupCheckpoints:
    """Where the groups of a run keep their progress: `directory`, with each fold's
    fingerprint (`fingerprints[fold.index]`, as the fold results are stamped)."""

    directory: Path
    fingerprints: Mapping[int, str]

    def for_folds(self, folds: Sequence[Fold]) -> GroupState:
        """The progress file of `folds`: a group trained together, or one fold."""
        h = hashlib.sha256()
        for fold in folds:
            h.update(f"{fold.index}:{self.fingerprints[fold.index]};".encode())
        name = f"group_{folds[0].index:03d}-{folds[-1].index:03d}_{len(folds)}.pt"
        if len(folds) == 1:
            name = f"fold_{folds[0].index:03d}.progress.pt"
        return GroupState(self.directory / name, h.hexdigest())


@dataclass
class GroupState:
    """One group's progress file (see the module docstring)."""

    path: Path
    fingerprint: str
    last_save: float = field(default_factory=time.monotonic)
    save_seconds: float = 0.0  # how long the last save took

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none, or it is another run's or unreadable
        (logged; the group then starts over)."""
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # a torn or foreign file: start the group over
            log.warning("ignoring unreadable group progress %s (%s)", self.path, e)
            return None
        if not isinstance(saved, dict) or saved.get("fingerprint") != self.fingerprint:
            log.info("%s is from a different run or data; the group starts over", self.path)
            return None
        log.info("resuming %s at step %s", self.path.name, saved["state"].get("step"))
        return saved["state"]

    def due(self) -> bool:
        """Whether it is time to save: `SAVE_EVERY_S` since the last save (or the start), and
        `SAVE_COST_SHARE` times as long as that save took."""
        wait = max(SAVE_EVERY_S, SAVE_COST_SHARE * self.save_seconds)
        return time.monotonic() - self.last_save >= wait

    def save(self, make_state: Callable[[], Mapping[str, Any]]) -> None:
        """Write the state `make_state()` gives (tensors, numbers, strings, lists and dicts of
        them) atomically; its making (copies off the GPU) counts as part of the save."""
        start = time.monotonic()
        state = make_state()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.path, "wb", fsync=True) as f:
            torch.save({"fingerprint": self.fingerprint, "state": dict(state)}, f)
        self.last_save = time.monotonic()
        self.save_seconds = self.last_save - start

    def clear(self) -> None:
        """Remove the file: its group has finished."""
        self.path.unlink(missing_ok=True)


def dropout_generators(device: torch.device) -> dict[str, torch.Tensor]:
    """The state of torch's global generators that draw dropout on `device` (the CPU's, and
    the GPU's on a GPU), to save with a training's progress."""
    state = {"rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def restore_dropout_generators(state: Mapping[str, Any], device: torch.device) -> None:
    """Set the generators `dropout_generators` saved (progress saved on a CPU carries no GPU
    state: a GPU then keeps its own)."""
    torch.set_rng_state(state["rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def model_training(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    generator: torch.Generator,
    device: torch.device,
) -> dict[str, Any]:
    """The state of one model's training, not copied: its weights, the optimiser, the fp16
    loss scaler ({} without one), the batch generator and the dropout generators of `device`.
    A trainer adds what else it carries and saves the whole through `cpu_copy`."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "generator": generator.get_state(),
        **dropout_generators(device),
    }


def restore_model_training(
    state: Mapping[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    generator: torch.Generator,
    device: torch.device,
) -> None:
    """Continue the training `model_training` saved in `state`."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None:
        scaler.load_state_dict(state["scaler"])
    generator.set_state(state["generator"])
    restore_dropout_generators(state, device)


def cpu_copy(value: Any) -> Any:
    """`value` with every tensor in it copied to the CPU (a state to save)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, Mapping):
        return {k: cpu_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(cpu_copy(v) for v in value)
    return value
