"""Fold-batched training for any registered model: every fold of a protocol trained at once.

A LOSO run of a small network is a few thousand tiny training steps per fold, each too small to
keep a CPU's vector units or a GPU busy. Here the folds advance together as one program: their
parameters, BatchNorm buffers and Adam state are stacked along a leading fold axis
(`torch.func.stack_module_state`), and one `vmap`ped gradient call trains every fold on its own
mini-batch. Adam is elementwise, so one optimiser over the stacked tensors is exactly one Adam
per fold.

What stays per fold, so that no fold ever sees its held-out subject:
- the initial weights: fold f is created under `torch.manual_seed(config.seed + f.index)`, as
  the per-fold loop (`mekit.train.loso.run_folds`) creates it, and `train.init_from` is loaded
  into each fold's model before stacking;
- the batches: each fold draws from its own training samples with its own generator (seeded
  `config.seed + f.index`), and its flips, affine/erasing/temporal augmentations and mixup
  (pairs within its own batch) from that generator;
- the class weights (balanced or focal alpha), computed on the fold's training set;
- dropout masks (`vmap(randomness="different")`) and BatchNorm statistics (its own batches).

One difference from the per-fold loop, by design: every fold takes a mini-batch of the same
size at every step (tensors of one shape), drawn from a stream of successive epochs of its
training samples (permutations, or class-balanced draws with `train.sampling`); the run takes
`ceil(epochs x N_max / batch)` steps, where N_max is the largest fold's training set, so the
largest fold sees exactly `epochs` passes and the others (LOSO folds differ by one subject) a
few percent more. Results are therefore close to, not identical with, the per-fold loop's; they
are deterministic for a seed and a `folds_at_once`. Selection must be "fixed" (no held-out data
is looked at).
"""

from __future__ import annotations

import copy
import logging
import math
import types
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mekit.errors import MekitError
from mekit.models import create_model
from mekit.models.registry import ModelSpec
from mekit.train.augment import mixup_draws, mixup_loss
from mekit.train.device import MemoryFormat, autocast, autocast_dtype, resolve_device
from mekit.train.estimators import AllFoldsNetworks
from mekit.train.group_state import (
    GroupCheckpoints,
    cpu_copy,
    dropout_generators,
    restore_dropout_generators,
)
from mekit.train.loop import (
    AugmentDraws,
    TrainConfig,
    _flow_channels,
    apply_augment,
    class_weights,
    draw_augment,
    epoch_order,
    predict_proba,
)
from mekit.train.losses import smoothed_cross_entropy
from mekit.train.optim import make_adam
from mekit.train.splits import Fold
from mekit.train.warm_start import transfer_weights

log = logging.getLogger(__name__)


def batched_unsupported(config: TrainConfig) -> list[str]:
    """Why fold-batched training cannot run `config` (empty when it can)."""
    out = []
    if config.selection != "fixed":
        out.append(f"train.selection={config.selection!r} (fold-batched training is 'fixed' only)")
    if autocast_dtype(config.precision, resolve_device(config.device)) == torch.float16:
        # the per-fold loop scales fp16 losses (GradScaler); skipping an overflowing step
        # for one fold would need an optimiser per fold
        out.append(
            f"train.precision={config.precision!r} (fp16 here; fold-batched training has no "
            "loss scaling: use bf16 or fp32)"
        )
    if config.memory_format == MemoryFormat.CHANNELS_LAST:
        # vmap folds the fold axis into the channels of grouped convolutions, in its own layout
        out.append(
            "train.memory_format='channels_last' (fold-batched training keeps vmap's layout)"
        )
    return out


def _fold_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, config: TrainConfig
) -> torch.Tensor:
    """The loss of one fold's batch, as `mekit.train.losses.make_loss` defines it; `weight`
    (K,) is the class weight (all ones when unweighted)."""
    if config.loss == "ce":  # weighted cross-entropy: normalised by the summed weights
        return smoothed_cross_entropy(logits, target, weight, config.label_smoothing)
    log_p = F.log_softmax(logits.float(), dim=1)
    picked = log_p.gather(1, target[:, None]).squeeze(1)
    loss = -((1.0 - picked.exp()).clamp_min(1e-12) ** config.focal_gamma) * picked * weight[target]
    return loss.mean()


def _class_weights(y: np.ndarray, num_classes: int, config: TrainConfig) -> np.ndarray:
    weights = class_weights(y, num_classes, config)
    return weights if weights is not None else np.ones(num_classes, dtype=np.float32)


