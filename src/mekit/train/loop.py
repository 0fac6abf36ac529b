"""Train one model on one training set: `fit`, and score samples: `predict_proba`.

Deterministic: the same `TrainConfig.seed` gives identical weights and history. The seed fixes
the initial weights and dropout (torch's global RNG, forked so the caller's RNG state is left
untouched) and the batch order and augmentation (a private `torch.Generator`); the thread count is
fixed because a different count may change float summation order.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mekit.config import Choice, Config, check_range, parsed_field
from mekit.errors import MekitError
from mekit.models import ModelSpec, create_model
from mekit.train.augment import (
    affine_draws,
    affine_from_draws,
    erase_draws,
    erase_from_draws,
    flip_draws,
    hflip_where,
    jitter_draws,
    mixup,
    mixup_loss,
    shift_frames,
)
from mekit.train.device import (
    DEVICES,
    MemoryFormat,
    Precision,
    autocast,
    autocast_dtype,
    backward_and_step,
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
from mekit.train.losses import balanced_class_weights, make_loss
from mekit.train.optim import make_adam
from mekit.train.warm_start import transfer_weights

log = logging.getLogger(__name__)


class Loss(Choice):
    CE = "ce"
    FOCAL = "focal"


class ClassWeights(Choice):
    NONE = "none"
    BALANCED = "balanced"


class Sampling(Choice):
    SHUFFLE = "shuffle"
    BALANCED = "balanced"


class Selection(Choice):
    FIXED = "fixed"
    VAL_SPLIT = "val-split"
    TEST_ORACLE = "test-oracle"


def _parse_alpha(value: object) -> tuple[float, ...] | None:
    """focal_alpha as given (None, a sequence, or "0.25, 0.75") -> a tuple of floats."""
    if value is None:
        return None
    items: object = value
    if isinstance(value, str):
        items = [part for part in value.replace(" ", "").split(",") if part]
    try:
        if isinstance(items, int | float):
            raise TypeError
        alpha = tuple(float(a) for a in items)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise MekitError(
            f"train.focal_alpha wants one float per class, e.g. [0.25, 0.75], got {value!r}"
        ) from None
    if not alpha or any(not math.isfinite(a) or a < 0 for a in alpha) or not any(alpha):
        raise MekitError(
            f"train.focal_alpha wants finite non-negative floats, not all 0, got {value!r}"
        )
    return alpha


@dataclass(frozen=True)
class TrainConfig(Config, section="train"):
    """How to train one model (one LOSO fold).

    Defaults are chosen to converge on a small corpus in seconds on a CPU: Adam at lr 1e-3 for
    200 epochs. (The STSTNet paper used lr 5e-5 for 800 epochs; set `lr=5e-5, epochs=800` to
    follow it.)

    selection:
      - "fixed": train all `epochs`, keep the last weights. Never looks at held-out data.
      - "val-split": early stopping on validation subjects drawn from the training subjects
        only (`val_fraction` of them); stops after `patience` epochs without a lower
        validation loss and restores the best-validation-loss weights.
      - "test-oracle": keep, per fold, the epoch with the best accuracy on the TEST subject.
        This is the protocol of several published codes, offered only to reproduce their
        figures; it is not a valid estimate and reports flag it.
    loss, focal_gamma: "focal" is focal loss with focusing parameter `focal_gamma` (0 gives
      cross-entropy).
    class_weights: "balanced" weights class c by n / (K * n_c), counted on the training set of
      each fold: the `weight` of cross-entropy, the per-class alpha of focal loss.
    label_smoothing: eps of label smoothing (Szegedy et al. 2016), cross-entropy only: the
      target of each sample is (1 - eps) on its class and eps / K on every class; 0 (the
      default) is off.
    sampling: how an epoch's batches are drawn. "shuffle" (the default): each training sample
      once, in a random order. "balanced" (class-balanced sampling): as many draws, with
      replacement, each class equally likely (a sample of class c with probability
      1 / (K n_c), K the classes present), so the rare classes are seen as often as the common
      ones (`epoch_order`).
    focal_alpha: explicit per-class alpha for focal loss, one non-negative float per class in
      label order (a TOML list, or a string "0.25,0.75"); checked against the number of
      classes when training starts. Needs loss = "focal" and class_weights = "none".
    init_from: a mekit model file (e.g. from `mekit pretrain` on a macro-expression corpus)
      whose tensors of matching name and shape initialise the model before training
      (transfer learning: the classifier head, sized for other classes, starts fresh).
    augment_flip: mirror each training sample left-right with probability 0.5 (for flow
      input the u channel is negated too).
    augment_rotation_deg, augment_scale, augment_translate: a random similarity transform per
      training sample, after the flip: rotation uniform in +-augment_rotation_deg degrees,
      zoom in [1 - augment_scale, 1 + augment_scale], shift up to augment_translate times
      the image size along each axis. Every frame of a temporal sample gets the same
      transform; flow vectors (u, v) are rotated and scaled with the image, flow magnitude
      scales with the zoom. 0 turns each part off; all 0 (the default) skips the step.
    augment_temporal_jitter: shift each temporal sample's frame window by up to this many
      frames (edge frames repeated); 0 (the default) is off; no effect on (B, C, H, W) input.
    augment_erase: probability, per training sample, of random erasing (Zhong et al. 2020):
      one rectangle of 2-40 % of the image set to 0 in every channel, i.e. "no motion" for
      flow and for median/standardize-normalised input (`mekit.train.augment.random_erase`);
      0 (the default) is off.
    augment_mixup: mixup (Zhang et al. 2018) after the other augmentations: each batch is
      mixed with a permutation of itself by one lam ~ Beta(augment_mixup, augment_mixup), and
      the loss mixed alike (`mekit.train.augment.mixup`); 0 (the default) is off.
    With every augmentation off but the flip (the defaults) training is unchanged, draw for
    draw, from before these options existed.
    device: "auto" (a CUDA GPU, else MPS, else the CPU), "cpu", "cuda" (or "cuda:N"), "mps";
      precision: "auto" (bf16 autocast on a GPU, fp32 on the CPU), "fp32", "bf16", "fp16"
      (`mekit.train.device`). Batches are drawn and augmented on the CPU as before, so a CPU
      run gives the same results as before these settings existed.
    fused_adam: Adam's update as one fused kernel (`mekit.train.optim`): Off-ApexNet's folds
      train 1.25-1.39x faster on 2 CPU cores, the same arithmetic rounded differently (about
      1e-7 per step); false is the per-tensor (foreach) update mekit used before this
      setting, draw for draw.
    memory_format: "auto" (the default) trains channels-last (NHWC inputs and convolution
      weights) the networks whose spec says it is faster (MobileViTv3, the ResNet18s and the
      clip networks: 1.15-1.48x per step on one CPU thread) and every other network as before,
      float for float; "contiguous" (torch's default layout) or "channels_last" for any
      network (`mekit.train.device.memory_format`). The same arithmetic in another order, so
      another draw of the same training (Adam's first steps turn rounding-sized gradient
      differences into lr-sized ones). Trained models leave `fit` contiguous. The per-fold
      loop only: fold-batched training keeps its stacked tensors as they are.
    """

    epochs: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: Loss = Loss.CE
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    focal_alpha: tuple[float, ...] | None = parsed_field(_parse_alpha, None)
    class_weights: ClassWeights = ClassWeights.NONE
    sampling: Sampling = Sampling.SHUFFLE
    selection: Selection = Selection.FIXED
    val_fraction: float = 0.15
    patience: int = 30
    augment_flip: bool = True
    augment_rotation_deg: float = 0.0
    augment_scale: float = 0.0
    augment_translate: float = 0.0
    augment_temporal_jitter: int = 0
    augment_erase: float = 0.0
    augment_mixup: float = 0.0
    init_from: str = ""
    seed: int = 0
    num_threads: int = 1
    device: str = "auto"
    precision: Precision = Precision.AUTO
    fused_adam: bool = True
    memory_format: MemoryFormat = MemoryFormat.AUTO

    def check(self) -> None:
        for name in ("epochs", "batch_size", "patience", "num_threads"):
            check_range(self, name, 1)
        check_range(self, "lr", 0, lo_open=True)
        check_range(self, "val_fraction", 0, 1, lo_open=True, hi_open=True)
        check_range(self, "focal_gamma", 0)
        check_range(self, "label_smoothing", 0, 1, hi_open=True)
        if self.label_smoothing and self.loss != "ce":
            raise MekitError(
                f"train.label_smoothing is set but train.loss is {self.loss!r}; label smoothing "
                "is for cross-entropy (loss = 'ce')"
            )
        if self.focal_alpha is not None:
            if self.loss != "focal":
                raise MekitError(
                    f"train.focal_alpha is set but train.loss is {self.loss!r}; "
                    "use loss = 'focal' or drop focal_alpha"
                )
            if self.class_weights != "none":
                raise MekitError(
                    "train.focal_alpha and train.class_weights = 'balanced' both set the "
                    "per-class alpha of focal loss; use one of them"
                )
        check_range(self, "augment_rotation_deg", 0, 180)
        check_range(self, "augment_scale", 0, 1, hi_open=True)
        check_range(self, "augment_translate", 0, 0.5)
        check_range(self, "augment_temporal_jitter", 0)
        check_range(self, "augment_erase", 0, 1)
        check_range(self, "augment_mixup", 0)
        if self.device.split(":", 1)[0] not in DEVICES:
            raise MekitError(f"train.device {self.device!r} is not one of {', '.join(DEVICES)}")

    @property
    def augment_affine(self) -> bool:
        """Whether the random rotation/zoom/shift step runs."""
        return bool(self.augment_rotation_deg or self.augment_scale or self.augment_translate)


@dataclass(frozen=True)
class FitResult:
    """A trained model (in eval mode) and its per-epoch history.

    history[i] = {"epoch": i + 1, "train_loss": ...} plus "val_loss" and "val_acc" when a
    validation set was given. `stopped_epoch` is the last epoch trained; `best_epoch` the
    epoch whose weights the model holds.
    """

    model: nn.Module
    history: list[dict[str, float]]
    stopped_epoch: int
    best_epoch: int


def _check_xy(x: np.ndarray, y: np.ndarray, num_classes: int, what: str) -> None:
    if x.ndim < 2 or x.shape[0] != y.shape[0]:
        raise MekitError(f"{what}: {x.shape[0] if x.ndim else 0} inputs but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise MekitError(f"{what}: labels must be class indices 0..{num_classes - 1}")


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    chunks = list(torch.split(order, batch_size))
    # A batch of one sample breaks BatchNorm statistics; fold it into the previous batch.
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def epoch_order(y: torch.Tensor, generator: torch.Generator, sampling: str) -> torch.Tensor:
    """The positions of one epoch's training samples, in batch order: a permutation of
    range(len(y)) ("shuffle"), or len(y) class-balanced draws with replacement ("balanced",
    see `TrainConfig.sampling`)."""
    if sampling == "shuffle":
        return torch.randperm(len(y), generator=generator)
    counts = torch.bincount(y)
    present = int((counts > 0).sum())
    p = 1.0 / (present * counts[y].double())
    return torch.multinomial(p, len(y), replacement=True, generator=generator)


def _train_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    generator: torch.Generator,
    spec: ModelSpec,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    layout: torch.memory_format = torch.contiguous_format,
) -> float:
    """One pass over (x, y) in shuffled mini-batches; returns the mean training loss.

    Batches are drawn and augmented on the CPU (the same draws on any device), then moved to
    `device` in the memory `layout`; the forward pass runs under autocast to `dtype` when
    given."""
    model.train()
    total = 0.0
    flow, magnitude = _flow_channels(spec) if config.augment_affine else (None, ())
    for idx in _batches(epoch_order(y, generator, config.sampling), config.batch_size):
        xb, yb = augment_batch(x[idx], config, spec, generator, flow, magnitude), y[idx]
        y_other, lam = None, 1.0
        if config.augment_mixup:
            xb, y_other, lam = mixup(xb, yb, generator, config.augment_mixup)
            y_other = y_other.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        xb = xb.contiguous(memory_format=layout)
        with autocast(device, dtype):
            logits = model(xb).float()
            if y_other is None:
                loss = criterion(logits, yb)
            else:
                loss = mixup_loss(criterion, logits, yb, y_other, lam)
        backward_and_step(loss, optimizer, scaler)
        total += loss.item() * len(idx)
    return total / len(y)


@dataclass(frozen=True)
class AugmentDraws:
    """The random draws of `augment_batch` for a batch, one row per sample, each None where
    `config` turns that augmentation off: kept apart from the transforms so that many folds'
    batches, each drawn from its own generator, are transformed in one go (`concat`)."""

    flip: torch.Tensor | None = None
    affine: torch.Tensor | None = None
    erase: torch.Tensor | None = None
    jitter: torch.Tensor | None = None

    @staticmethod
    def concat(parts: Sequence[AugmentDraws]) -> AugmentDraws:
        """The draws of batches put one after the other."""
        fields = ("flip", "affine", "erase", "jitter")
        joined = {}
        for name in fields:
            rows = [getattr(p, name) for p in parts]
            joined[name] = None if rows[0] is None else torch.cat(rows)
        return AugmentDraws(**joined)


def draw_augment(
    n: int, temporal: bool, config: TrainConfig, generator: torch.Generator
) -> AugmentDraws:
    """The draws `augment_batch` makes from `generator` for a batch of `n` samples (`temporal`:
    (B, C, T, H, W) input), in its order: flip, rotation/zoom/shift, erasing, temporal jitter."""
    jitter = config.augment_temporal_jitter
    return AugmentDraws(
        flip=flip_draws(n, generator) if config.augment_flip else None,
        affine=affine_draws(n, generator) if config.augment_affine else None,
        erase=erase_draws(n, generator) if config.augment_erase else None,
        jitter=jitter_draws(n, generator, jitter) if jitter and temporal else None,
    )


def apply_augment(
    xb: torch.Tensor,
    draws: AugmentDraws,
    config: TrainConfig,
    spec: ModelSpec,
    flow: tuple[int, int] | None,
    magnitude: tuple[int, ...],
) -> torch.Tensor:
    """The batch `xb` augmented as `draws` say, on its own device (see `augment_batch`)."""
    if draws.flip is not None:
        xb = hflip_where(xb, draws.flip, spec.u_channel)
    if draws.affine is not None:
        ranges = (config.augment_rotation_deg, config.augment_scale, config.augment_translate)
        xb = affine_from_draws(xb, draws.affine, *ranges, flow, magnitude)
    if draws.erase is not None:
        xb = erase_from_draws(xb, draws.erase, config.augment_erase)
    if draws.jitter is not None:
        xb = shift_frames(xb, draws.jitter)
    return xb


def augment_batch(
    xb: torch.Tensor,
    config: TrainConfig,
    spec: ModelSpec,
    generator: torch.Generator,
    flow: tuple[int, int] | None,
    magnitude: tuple[int, ...],
) -> torch.Tensor:
    """A training batch as `config` augments it (flip, then rotation/zoom/shift, then random
    erasing, then temporal jitter), every draw from `generator`; `flow`, `magnitude`:
    `_flow_channels(spec)`."""
    draws = draw_augment(len(xb), xb.dim() == 5, config, generator)
    return apply_augment(xb, draws, config, spec, flow, magnitude)


V_NAMES: tuple[str, ...] = ("v", "dy")
MAGNITUDE_NAMES: tuple[str, ...] = ("magnitude", "mag")


def _flow_channels(spec: ModelSpec) -> tuple[tuple[int, int] | None, tuple[int, ...]]:
    """The (u, v) flow channels of `spec` and its flow-magnitude channels.

    u is `spec.u_channel`; v is the channel named "v" or "dy", or, for unnamed flow channels,
    the one after u.
    """
    names = spec.channel_names
    magnitude = tuple(i for i, n in enumerate(names) if n in MAGNITUDE_NAMES)
    u = spec.u_channel
    if u is None:
        return None, magnitude
    if names:
        v = next((i for i, n in enumerate(names) if n in V_NAMES), None)
    else:
        v = u + 1 if u + 1 < spec.channels else None
    if v is None:
        raise MekitError(
            f"model {spec.name!r} has a horizontal flow channel but no vertical one (named "
            f"{' or '.join(V_NAMES)}); rotation/zoom augmentation needs both: set "
            "train.augment_rotation_deg, augment_scale and augment_translate to 0"
        )
    return (u, v), magnitude


@torch.no_grad()
def _evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module
) -> tuple[float, float]:
    model.eval()
    device = _device_of(model)
    logits = torch.cat([model(chunk.to(device)).float() for chunk in torch.split(x, 256)])
    y = y.to(device)
    return float(criterion(logits, y)), float((logits.argmax(1) == y).float().mean())


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def fit(
    model_name: str,
    num_classes: int,
    X_train: np.ndarray,
    y_train: np.ndarray,
    config: TrainConfig,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    progress_file: GroupState | None = None,
) -> FitResult:
    """Train registered model `model_name` on X_train (N, *spec.input_shape) float32 and
    y_train (N,) class indices 0..num_classes-1.

    With selection "val-split" or "test-oracle", (X_val, y_val) is required: the validation
    subjects' samples or, for the oracle, the test subject's. With "fixed" a given validation
    set is only monitored (val_loss, val_acc in the history). Validation loss uses the
    training criterion (including class weights).

    With `progress_file`, the training saves its progress there at epoch ends (about once a
    minute, `mekit.train.group_state`) and starts from it when it holds this training's
    progress: an interrupted fit continues, with the same result, bit for bit, as an
    uninterrupted one. The caller removes it (`GroupState.clear`) once it has kept the fit's
    result: a run stopped between the fit's end and that continues from the last save.
    """
    x, y = _labelled_tensors(X_train, y_train, num_classes, "training set")
    has_val = X_val is not None and y_val is not None
    if config.selection != "fixed" and not has_val:
        raise MekitError(f"selection {config.selection!r} needs X_val and y_val")
    val = _labelled_tensors(X_val, y_val, num_classes, "validation set") if has_val else None
    weights = class_weights(y.numpy(), num_classes, config)
    criterion = make_loss(config.loss, config.focal_gamma, weights, config.label_smoothing)

    threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            generator = torch.Generator().manual_seed(config.seed)
            model = create_model(model_name, num_classes, **dict(model_kwargs or {}))
            if config.init_from:
                transfer_weights(model, config.init_from)
            history, best_epoch = _train_epochs(
                model, x, y, val, criterion, config, generator, progress_file
            )
    finally:
        torch.set_num_threads(threads)
    # Models leave fit on the CPU and contiguous, wherever and however they trained: saving
    # and reports
    to_memory_format(model.to("cpu"), torch.contiguous_format)
    model.eval()
    return FitResult(
        model=model, history=history, stopped_epoch=len(history), best_epoch=best_epoch
    )


def _labelled_tensors(
    X: np.ndarray | None, y: np.ndarray | None, num_classes: int, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, y) as float32 inputs and int64 labels, checked: `MekitError` naming `what`."""
    x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    y_np = np.asarray(y, dtype=np.int64)
    _check_xy(x.numpy(), y_np, num_classes, what)
    if len(y_np) == 0:
        raise MekitError(f"{what} is empty")
    return x, torch.from_numpy(y_np)


def class_weights(y: np.ndarray, num_classes: int, config: TrainConfig) -> np.ndarray | None:
    """The per-class weights of the loss: `config.focal_alpha`, "balanced" weights counted on
    the training labels `y`, or None (unweighted)."""
    if config.focal_alpha is not None:
        if len(config.focal_alpha) != num_classes:
            raise MekitError(
                f"train.focal_alpha has {len(config.focal_alpha)} values for {num_classes} "
                "classes; give one per class, in label order"
            )
        return np.asarray(config.focal_alpha, dtype=np.float32)
    if config.class_weights == "balanced":
        return balanced_class_weights(y, num_classes)
    return None


def _train_epochs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    val: tuple[torch.Tensor, torch.Tensor] | None,
    criterion: nn.Module,
    config: TrainConfig,
    generator: torch.Generator,
    progress_file: GroupState | None = None,
) -> tuple[list[dict[str, float]], int]:
    """Train `model` on `config.device` for `config.epochs` epochs (fewer when "val-split"
    stops early), leaving it with the weights `config.selection` keeps; saving its progress in
    `progress_file` and starting from it (see `fit`).

    Returns the history (one record per epoch) and the epoch whose weights the model holds.
    """
    device = resolve_device(config.device)
    dtype = autocast_dtype(config.precision, device)
    layout = memory_format(config.memory_format, model.spec)
    to_memory_format(model.to(device), layout)
    if val is not None:
        val = (val[0].contiguous(memory_format=layout), val[1])
    criterion.to(device)
    scaler = grad_scaler(device, dtype)
    optimizer = make_adam(model.parameters(), config.lr, config.weight_decay, config.fused_adam)
    progress = _FitProgress(model, optimizer, scaler, generator, device, config.epochs)
    saved = progress_file.load() if progress_file is not None else None
    if saved is not None:
        progress.restore(saved)
    for epoch in range(progress.done + 1, config.epochs + 1):
        train_loss = _train_epoch(
            model,
            x,
            y,
            criterion,
            optimizer,
            config,
            generator,
            model.spec,
            device,
            dtype,
            scaler,
            layout,
        )
        record: dict[str, float] = {"epoch": epoch, "train_loss": train_loss}
        if val is not None:
            record["val_loss"], record["val_acc"] = _evaluate(model, *val, criterion)
        progress.history.append(record)
        progress.done = epoch
        if config.selection != "fixed":
            score = -record["val_loss"] if config.selection == "val-split" else record["val_acc"]
            if score > progress.best_score:
                progress.best_epoch, progress.best_score = epoch, score
                progress.best_state = copy.deepcopy(model.state_dict())
            elif config.selection == "val-split" and epoch - progress.best_epoch >= config.patience:
                log.debug("early stop at epoch %d (best %d)", epoch, progress.best_epoch)
                break
        if progress_file is not None and epoch < config.epochs and progress_file.due():
            progress_file.save(progress.state)
    if progress.best_state is not None:
        model.load_state_dict(progress.best_state)
    return progress.history, progress.best_epoch


