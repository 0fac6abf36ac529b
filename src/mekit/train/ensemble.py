"""Train all folds of a cross-validation at once, as one batched ensemble.

`run_loso_ensemble` trains the F fold models of a LOSO run (or any folds) simultaneously and
returns the same `LosoResult` as `mekit.train.loso.run_loso`, so reports work unchanged. The F
models' parameters are stacked with a leading fold dimension and every optimisation step
advances all folds together, but each fold only ever sees its own data:

- fold f trains on its own `train_idx`, in its own mini-batches, shuffled and flipped by its
  own `torch.Generator` seeded `config.seed + f.index` with the same draws as `fit` (so the
  batch order and flips are exactly those of the plain loop), from the same initial weights
  (`create_model` under `torch.manual_seed(config.seed + f.index)`, then `train.init_from`'s
  tensors where it names a model file);
- BatchNorm statistics are computed per fold over that fold's real batch only (padding slots
  of shorter batches are never read);
- the loss (cross-entropy or focal, class weights counted on the fold's own training labels)
  and Adam (step counts, moments) are per fold.

Dropout masks come from a per-fold counter-based stream (splitmix64 keys, murmur3 mixing)
seeded from `config.seed + f.index`: results are deterministic for a given seed, identical
whatever the thread count, and the same in both backends, but not draw for draw those of
`fit` (torch's global RNG); with dropout 0 (`model_kwargs={"dropout": 0.0}`) the ensemble
reproduces the plain loop up to float rounding.

Backends: "native" is a fused C kernel, compiled on first use with the system C compiler
($CC, else gcc/cc; -O3 -march=native, AVX2/FMA through GCC vector extensions) and cached in
$MEKIT_ENSEMBLE_KERNEL_DIR or ~/.cache/mekit/kernels. Each thread trains whole folds: a
forward pass fusing convolution, ReLU, batch statistics and window selection that keeps only
the ReLU output; the pooled head, loss and a closed-form BatchNorm/max-pool backward; the
weight gradient in a second pass; Adam. "torch" is the same step in plain PyTorch (grouped
convolution over folds, autograd): slower, used where no compiler works (or with
MEKIT_ENSEMBLE_NATIVE=0). "auto" picks native when it builds.

Supported: model "ststnet" (default stream widths; any dropout), selection "fixed", loss "ce"
or "focal", class_weights "none"/"balanced", focal_alpha, weight_decay, augment_flip. Anything
else raises `MekitError` pointing to the plain loop (`run_loso` / `run_folds`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mekit.errors import MekitError
from mekit.fileio import atomic_write
from mekit.models import create_model
from mekit.procs import usable_cpus
from mekit.train.augment import hflip
from mekit.train.device import autocast_dtype, resolve_device
from mekit.train.estimators import AllFoldsNetworks
from mekit.train.group_state import GroupCheckpoints, GroupState
from mekit.train.loop import TrainConfig, _batches
from mekit.train.loso import LosoResult, cross_validate
from mekit.train.losses import balanced_class_weights
from mekit.train.splits import Fold
from mekit.train.warm_start import transfer_weights

log = logging.getLogger(__name__)

ENSEMBLE_MODELS: tuple[str, ...] = ("ststnet",)
BACKENDS: tuple[str, ...] = ("auto", "native", "torch")
Backend = Literal["auto", "native", "torch"]

# STSTNet geometry the kernel is written for: 3 x 28 x 28 input, padding 2 (-> 32 x 32),
# 16 conv channels (streams 3 + 5 + 8) on 30 x 30, 10 x 10 after max-pool, 5 x 5 after avg-pool.
_CHANNELS, _SIZE, _PAD, _WIDTH = 3, 28, 2, 16
_NFEAT = _WIDTH * 5 * 5
_OFF_B, _OFF_G, _OFF_BE, _OFF_L = 432, 448, 464, 480
_KERNEL_ENV = "MEKIT_ENSEMBLE_KERNEL_DIR"

# The fused training step in C (ensemble_kernel.c beside this file, shipped as package data).
_KERNEL_SOURCE = resources.files("mekit.train").joinpath("ensemble_kernel.c").read_text()


# ---- the native kernel: build once, cache, load --------------------------------------------


def _c_fields(ctype: type, names: str) -> list[tuple[str, type]]:
    """(name, ctype) per space-separated name, as C declares several fields of one type."""
    return [(name, ctype) for name in names.split()]


class _EnsArgs(ctypes.Structure):
    """Mirror of the kernel's EnsArgs: its fields in its order, pointers as void pointers."""

    _fields_ = [
        *_c_fields(ctypes.c_int32, "F K N Bmax P nthreads loss_kind train"),
        *_c_fields(
            ctypes.c_float,
            "focal_gamma dropout_p lr beta1 beta2 adam_eps weight_decay bn_eps bn_momentum",
        ),
        *_c_fields(ctypes.c_int32, "pad_"),
        *_c_fields(ctypes.c_void_p, "xp labels idx flip bsz params adam_m adam_v adam_step"),
        *_c_fields(ctypes.c_void_p, "running class_w rng loss_out grad_out scratch"),
        *_c_fields(ctypes.c_int64, "scratch_floats"),
    ]


_ABI_VERSION = 4
_kernel_lock = threading.Lock()
_kernel: ctypes.CDLL | None = None
_kernel_error: str | None = None