class _Stream:
    """A fold's endless stream of training-sample positions: successive epochs'
    `epoch_order`s (permutations, or class-balanced draws) of its training labels y."""

    def __init__(self, y: torch.Tensor, generator: torch.Generator, sampling: str) -> None:
        self.y, self.generator, self.sampling = y, generator, sampling
        self.buffer = torch.empty(0, dtype=torch.long)

    def take(self, k: int) -> torch.Tensor:
        while len(self.buffer) < k:
            epoch = epoch_order(self.y, self.generator, self.sampling)
            self.buffer = torch.cat([self.buffer, epoch])
        out, self.buffer = self.buffer[:k], self.buffer[k:]
        return out


class _Progress:
    """Everything a fold-batched group's training carries from step to step, to save and to
    continue from (`mekit.train.group_state`): stacked parameters and buffers, the optimiser,
    each fold's generator and sample stream, and the dropout generator of `device`."""

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        optimizer: torch.optim.Optimizer,
        generators: Sequence[torch.Generator],
        streams: Sequence[_Stream],
        device: torch.device,
    ) -> None:
        self.params, self.buffers, self.optimizer = params, buffers, optimizer
        self.generators, self.streams, self.device = generators, streams, device

    def state(self, step: int) -> dict[str, Any]:
        """The state before step `step` (0-based), on the CPU."""
        state = {
            "step": step,
            "params": self.params,
            "buffers": self.buffers,
            "optimizer": self.optimizer.state_dict(),
            "generators": [g.get_state() for g in self.generators],
            "streams": [s.buffer for s in self.streams],
            **dropout_generators(self.device),
        }
        return cpu_copy(state)

    def restore(self, state: Mapping[str, Any]) -> int:
        """Continue from `state`; returns its step."""
        with torch.no_grad():
            for kind, tensors in (("params", self.params), ("buffers", self.buffers)):
                for name, t in tensors.items():
                    t.copy_(state[kind][name])
        self.optimizer.load_state_dict(state["optimizer"])
        for g, saved in zip(self.generators, state["generators"], strict=True):
            g.set_state(saved)
        for stream, buffer in zip(self.streams, state["streams"], strict=True):
            stream.buffer = buffer
        restore_dropout_generators(state, self.device)
        return int(state["step"])


def fit_folds(
    model_name: str,
    num_classes: int,
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    config: TrainConfig,
    *,
    model_kwargs: Mapping[str, Any] | None = None,
    folds_at_once: int = 0,
    progress: bool = False,
) -> list[nn.Module]:
    """Train `model_name` once per fold on that fold's training samples, all folds at once.

    X (N, *input_shape) float32, y (N,) class indices; returns one model per fold (CPU, eval
    mode), in the order of `folds`. `folds_at_once` bounds how many folds share one program
    (memory grows with it; 0: `auto_folds_at_once`). See the module doc for what stays per
    fold.
    """
    trainer = BatchedTrainer(
        model_name, num_classes, config, dict(model_kwargs or {}), folds_at_once
    )
    return [m for group in trainer.groups(folds) for m in trainer.fit_models(X, y, group, progress)]


# On the CPU, a stacked tensor above glibc's largest mmap threshold (32 MiB on 64-bit) is
# handed back to the system when freed, so a fresh one costs page faults at every step:
# with Off-ApexNet's first layer for all 48 folds of composite-dev stacked (300 MB), a LOSO run
# spent 11.5 of its 27 CPU-minutes in the kernel; in groups of 5 folds, 2.1 of 20 (16.7 -> 10.1
# min). `benchmarks/fold_batched.py --batch 32`, one run each: 4 folds at once 253 ms per
# fold-epoch, 12 folds 356 ms, 48 folds 586 ms.
CPU_STACK_BYTES = 32 * 2**20