class _FitProgress:
    """What `fit`'s training carries from epoch to epoch, to save and to continue from: the
    model, the optimiser (and fp16 loss scaler), the batch generator, the dropout generator of
    `device`, the history, and the best epoch so far with its weights."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None,
        generator: torch.Generator,
        device: torch.device,
        epochs: int,
    ) -> None:
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.generator, self.device = generator, device
        self.done = 0  # epochs trained
        self.history: list[dict[str, float]] = []
        # "fixed" selection (and one whose validation scores are never numbers) keeps the last
        # epoch's weights
        self.best_epoch, self.best_score = epochs, -math.inf
        self.best_state: dict[str, torch.Tensor] | None = None

    def state(self) -> dict[str, Any]:
        """The state after `self.done` epochs, on the CPU."""
        state = {
            "step": self.done,
            **model_training(self.model, self.optimizer, self.scaler, self.generator, self.device),
            "history": self.history,
            "best": [self.best_epoch, self.best_score],
            "best_state": self.best_state or {},
        }
        return cpu_copy(state)

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from `state`."""
        restore_model_training(
            state, self.model, self.optimizer, self.scaler, self.generator, self.device
        )
        self.done = int(state["step"])
        self.history = [dict(record) for record in state["history"]]
        self.best_epoch, self.best_score = int(state["best"][0]), float(state["best"][1])
        self.best_state = dict(state["best_state"]) or None


@torch.no_grad()
def predict_proba(model: nn.Module, X: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K) float32 for inputs X (N, *model.spec.input_shape)."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    if len(x) == 0:
        raise MekitError("no samples to predict")
    device = _device_of(model)
    probs = [
        torch.softmax(model(chunk.to(device)).float(), dim=1).cpu()
        for chunk in torch.split(x, batch_size)
    ]
    return torch.cat(probs).numpy()
