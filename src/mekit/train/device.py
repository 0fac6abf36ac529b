"""Where training runs, in which precision and memory layout: `train.device`,
`train.precision` and `train.memory_format`.

"auto" picks a CUDA GPU when torch sees one, else Apple's MPS, else the CPU; the precision
"auto" is bf16 autocast on a GPU that supports it (fp16 with loss scaling on one that does not)
and fp32 everywhere else, so CPU runs give the same results as before these settings existed.
mekit never installs or replaces torch: whatever build the environment holds (CPU, CUDA, MPS)
is the one used.

The memory layout "auto" trains channels-last (NHWC; NDHWC for 3-D convolutions) the networks
whose `ModelSpec` says it pays (`channels_last`: MobileViTv3 and the ResNet18s, 1.2-1.25x
faster per training step on one CPU thread by `benchmarks/memory_format.py`, the clip networks
1.15-1.48x; STSTNet is 0.8x there) and keeps every other network as it was, float for float.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from mekit.config import Choice
from mekit.errors import MekitError

if TYPE_CHECKING:
    from mekit.models.registry import ModelSpec

DEVICES = ("auto", "cpu", "cuda", "mps")


class Precision(Choice):
    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


PRECISIONS: tuple[str, ...] = tuple(p.value for p in Precision)


class MemoryFormat(Choice):
    AUTO = "auto"
    CONTIGUOUS = "contiguous"
    CHANNELS_LAST = "channels_last"


def memory_format(choice: str, spec: ModelSpec) -> torch.memory_format:
    """The layout training keeps `spec`'s inputs and convolution weights in: channels-last for
    "channels_last" (channels_last_3d for (C, T, H, W) inputs), and for "auto" where
    `spec.channels_last`; torch's default (contiguous) otherwise."""
    if choice not in tuple(MemoryFormat):
        formats = ", ".join(MemoryFormat)
        raise MekitError(f"train.memory_format {choice!r} is not one of {formats}")
    if choice == "contiguous" or (choice == "auto" and not spec.channels_last):
        return torch.contiguous_format
    return torch.channels_last if len(spec.input_shape) == 3 else torch.channels_last_3d


def to_memory_format(module: nn.Module, layout: torch.memory_format) -> nn.Module:
    """`module`, in place, with every 4-D and 5-D parameter and buffer in `layout`'s family:
    for a channels-last layout, 2-D convolution weights channels_last and 3-D ones
    channels_last_3d (so a network running a 2-D CNN over the frames of a (C, T, H, W) input
    converts too, where `nn.Module.to` would refuse the mix); contiguous otherwise."""
    nhwc = layout in (torch.channels_last, torch.channels_last_3d)
    formats = {
        4: torch.channels_last if nhwc else torch.contiguous_format,
        5: torch.channels_last_3d if nhwc else torch.contiguous_format,
    }

    def convert(t: torch.Tensor) -> torch.Tensor:
        # `to` re-strides a tensor that is both (a 1x1 kernel), as `nn.Module.to` does:
        # convolutions pick their output's layout from the weight's strides
        return t.to(memory_format=formats[t.dim()]) if t.dim() in formats else t

    return module._apply(convert)  # what `nn.Module.to` runs, with one format per rank


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """The torch device for `name` (one of DEVICES, or e.g. "cuda:1"); a device this torch build
    or machine lacks is an error that says which torch would have it."""
    base = name.split(":", 1)[0]
    if base not in DEVICES:
        raise MekitError(f"train.device {name!r} is not one of {', '.join(DEVICES)}")
    if base == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise MekitError(
            f"train.device {name!r}: this torch ({torch.__version__}) sees no CUDA GPU; install "
            "a CUDA build of torch on a machine with one, or use --device cpu"
        )
    if base == "mps" and not _mps_available():
        raise MekitError(f"train.device {name!r}: MPS is not available here; use --device cpu")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device` (None: plain fp32)."""
    if precision not in PRECISIONS:
        raise MekitError(f"train.precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and precision == "fp16":
        raise MekitError("train.precision fp16 needs a GPU; on the CPU use fp32 or bf16")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def check_hardware(device: str, precision: str) -> None:
    """Refuse a `train.device` or `train.precision` this machine or torch build lacks (the
    errors of `resolve_device` and `autocast_dtype`): entry points call it before they load
    any data, so the refusal comes in seconds."""
    autocast_dtype(precision, resolve_device(device))


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """The forward pass's autocast context: to `dtype` on `device`, or off when it is None."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """The loss scaler fp16 autocast needs on `device` (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type) if dtype == torch.float16 else None


def backward_and_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
) -> None:
    """Backpropagate `loss` and step `optimizer`, through `scaler` where there is one."""
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def describe(device: torch.device, dtype: torch.dtype | None) -> str:
    """E.g. "cuda (bf16 autocast)" or "cpu (fp32)"."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    if dtype is None:
        return f"{name} (fp32)"
    return f"{name} ({str(dtype).removeprefix('torch.')} autocast)"