def auto_folds_at_once(model: nn.Module, device: torch.device) -> int:
    """How many folds share one program when `folds_at_once` is 0: all of them on a GPU; on
    the CPU as many as keep the model's largest stacked parameter within `CPU_STACK_BYTES`."""
    if device.type != "cpu":
        return 1 << 30
    largest = max((p.numel() * p.element_size() for p in model.parameters()), default=1)
    return max(1, CPU_STACK_BYTES // largest)


def _fold_model(
    model_name: str,
    num_classes: int,
    model_kwargs: dict[str, Any],
    config: TrainConfig,
    fold: Fold,
) -> nn.Module:
    """Fold `fold`'s initial model: the weights `fit` draws with seed config.seed + index,
    then `train.init_from` loaded, with attention written out so vmap can batch it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + fold.index)
        model = create_model(model_name, num_classes, **model_kwargs)
    if config.init_from:
        transfer_weights(model, config.init_from)
    for module in model.modules():
        if hasattr(module, "explicit"):  # attention vmap can batch (models/mobilevitv3)
            module.explicit = True
    return model


# Normalisation layers whose vmap rules cannot mix a bf16/fp16 input with fp32 parameters.
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _norms_in_fp32(model: nn.Module) -> nn.Module:
    """`model`, in place, with each normalisation layer computing in fp32 outside autocast
    and handing its output back in its input's dtype. Under autocast a convolution or linear
    layer hands a norm a bf16 or fp16 input; torch's norms take it beside their fp32
    parameters, but under vmap batch norm's forward and layer norm's backward do not
    ("expected scalar type BFloat16 but found Float"). The statistics are fp32 either way;
    outside vmap (the per-fold loop) the norms take the bf16 input as it comes."""

    def fp32_forward(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return type(norm).forward(norm, x.float()).to(x.dtype)

    for module in model.modules():
        if isinstance(module, _NORMS):
            module.forward = types.MethodType(fp32_forward, module)
    return model


# On the CPU a step's batches are augmented a chunk of folds at a time, each chunk's samples
# within this many bytes (`benchmarks/batch_assembly.py`, 2 threads): at once, 68 STSTNet folds
# (300 kB each) took half the time they took fold by fold, 5 Off-ApexNet folds 0.6 of it; but
# all 68 MobileViTv3-XXS folds (1.5 MB each) took twice as long at once, each intermediate a
# fresh allocation above the mmap threshold (page faults, as `CPU_STACK_BYTES` says).
CPU_AUGMENT_BYTES = 2 << 20


def fold_batches(
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    picks: Sequence[torch.Tensor],
    generators: Sequence[torch.Generator],
    config: TrainConfig,
    spec: ModelSpec,
    flow: tuple[int, int] | None = None,
    magnitude: tuple[int, ...] = (),
) -> tuple[torch.Tensor, ...]:
    """One step's batches, fold f's of samples `picks[f]` (all of one size) augmented with
    draws from `generators[f]`: (x (F, B, ...) on x_all's device, y (F, B)), and with mixup the
    partner labels (F, B) and the mixing weights (F,). `flow`, `magnitude`:
    `_flow_channels(spec)` where the affine augmentation is on.

    Every draw is made on the CPU, fold by fold, so the batches are the same draws wherever
    x_all lives. The transforms then run on many folds' samples together, one call per
    transform: on a GPU all folds at once (68 folds' small calls cost it more than its step),
    on the CPU in chunks of `CPU_AUGMENT_BYTES`."""
    device = x_all.device
    folds, size = len(picks), len(picks[0])
    temporal = x_all.dim() == 5
    draws, pairs, lams = [], [], []
    for f, (idx, g) in enumerate(zip(picks, generators, strict=True)):
        if len(idx) != size:
            raise ValueError(f"fold {f} takes a batch of {len(idx)}, fold 0 of {size}")
        draws.append(draw_augment(size, temporal, config, g))
        if config.augment_mixup > 0:
            lam, pair = mixup_draws(size, g, config.augment_mixup)
            pairs.append(pair)
            lams.append(lam)
    chunk = folds
    if device.type == "cpu":
        chunk = max(1, CPU_AUGMENT_BYTES // max(1, size * x_all[0].nbytes))
    idx = torch.cat(list(picks))
    on_device = idx.to(device)
    xs = []
    for start in range(0, folds, chunk):
        part = slice(start, start + chunk)
        xb = x_all[on_device[start * size : (start + chunk) * size]]
        xb = apply_augment(xb, AugmentDraws.concat(draws[part]), config, spec, flow, magnitude)
        if lams:
            xb = _mixed(xb, lams[part], pairs[part])
        xs.append(xb)
    yb = y_all[idx].reshape(folds, size)
    xb = torch.cat(xs) if len(xs) > 1 else xs[0]
    batches = [xb.reshape(folds, size, *xb.shape[1:]), yb.to(device)]
    if lams:
        others = torch.stack([y[pair] for y, pair in zip(yb, pairs, strict=True)])
        batches += [others.to(device), torch.tensor(lams, device=device)]
    return tuple(batches)


def _mixed(xb: torch.Tensor, lams: Sequence[float], pairs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Consecutive folds' batches `xb` mixed as `mixup` mixes one: fold f's by `lams[f]` with
    its samples `pairs[f]`."""
    size = len(pairs[0])
    pair = torch.cat([p + f * size for f, p in enumerate(pairs)]).to(xb.device)
    lam = torch.tensor(lams, dtype=torch.float64).repeat_interleave(size)
    per_sample = (-1, *([1] * (xb.dim() - 1)))
    keep, mix = (w.to(xb.device, xb.dtype).reshape(per_sample) for w in (lam, 1.0 - lam))
    return keep * xb + mix * xb[pair]


def _halves(folds: Sequence[Fold]) -> tuple[list[Fold], list[Fold]]:
    """How a group that ran out of GPU memory is split: the first half takes the odd fold."""
    half = (len(folds) + 1) // 2
    return list(folds[:half]), list(folds[half:])


def _unstacked(
    model_name: str,
    num_classes: int,
    model_kwargs: dict[str, Any],
    stacked: dict[str, torch.Tensor],
    f: int,
) -> nn.Module:
    """Fold f's trained model (CPU, eval mode) from the stacked parameters and buffers."""
    model = create_model(model_name, num_classes, **model_kwargs)
    model.load_state_dict({k: v[f].detach().to("cpu") for k, v in stacked.items()})
    return model.eval()


@dataclass(frozen=True)
class BatchedTrainer(AllFoldsNetworks):
    """The fold runner's trainer for fold-batched training (`fit_folds`), `folds_at_once`
    folds per program (0: `auto_folds_at_once`). No per-epoch losses: the folds share their
    steps."""

    folds_at_once: int = 0
    engine = "batched"

    def groups(self, folds: Sequence[Fold]) -> list[list[Fold]]:
        chunk = self.folds_at_once
        if chunk <= 0:
            device = resolve_device(self.config.device)
            chunk = auto_folds_at_once(
                create_model(self.model_name, self.num_classes, **self.model_kwargs), device
            )
        chunk = min(chunk, len(folds)) or 1
        return [list(folds[i : i + chunk]) for i in range(0, len(folds), chunk)]

    def _fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        folds: list[Fold],
        progress: bool,
        checkpoints: GroupCheckpoints | None = None,
    ) -> tuple[list[nn.Module], list[list[dict[str, float]]]]:
        return self.fit_models(X, y, folds, progress, checkpoints), [[] for _ in folds]

    def fit_models(
        self,
        X: np.ndarray,
        y: np.ndarray,
        folds: Sequence[Fold],
        progress: bool = False,
        checkpoints: GroupCheckpoints | None = None,
    ) -> list[nn.Module]:
        """One group of folds trained as one vmapped program (see the module docstring),
        saving its progress in `checkpoints` as it goes; a group that runs out of GPU memory is
        trained again as two halves (each fold starts over from its own seed; the dropout
        masks, drawn for the whole group, change)."""
        try:
            return self._fit_group(X, y, folds, progress, checkpoints)
        except torch.cuda.OutOfMemoryError:
            if len(folds) == 1:
                raise
        # here, outside the handler, the failed attempt's tensors are free
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if checkpoints is not None:  # the halves start over: the group's progress is void
            checkpoints.for_folds(folds).clear()
        first, second = _halves(folds)
        log.warning(
            "%d folds at once ran out of GPU memory; training them as %d and %d "
            "(--set folds_at_once=%d fixes the grouping from the start)",
            len(folds),
            len(first),
            len(second),
            len(first),
        )
        return [
            m
            for part in (first, second)
            for m in self.fit_models(X, y, part, progress, checkpoints)
        ]

    def progress_groups(self, group: Sequence[Fold]) -> list[list[Fold]]:
        """The group, and the halves (and theirs) it is trained as if it runs out of GPU
        memory: each leaves its own progress file."""
        if len(group) == 1:
            return [list(group)]
        first, second = _halves(group)
        return [list(group), *self.progress_groups(first), *self.progress_groups(second)]

    def _fit_group(
        self,
        X: np.ndarray,
        y: np.ndarray,
        folds: Sequence[Fold],
        progress: bool,
        checkpoints: GroupCheckpoints | None = None,
    ) -> list[nn.Module]:
        problems = batched_unsupported(self.config)
        if problems:
            raise MekitError(f"fold-batched training cannot train with {', '.join(problems)}")
        from torch.func import functional_call, grad, stack_module_state, vmap

        model_name, num_classes, config = self.model_name, self.num_classes, self.config
        model_kwargs = dict(self.model_kwargs)
        device = resolve_device(config.device)
        dtype = autocast_dtype(config.precision, device)
        # the samples live where the model trains: each step gathers and augments its
        # batches there (moving them from the CPU each step cost more than a GPU step)
        x_all = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(device)
        y_all = torch.from_numpy(np.asarray(y, dtype=np.int64))
        sizes = [len(f.train_idx) for f in folds]
        if min(sizes) == 0:
            raise MekitError("a fold has no training samples")
        batch = min(config.batch_size, min(sizes))
        steps = math.ceil(config.epochs * max(sizes) / batch)

        models = [
            _fold_model(model_name, num_classes, model_kwargs, config, fold).to(device).train()
            for fold in folds
        ]
        spec = models[0].spec
        params, buffers = stack_module_state(models)
        base = copy.deepcopy(models[0]).to("meta")
        if dtype is not None:
            _norms_in_fp32(base)
        weights = torch.stack(
            [torch.from_numpy(_class_weights(y[f.train_idx], num_classes, config)) for f in folds]
        ).to(device)

        def logits_of(p: dict, b: dict, xb: torch.Tensor) -> torch.Tensor:
            with autocast(device, dtype):
                return functional_call(base, (p, b), (xb,))

        def loss_of(p: dict, b: dict, xb: torch.Tensor, yb: torch.Tensor, w: torch.Tensor):
            return _fold_loss(logits_of(p, b, xb), yb, w, config)

        def mixed_loss_of(p: dict, b: dict, xb, yb, w, y_other: torch.Tensor, lam: torch.Tensor):
            def fold_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                return _fold_loss(logits, target, w, config)

            return mixup_loss(fold_loss, logits_of(p, b, xb), yb, y_other, lam)

        mixing = config.augment_mixup > 0
        step_grads = vmap(grad(mixed_loss_of if mixing else loss_of), randomness="different")
        optimizer = make_adam(params.values(), config.lr, config.weight_decay, config.fused_adam)
        generators = [torch.Generator().manual_seed(config.seed + f.index) for f in folds]
        flow, magnitude = _flow_channels(spec) if config.augment_affine else (None, ())
        train_idx = [torch.from_numpy(np.asarray(f.train_idx, dtype=np.int64)) for f in folds]
        streams = [
            _Stream(y_all[idx], g, config.sampling)
            for idx, g in zip(train_idx, generators, strict=True)
        ]

        state = checkpoints.for_folds(folds) if checkpoints is not None else None
        saved = state.load() if state is not None else None
        with (
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
            warnings.catch_warnings(),
        ):
            # vmap falls back to a per-fold loop for attention on the CPU; correct, and said here
            warnings.filterwarnings("ignore", message="There is a performance drop")
            torch.manual_seed(config.seed)  # dropout masks
            training = _Progress(params, buffers, optimizer, generators, streams, device)
            start = training.restore(saved) if saved is not None else 0
            bar = tqdm(
                range(start, steps),
                desc=f"{len(folds)} folds",
                initial=start,
                total=steps,
                disable=not progress,
            )
            for step in bar:
                picks = [
                    idx[stream.take(batch)] for idx, stream in zip(train_idx, streams, strict=True)
                ]
                xb, yb, *extra = fold_batches(
                    x_all, y_all, picks, generators, config, spec, flow, magnitude
                )
                grads = step_grads(params, buffers, xb, yb, weights, *extra)
                for name, p in params.items():
                    p.grad = grads[name]
                optimizer.step()
                if state is not None and step + 1 < steps and state.due():
                    state.save(lambda step=step: training.state(step + 1))

        return [
            _unstacked(model_name, num_classes, model_kwargs, {**params, **buffers}, f)
            for f in range(len(folds))
        ]


def predict_folds(
    models: Sequence[nn.Module], X: np.ndarray, folds: Sequence[Fold]
) -> list[np.ndarray]:
    """Each fold's model on its own test samples: (n_test, K) probabilities per fold."""
    return [predict_proba(m, X[f.test_idx]) for m, f in zip(models, folds, strict=True)]