def _cpu_fingerprint() -> str:
    """What -march=native depends on: a cached build must not run on a different CPU."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "model name", "Features", "CPU part")):
                    text += line
                    if line.startswith(("flags", "Features")):
                        break
    except OSError:
        pass
    return text


def _kernel_dirs() -> list[Path]:
    """Where the compiled kernel is cached: $MEKIT_ENSEMBLE_KERNEL_DIR, else the user cache,
    else (not writable) a per-user temporary directory."""
    if os.environ.get(_KERNEL_ENV):
        return [Path(os.environ[_KERNEL_ENV])]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    user = getattr(os, "getuid", lambda: "user")()
    return [
        Path(base) / "mekit" / "kernels",
        Path(tempfile.gettempdir()) / f"mekit-kernels-{user}",
    ]


def _compile(cc: list[str], flags: list[str], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mekit-kernel-") as tmp:
        src = Path(tmp) / "ensemble.c"
        src.write_text(_KERNEL_SOURCE)
        lib = Path(tmp) / "ensemble.so"
        proc = subprocess.run(
            [*cc, *flags, str(src), "-o", str(lib), "-lm"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cc)} failed: {proc.stderr.strip()[-2000:]}")
        # Atomic: a concurrent process sees no library or the complete one.
        atomic_write(out, lambda tmp_out: shutil.copyfile(lib, tmp_out))


def _build_kernel() -> ctypes.CDLL:
    cc_env = os.environ.get("CC")
    cc = shlex.split(cc_env) if cc_env else [shutil.which("gcc") or shutil.which("cc") or "cc"]
    if shutil.which(cc[0]) is None:
        raise RuntimeError(f"no C compiler found (tried {cc[0]!r}; set CC)")
    base = ["-O3", "-ffp-contract=fast", "-fPIC", "-shared", "-pthread", "-std=gnu11"]
    errors = []
    for flags in (["-march=native", *base], base):
        key = hashlib.sha256(
            "\0".join([_KERNEL_SOURCE, *cc, *flags, _cpu_fingerprint()]).encode()
        ).hexdigest()[:20]
        lib = None
        for directory in _kernel_dirs():
            path = directory / f"ensemble-{key}.so"
            try:
                if not path.exists():
                    log.info("compiling the ensemble kernel to %s", path)
                    _compile(cc, flags, path)
                lib = ctypes.CDLL(str(path))
                break
            except OSError as e:  # unwritable directory, unloadable file: try the next
                errors.append(f"{path}: {e}")
            except (RuntimeError, subprocess.SubprocessError) as e:  # the compiler failed
                errors.append(str(e))
                break
        if lib is None:
            continue
        if lib.ens_abi_version() != _ABI_VERSION or lib.ens_args_size() != ctypes.sizeof(_EnsArgs):
            errors.append(f"{path}: kernel ABI mismatch")
            continue
        lib.ens_step.argtypes = [ctypes.POINTER(_EnsArgs)]
        lib.ens_step.restype = ctypes.c_int
        lib.ens_scratch_floats.argtypes = [ctypes.c_int32, ctypes.c_int32]
        lib.ens_scratch_floats.restype = ctypes.c_int64
        return lib
    raise RuntimeError("; ".join(errors))


def native_kernel_available() -> bool:
    """Whether the fused C kernel builds and loads here (builds it on first call)."""
    return _load_kernel() is not None


def _load_kernel() -> ctypes.CDLL | None:
    global _kernel, _kernel_error
    with _kernel_lock:
        if _kernel is None and _kernel_error is None:
            if os.environ.get("MEKIT_ENSEMBLE_NATIVE", "1") == "0":
                _kernel_error = "disabled by MEKIT_ENSEMBLE_NATIVE=0"
            else:
                try:
                    _kernel = _build_kernel()
                except Exception as e:  # any build problem: fall back to torch
                    _kernel_error = str(e) or type(e).__name__
        return _kernel


# ---- parameters: one flat vector per fold ------------------------------------------------


def _parts(model: torch.nn.Module) -> tuple[list[torch.nn.Conv2d], list[torch.nn.BatchNorm2d]]:
    convs = [stream[0][0] for stream in model.streams]
    bns = [stream[0][2] for stream in model.streams]
    return convs, bns


def _check_architecture(model: torch.nn.Module, num_classes: int) -> tuple[float, float, float]:
    """(dropout, bn_eps, bn_momentum) of an STSTNet the kernel can train; raises otherwise."""
    try:
        convs, bns = _parts(model)
        drops = {float(stream[2].p) for stream in model.streams}
        ok = (
            sum(c.out_channels for c in convs) == _WIDTH
            and all(
                c.in_channels == _CHANNELS
                and c.kernel_size == (3, 3)
                and c.padding == (_PAD, _PAD)
                and c.stride == (1, 1)
                and c.bias is not None
                for c in convs
            )
            and all(b.affine and b.track_running_stats and b.momentum is not None for b in bns)
            and len({(b.eps, b.momentum) for b in bns}) == 1
            and len(drops) == 1
            and model.classifier.in_features == _NFEAT
            and model.classifier.out_features == num_classes
        )
    except (AttributeError, IndexError, TypeError):
        ok = False
    if not ok:
        raise MekitError(
            "the ensemble trainer supports STSTNet with stream widths summing to 16 (default "
            "3, 5, 8) on 3 x 28 x 28 input; use run_loso (the plain loop) for other variants"
        )
    return drops.pop(), float(bns[0].eps), float(bns[0].momentum)


def _param_size(num_classes: int) -> int:
    """Floats per fold in the kernel's parameter layout (padded to 64-byte rows)."""
    return -(-(_OFF_L + num_classes * (_NFEAT + 1)) // 16) * 16


def _pack(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(parameter vector (P,), running stats (32,)) of an STSTNet, in the kernel's layout."""
    convs, bns = _parts(model)
    with torch.no_grad():
        weight = torch.cat([c.weight for c in convs]).reshape(_WIDTH, 27).t()
        vec = torch.cat(
            [
                weight.reshape(-1),
                torch.cat([c.bias for c in convs]),
                torch.cat([b.weight for b in bns]),
                torch.cat([b.bias for b in bns]),
                # [k][cell][c]: channels-last, like the kernel's feature map
                model.classifier.weight.reshape(-1, _WIDTH, 25).transpose(1, 2).reshape(-1),
                model.classifier.bias,
            ]
        )
        running = torch.cat(
            [torch.cat([b.running_mean for b in bns]), torch.cat([b.running_var for b in bns])]
        )
    vec = F.pad(vec.float(), (0, _param_size(model.classifier.out_features) - len(vec)))
    return vec.contiguous(), running.float().contiguous()


def _unpack(model: torch.nn.Module, vec: torch.Tensor, running: torch.Tensor, steps: int) -> None:
    """Load a kernel-layout parameter vector and running stats into an STSTNet, in place."""
    convs, bns = _parts(model)
    k = model.classifier.out_features
    weight = vec[:_OFF_B].reshape(27, _WIDTH).t().reshape(_WIDTH, _CHANNELS, 3, 3)
    with torch.no_grad():
        start = 0
        for conv, bn in zip(convs, bns, strict=True):
            end = start + conv.out_channels
            conv.weight.copy_(weight[start:end])
            conv.bias.copy_(vec[_OFF_B + start : _OFF_B + end])
            bn.weight.copy_(vec[_OFF_G + start : _OFF_G + end])
            bn.bias.copy_(vec[_OFF_BE + start : _OFF_BE + end])
            bn.running_mean.copy_(running[start:end])
            bn.running_var.copy_(running[_WIDTH + start : _WIDTH + end])
            bn.num_batches_tracked.fill_(steps)
            start = end
        lin = vec[_OFF_L : _OFF_L + k * _NFEAT].reshape(k, 25, _WIDTH).transpose(1, 2)
        model.classifier.weight.copy_(lin.reshape(k, _NFEAT))
        model.classifier.bias.copy_(vec[_OFF_L + k * _NFEAT : _OFF_L + k * _NFEAT + k])


_MASK64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15


def _mix64(z: int) -> int:
    """splitmix64's output function (a bijective 64-bit mix)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _dropout_seed(seed: int) -> int:
    """Initial state of a fold's dropout stream (decorrelated for consecutive seeds)."""
    return _mix64((seed * _GOLDEN64 + 0x632BE59BD9B4E019) & _MASK64)


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _dropout_scales(state: int, samples: int, p: float) -> tuple[np.ndarray, int]:
    """The kernel's dropout draws: (samples, 100, 16) float32 scales (0 or 1 / (1 - p)) per
    pooled value (window, channel) and the advanced stream state.

    Per sample a 64-bit key from the fold's splitmix64 stream, then 800 words
    h_i = fmix32(i * 0x9E3779B9 + key_lo) ^ key_hi; word 8 w + l gives channel l of window w
    (its low 16 bits) and channel 8 + l (its high 16 bits), kept when below
    round((1 - p) 2^16).
    """
    p32 = np.float32(p)
    threshold = np.uint32(int(np.floor((1.0 - float(p32)) * 65536.0 + 0.5)))
    scale = np.float32(1.0) / (np.float32(1.0) - p32)
    keys = []
    for _ in range(samples):
        state = (state + _GOLDEN64) & _MASK64
        keys.append(_mix64(state))
    key = np.asarray(keys, dtype=np.uint64).reshape(samples, 1)
    lo = (key & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hi = (key >> np.uint64(32)).astype(np.uint32)
    with np.errstate(over="ignore"):
        i = np.arange(800, dtype=np.uint32)[None, :]
        h = _fmix32(i * np.uint32(0x9E3779B9) + lo) ^ hi  # (samples, 800)
    h = h.reshape(samples, 100, 8)
    halves = np.concatenate([h & np.uint32(0xFFFF), h >> np.uint32(16)], axis=2)
    scales = np.where(halves < threshold, scale, np.float32(0.0)).astype(np.float32)
    return scales, state


# ---- trainers: the state of all folds, one step at a time ------------------------------


@dataclasses.dataclass
class _Setup:
    """Everything fixed for a run: data, hyper-parameters, per-fold constants."""

    x2: torch.Tensor  # (N, 2, 3, 28, 28): as given, mirrored
    labels: torch.Tensor  # (N,) int64
    class_w: torch.Tensor  # (F, K) CE weights / focal alpha (ones when none)
    seeds: list[int]  # per fold
    num_classes: int
    config: TrainConfig
    dropout: float
    bn_eps: float
    bn_momentum: float
    threads: int


class _Trainer:
    """Stacked state of F folds: parameters (F, P), Adam moments, steps, running stats."""

    def __init__(self, setup: _Setup, params: torch.Tensor, running: torch.Tensor) -> None:
        self.s = setup
        self.params = params.contiguous()
        self.running = running.contiguous()
        self.adam_m = torch.zeros_like(self.params)
        self.adam_v = torch.zeros_like(self.params)
        self.steps = torch.zeros(len(params), dtype=torch.int64)

    def step(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray) -> np.ndarray:
        """Train every fold with bsz[f] > 0 on its batch idx[f, :bsz[f]] (flip[f] mirrors
        samples); returns each fold's batch loss (0 for skipped folds)."""
        raise NotImplementedError

    def gradients(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray) -> torch.Tensor:
        """(F, P) loss gradients of the current parameters on the given batches, no update."""
        raise NotImplementedError

    def dropout_states(self) -> list[int]:
        """Each fold's dropout stream state (a uint64)."""
        raise NotImplementedError

    def set_dropout_states(self, states: list[int]) -> None:
        raise NotImplementedError

    STATE = ("params", "running", "adam_m", "adam_v", "steps")  # the tensors carried over

    def state(self) -> dict[str, Any]:
        """The stacked training state, copied, to save (`mekit.train.group_state`)."""
        tensors = {name: getattr(self, name).clone() for name in self.STATE}
        return {**tensors, "dropout": self.dropout_states()}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from `state()`, in place (the native kernel holds these tensors' memory)."""
        for name in self.STATE:
            getattr(self, name).copy_(state[name])
        self.set_dropout_states(list(state["dropout"]))


class _NativeTrainer(_Trainer):
    def __init__(
        self,
        setup: _Setup,
        params: torch.Tensor,
        running: torch.Tensor,
        lib: ctypes.CDLL,
        bmax: int,
    ) -> None:
        super().__init__(setup, params, running)
        self.lib = lib
        f, p = self.params.shape
        self.bmax = bmax
        xp = F.pad(setup.x2, (_PAD, _PAD, _PAD, _PAD))  # (N, 2, 3, 32, 32)
        self.xp = xp.contiguous()
        self.labels32 = setup.labels.to(torch.int32).contiguous()
        self.class_w = setup.class_w.float().contiguous()
        states = np.array([_dropout_seed(seed) for seed in setup.seeds], dtype=np.uint64)
        self.rng = torch.from_numpy(states.view(np.int64))  # the kernel reads uint64
        self.loss = torch.zeros(f, dtype=torch.float64)
        self.grad_out = torch.zeros(f, p)
        threads = max(1, min(setup.threads, f))
        per = int(lib.ens_scratch_floats(bmax, setup.num_classes))
        self.scratch = torch.empty(threads * per)
        self.idx = torch.zeros(f, bmax, dtype=torch.int32)
        self.flip = torch.zeros(f, bmax, dtype=torch.uint8)
        self.bsz = torch.zeros(f, dtype=torch.int32)
        cfg = setup.config
        self.args = _EnsArgs(
            F=f,
            K=setup.num_classes,
            N=len(setup.labels),
            Bmax=bmax,
            P=p,
            nthreads=threads,
            loss_kind=0 if cfg.loss == "ce" else 1,
            train=1,
            focal_gamma=cfg.focal_gamma,
            dropout_p=setup.dropout,
            lr=cfg.lr,
            beta1=0.9,
            beta2=0.999,
            adam_eps=1e-8,
            weight_decay=cfg.weight_decay,
            bn_eps=setup.bn_eps,
            bn_momentum=setup.bn_momentum,
            xp=self.xp.data_ptr(),
            labels=self.labels32.data_ptr(),
            idx=self.idx.data_ptr(),
            flip=self.flip.data_ptr(),
            bsz=self.bsz.data_ptr(),
            params=self.params.data_ptr(),
            adam_m=self.adam_m.data_ptr(),
            adam_v=self.adam_v.data_ptr(),
            adam_step=self.steps.data_ptr(),
            running=self.running.data_ptr(),
            class_w=self.class_w.data_ptr(),
            rng=self.rng.data_ptr(),
            loss_out=self.loss.data_ptr(),
            grad_out=self.grad_out.data_ptr(),
            scratch=self.scratch.data_ptr(),
            scratch_floats=per,
        )

    def _run(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray, train: int) -> None:
        self.idx.numpy()[:] = idx
        self.flip.numpy()[:] = flip
        self.bsz.numpy()[:] = bsz
        self.loss.zero_()
        self.args.train = train
        code = self.lib.ens_step(ctypes.byref(self.args))
        if code != 0:
            raise MekitError(f"internal: ensemble kernel failed with code {code}")

    def step(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray) -> np.ndarray:
        self._run(idx, flip, bsz, train=1)
        return self.loss.numpy().copy()

    def dropout_states(self) -> list[int]:
        return [int(v) for v in self.rng.numpy().view(np.uint64)]

    def set_dropout_states(self, states: list[int]) -> None:
        self.rng.numpy().view(np.uint64)[:] = np.array(states, dtype=np.uint64)

    def gradients(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray) -> torch.Tensor:
        self.grad_out.zero_()
        self._run(idx, flip, bsz, train=0)
        return self.grad_out.clone()


class _TorchTrainer(_Trainer):
    """The same step in plain PyTorch: folds in chunks, grouped convolution, autograd."""

    def __init__(self, setup: _Setup, params: torch.Tensor, running: torch.Tensor) -> None:
        super().__init__(setup, params, running)
        self.rng = [_dropout_seed(seed) for seed in setup.seeds]  # the kernel's streams

    def dropout_states(self) -> list[int]:
        return [int(v) for v in self.rng]

    def set_dropout_states(self, states: list[int]) -> None:
        self.rng = [int(v) for v in states]

    def _loss(
        self,
        folds: torch.Tensor,
        theta: torch.Tensor,
        idx: torch.Tensor,
        flip: torch.Tensor,
        bsz: torch.Tensor,
        advance: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-fold losses (Fc,) and batch mean/var (Fc, 16) for folds `folds`; `advance`
        moves the folds' dropout streams on (a training step)."""
        s, k = self.s, self.s.num_classes
        fc, bmax = idx.shape
        valid = torch.arange(bmax)[:, None] < bsz[None, :]  # (Bmax, Fc)
        x = s.x2[idx.long(), flip.long()]  # (Fc, Bmax, 3, 28, 28)
        x = x.transpose(0, 1) * valid[:, :, None, None, None]  # padding slots: zeros
        x = x.reshape(bmax, fc * _CHANNELS, _SIZE, _SIZE)
        weight = theta[:, :_OFF_B].reshape(fc, 27, _WIDTH).transpose(1, 2)
        weight = weight.reshape(fc * _WIDTH, _CHANNELS, 3, 3)
        h = F.conv2d(x, weight, theta[:, _OFF_B:_OFF_G].reshape(-1), padding=_PAD, groups=fc)
        h = torch.relu(h).reshape(bmax, fc, _WIDTH, 30, 30)
        vm = valid.to(h.dtype)[:, :, None, None, None]
        count = (bsz.to(h.dtype) * 900)[:, None]  # (Fc, 1)
        mean = (h * vm).sum(dim=(0, 3, 4)) / count
        centred = h - mean[None, :, :, None, None]
        var = (centred.square() * vm).sum(dim=(0, 3, 4)) / count
        scale = torch.rsqrt(var + s.bn_eps) * theta[:, _OFF_G:_OFF_BE]
        y = (
            centred * scale[None, :, :, None, None]
            + theta[:, _OFF_BE:_OFF_L][None, :, :, None, None]
        )
        pooled = F.max_pool2d(y.reshape(bmax, fc * _WIDTH, 30, 30), 3, 3, 1)
        pooled = pooled.reshape(bmax, fc, _WIDTH, 10, 10)
        if s.dropout > 0:
            scales = np.zeros((bmax, fc, 100, _WIDTH), dtype=np.float32)
            for j, f in enumerate(folds.tolist()):
                n = int(bsz[j])
                scales[:n, j], state = _dropout_scales(self.rng[f], n, s.dropout)
                if advance:
                    self.rng[f] = state
            keep = torch.from_numpy(scales).reshape(bmax, fc, 10, 10, _WIDTH)
            pooled = pooled * keep.permute(0, 1, 4, 2, 3)
        feat = F.avg_pool2d(pooled.reshape(bmax, fc * _WIDTH, 10, 10), 2)
        feat = feat.reshape(bmax, fc, _NFEAT)
        lin_w = theta[:, _OFF_L : _OFF_L + k * _NFEAT].reshape(fc, k, 25, _WIDTH)
        lin_w = lin_w.transpose(2, 3).reshape(fc, k, _NFEAT)
        lin_b = theta[:, _OFF_L + k * _NFEAT : _OFF_L + k * _NFEAT + k]
        logits = torch.einsum("bfj,fkj->bfk", feat, lin_w) + lin_b
        target = s.labels[idx.long()].t()  # (Bmax, Fc)
        logpt = torch.log_softmax(logits, dim=2).gather(2, target[:, :, None]).squeeze(2)
        w = s.class_w[folds][torch.arange(fc)[None, :], target] * valid
        if s.config.loss == "ce":
            loss = -(w * logpt).sum(0) / w.sum(0)
        else:
            focal = -((1.0 - logpt.exp()).clamp_min(0.0) ** s.config.focal_gamma) * logpt
            loss = (w * focal).sum(0) / bsz.to(h.dtype)
        return loss, mean.detach(), var.detach()

    def _chunks(self, active: np.ndarray, bmax: int) -> list[np.ndarray]:
        per = max(1, 2048 // max(bmax, 1))
        return [active[i : i + per] for i in range(0, len(active), per)]

    def _grads(
        self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray, update_running: bool
    ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        grads = torch.zeros_like(self.params)
        losses = np.zeros(len(bsz))
        active = np.flatnonzero(bsz > 0)
        bmax = int(bsz.max()) if len(active) else 0
        for chunk in self._chunks(active, bmax):
            folds = torch.from_numpy(chunk)
            theta = self.params[folds].clone().requires_grad_(True)
            with torch.enable_grad():
                loss, mean, var = self._loss(
                    folds,
                    theta,
                    torch.from_numpy(idx[chunk, :bmax]),
                    torch.from_numpy(flip[chunk, :bmax]),
                    torch.from_numpy(bsz[chunk]),
                    advance=update_running,
                )
                loss.sum().backward()
            grads[folds] = theta.grad
            losses[chunk] = loss.detach().double().numpy()
            if update_running:
                m = torch.as_tensor(bsz[chunk] * 900, dtype=torch.float32)[:, None]
                unbiased = var * m / (m - 1).clamp_min(1)
                mom = self.s.bn_momentum
                run = self.running[folds]
                run[:, :_WIDTH] = (1 - mom) * run[:, :_WIDTH] + mom * mean
                run[:, _WIDTH:] = (1 - mom) * run[:, _WIDTH:] + mom * unbiased
                self.running[folds] = run
        return grads, losses, active

    def step(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            grads, losses, active = self._grads(idx, flip, bsz, update_running=True)
            if len(active):
                self._adam(torch.from_numpy(active), grads)
        return losses

    def gradients(self, idx: np.ndarray, flip: np.ndarray, bsz: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self._grads(idx, flip, bsz, update_running=False)[0]

    def _adam(self, folds: torch.Tensor, grads: torch.Tensor) -> None:
        """torch.optim.Adam's update, per fold (own step count), on folds `folds` only."""
        cfg = self.s.config
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        p, m, v = self.params[folds], self.adam_m[folds], self.adam_v[folds]
        g = grads[folds]
        if cfg.weight_decay:
            g = g + cfg.weight_decay * p
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        self.steps[folds] += 1
        step = self.steps[folds].double()
        step_size = (cfg.lr / (1 - beta1**step)).float()[:, None]
        bc2_sqrt = torch.sqrt(1 - beta2**step).float()[:, None]
        p -= step_size * (m / (v.sqrt() / bc2_sqrt + eps))
        self.params[folds], self.adam_m[folds], self.adam_v[folds] = p, m, v


# ---- the run -----------------------------------------------------------------------------


# The TrainConfig settings the ensemble implements as the plain loop does. Every other setting
# must keep its default or the ensemble refuses the run: a whitelist, so a setting added to
# TrainConfig later is refused until the ensemble learns it (never silently ignored, as
# init_from once was; now every fold's model loads it as fit() does). val_fraction and
# patience only act with selection "val-split", and augment_temporal_jitter only on temporal
# input, so with "fixed" selection and STSTNet's (C, H, W) input the plain loop ignores them.
SUPPORTED_SETTINGS: frozenset[str] = frozenset(
    {
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "loss",
        "focal_gamma",
        "focal_alpha",
        "class_weights",
        "selection",
        "val_fraction",
        "patience",
        "augment_flip",
        "augment_temporal_jitter",
        "seed",
        "init_from",
        "num_threads",
        "device",  # the CPU only, in fp32: checked in unsupported_settings
        "precision",
    }
)


def unsupported_settings(config: TrainConfig) -> list[str]:
    """`train.KEY=value` for each setting of `config` the ensemble cannot train as the plain
    loop would (empty when it can)."""
    default = TrainConfig()
    out = [
        f"train.{f.name}={getattr(config, f.name)!r}"
        for f in dataclasses.fields(TrainConfig)
        if f.name not in SUPPORTED_SETTINGS and getattr(config, f.name) != getattr(default, f.name)
    ]
    if config.selection != "fixed":
        out.append(f"train.selection={config.selection!r}")
    device = resolve_device(config.device)
    if device.type != "cpu":
        out.append(f"train.device={config.device!r} (the fused kernel runs on the CPU)")
    elif autocast_dtype(config.precision, device) is not None:
        out.append(f"train.precision={config.precision!r} (the fused kernel computes in fp32)")
    return out


def _check_config(config: TrainConfig) -> None:
    unsupported = unsupported_settings(config)
    if unsupported:
        raise MekitError(
            f"the ensemble trainer cannot train with {', '.join(unsupported)}; use the plain "
            "per-fold loop (--engine plain), which implements every setting"
        )


@dataclasses.dataclass(frozen=True)
class EnsembleFit:
    """Trained fold models (eval mode, in fold order) and their per-epoch histories."""

    models: list[torch.nn.Module]
    histories: list[list[dict[str, float]]]
    backend: str


def _checked_inputs(
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    num_classes: int,
    config: TrainConfig,
    model_name: str,
    backend: str,
) -> tuple[np.ndarray, np.ndarray, list[Fold], list[int]]:
    """(X float32, y int64, folds, training-set sizes), or a MekitError naming what the fused
    ensemble cannot train."""
    if model_name not in ENSEMBLE_MODELS:
        raise MekitError(
            f"the ensemble trainer supports models {', '.join(ENSEMBLE_MODELS)}, not "
            f"{model_name!r}; use run_loso (the plain per-fold loop) for other models"
        )
    if backend not in BACKENDS:
        raise MekitError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    _check_config(config)
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if X.shape[1:] != (_CHANNELS, _SIZE, _SIZE) or len(X) != len(y):
        raise MekitError(
            f"the ensemble trainer wants X of shape (N, 3, 28, 28) and N labels, got "
            f"{tuple(X.shape)} and {len(y)}"
        )
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise MekitError(f"y must hold class indices 0..{num_classes - 1}")
    folds = list(folds)
    if not folds:
        raise MekitError("no folds to train")
    if config.focal_alpha is not None and len(config.focal_alpha) != num_classes:
        raise MekitError(
            f"train.focal_alpha has {len(config.focal_alpha)} values for {num_classes} "
            "classes; give one per class, in label order"
        )
    sizes = [len(fold.train_idx) for fold in folds]
    for fold, n in zip(folds, sizes, strict=True):
        idx = np.asarray(fold.train_idx)
        if n and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= len(y)):
            raise MekitError(
                f"fold {fold.test_subject!r}: train indices must be positions 0..{len(y) - 1}"
            )
        if n < 2:
            raise MekitError(
                f"fold {fold.test_subject!r} has {n} training sample(s); BatchNorm needs 2"
            )
    return X, y, folds, sizes


def _fold_class_weights(
    y: np.ndarray, folds: Sequence[Fold], num_classes: int, config: TrainConfig
) -> np.ndarray:
    """(F, K) class weights, each fold's from its own training labels (or focal alpha)."""
    class_w = np.ones((len(folds), num_classes), dtype=np.float32)
    for f, fold in enumerate(folds):
        if config.class_weights == "balanced":
            class_w[f] = balanced_class_weights(y[fold.train_idx], num_classes)
        elif config.focal_alpha is not None:
            class_w[f] = np.asarray(config.focal_alpha, dtype=np.float32)
    return class_w


def _backend(backend: str, threads: int | None, config: TrainConfig) -> tuple[Any, int]:
    """(the native kernel library, or None for the torch backend; the thread count)."""
    lib = _load_kernel() if backend in ("auto", "native") else None
    if backend == "native" and lib is None:
        raise MekitError(f"the native ensemble kernel is unavailable: {_kernel_error}")
    if lib is None and backend == "auto":
        log.warning(
            "native ensemble kernel unavailable (%s); training with the slower torch backend",
            _kernel_error,
        )
    if threads is None:
        # native: one fold per thread, so every CPU; torch: intra-op threads, which slow down
        # badly on oversubscribed CPUs, so as many as the plain loop uses (num_threads)
        threads = usable_cpus() if lib is not None else config.num_threads
    return lib, threads


def fit_fold_ensemble(
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    num_classes: int,
    config: TrainConfig,
    model_name: str = "ststnet",
    model_kwargs: Mapping[str, Any] | None = None,
    threads: int | None = None,
    backend: Backend = "auto",
    progress: bool = False,
    state: GroupState | None = None,
) -> EnsembleFit:
    """Train one model per fold on X[fold.train_idx], all folds at once; no prediction.

    Fold f starts from the weights fit() would draw with seed `config.seed + f.index` and
    draws its batches and flips as fit() does. See `run_loso_ensemble` for the arguments;
    `state`: where the training saves its progress at epoch ends, and continues from (the
    caller removes it once it has kept the result).
    """
    X, y, folds, sizes = _checked_inputs(X, y, folds, num_classes, config, model_name, backend)
    if threads is not None and threads < 1:
        raise MekitError(f"threads must be at least 1, got {threads}")
    # Per-fold initial weights, exactly as fit() draws them.
    seeds = [config.seed + fold.index for fold in folds]
    models = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models.append(create_model(model_name, num_classes, **dict(model_kwargs or {})))
        if config.init_from:  # as fit() does: the file's tensors over the drawn ones
            transfer_weights(models[-1], config.init_from)
    dropout, bn_eps, bn_momentum = _check_architecture(models[0], num_classes)
    packed, runs = zip(*(_pack(model) for model in models), strict=True)
    lib, threads = _backend(backend, threads, config)

    x = torch.from_numpy(X)
    setup = _Setup(
        x2=torch.stack([x, hflip(x, models[0].spec.u_channel)], dim=1).contiguous(),
        labels=torch.from_numpy(y),
        class_w=torch.from_numpy(_fold_class_weights(y, folds, num_classes, config)),
        seeds=seeds,
        num_classes=num_classes,
        config=config,
        dropout=dropout,
        bn_eps=bn_eps,
        bn_momentum=bn_momentum,
        threads=threads,
    )
    bmax = max(max(len(c) for c in _batches(torch.arange(n), config.batch_size)) for n in sizes)
    params, running = torch.stack(packed), torch.stack(runs)
    trainer: _Trainer = (
        _NativeTrainer(setup, params, running, lib, bmax)
        if lib is not None
        else _TorchTrainer(setup, params, running)
    )
    used = "native" if lib is not None else "torch"
    log.info(
        "ensemble %s: %d samples, %d folds, %s backend, %d threads",
        model_name,
        len(y),
        len(folds),
        used,
        threads,
    )
    histories = _train(trainer, folds, config, bmax, progress, model_name, state)
    for f, model in enumerate(models):
        _unpack(model, trainer.params[f], trainer.running[f], int(trainer.steps[f]))
        model.eval()
    return EnsembleFit(models=models, histories=histories, backend=used)


def run_loso_ensemble(
    X: np.ndarray,
    y: np.ndarray,
    subjects: Sequence[str],
    ids: Sequence[str],
    labels: Sequence[str],
    config: TrainConfig,
    model_name: str = "ststnet",
    progress: bool = True,
    folds: Sequence[Fold] | None = None,
    *,
    model_kwargs: Mapping[str, Any] | None = None,
    threads: int | None = None,
    backend: Backend = "auto",
) -> LosoResult:
    """Train every fold's model at once (see the module docstring) and predict its test set.

    X: (N, 3, 28, 28) float32 u/v/strain flow images; y: (N,) class indices into `labels`;
    subjects, ids: one string per sample (ids unique). folds: default leave-one-subject-out
    (`loso_folds(subjects)`); any protocol's folds may be passed (same rules as `run_folds`).
    Fold i uses seed `config.seed + i`, as in `run_loso`.

    model_kwargs: STSTNet options (e.g. dropout). threads: CPU threads; the native backend
    trains folds side by side, one thread each (default: all usable CPUs), so its results do
    not depend on the count; the torch backend uses them as torch intra-op threads (default
    `config.num_threads`), whose float sums may depend on it. backend: "native" (fused
    C kernel), "torch", or "auto" (native when a C compiler can build it, else torch with a
    warning). Returns a `LosoResult` like `run_loso`: every fold keeps its last epoch
    (best_epoch = epochs); histories hold the training loss per epoch.
    """
    trainer = KernelTrainer(
        model_name, len(labels), config, dict(model_kwargs or {}), threads, backend
    )
    return cross_validate(
        X,
        y,
        subjects,
        ids,
        labels,
        trainer,
        folds,
        progress=progress,
        desc=f"ensemble {model_name}",
    )


@dataclasses.dataclass(frozen=True)
class KernelTrainer(AllFoldsNetworks):
    """The fold runner's trainer for the fused STSTNet ensemble (`fit_fold_ensemble`), with
    each fold's training loss per epoch. The thread count is not part of its description: the
    native backend's results do not depend on it."""

    threads: int | None = dataclasses.field(default=None, compare=False)
    backend: Backend = "auto"
    engine = "kernel"

    def _fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        folds: list[Fold],
        progress: bool,
        checkpoints: GroupCheckpoints | None = None,
    ) -> tuple[list[torch.nn.Module], list[list[dict[str, float]]]]:
        state = checkpoints.for_folds(folds) if checkpoints is not None else None
        fitted = fit_fold_ensemble(
            X,
            y,
            folds,
            self.num_classes,
            self.config,
            model_name=self.model_name,
            model_kwargs=self.model_kwargs,
            threads=self.threads,
            backend=self.backend,
            progress=progress,
            state=state,
        )
        return fitted.models, fitted.histories

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        del described["threads"]
        return described


def _train(
    trainer: _Trainer,
    folds: list[Fold],
    config: TrainConfig,
    bmax: int,
    progress: bool,
    model_name: str,
    state: GroupState | None = None,
) -> list[list[dict[str, float]]]:
    """All epochs of all folds; returns per-fold histories (epoch, train_loss). With `state`,
    the progress is saved at an epoch's end when due, and a saved one is continued."""
    n_folds = len(folds)
    generators = [torch.Generator().manual_seed(config.seed + fold.index) for fold in folds]
    train_idx = [np.asarray(fold.train_idx, dtype=np.int64) for fold in folds]
    histories: list[list[dict[str, float]]] = [[] for _ in folds]
    done = 0
    saved = state.load() if state is not None else None
    if saved is not None:
        trainer.restore(saved["trainer"])
        for g, generator_state in zip(generators, saved["generators"], strict=True):
            g.set_state(generator_state)
        histories, done = saved["histories"], int(saved["step"])
    idx = np.zeros((n_folds, bmax), dtype=np.int32)
    flip = np.zeros((n_folds, bmax), dtype=np.uint8)
    bsz = np.zeros(n_folds, dtype=np.int32)
    threads = torch.get_num_threads()
    torch.set_num_threads(trainer.s.threads)
    bar = tqdm(
        total=config.epochs,
        initial=done,
        desc=f"ensemble {model_name} x{n_folds}",
        unit="epoch",
        disable=not progress,
    )
    try:
        for epoch in range(done + 1, config.epochs + 1):
            # The draws of fit(): randperm per epoch, then one rand(B) per batch for flips.
            plans = []
            for f in range(n_folds):
                g = generators[f]
                chunks = _batches(torch.randperm(len(train_idx[f]), generator=g), config.batch_size)
                flips = [
                    (torch.rand(len(c), generator=g) < 0.5).numpy()
                    if config.augment_flip
                    else np.zeros(len(c), dtype=bool)
                    for c in chunks
                ]
                plans.append((chunks, flips))
            totals = np.zeros(n_folds)
            for s in range(max(len(chunks) for chunks, _ in plans)):
                bsz[:] = 0
                for f, (chunks, flips) in enumerate(plans):
                    if s < len(chunks):
                        n = len(chunks[s])
                        idx[f, :n] = train_idx[f][chunks[s].numpy()]
                        idx[f, n:] = 0
                        flip[f, :n] = flips[s]
                        flip[f, n:] = 0
                        bsz[f] = n
                losses = trainer.step(idx, flip, bsz)
                totals += losses * bsz
            for f in range(n_folds):
                histories[f].append(
                    {"epoch": epoch, "train_loss": float(totals[f] / len(train_idx[f]))}
                )
            bar.update()
            if state is not None and epoch < config.epochs and state.due():
                state.save(
                    lambda epoch=epoch: {
                        "step": epoch,  # epochs done
                        "trainer": trainer.state(),
                        "generators": [g.get_state() for g in generators],
                        "histories": histories,
                    }
                )
    finally:
        bar.close()
        torch.set_num_threads(threads)
    return histories
