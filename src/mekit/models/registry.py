"""Model registry: a name -> (builder, input spec) table, timm-style.

Each registered model carries a `ModelSpec` that the data pipeline reads (task, input kind,
features, channels, size, frames), so the preprocessing a model needs travels with the model.

    @register_model(ModelSpec(name="ststnet", input_kind="flow", channels=3, size=28, ...))
    def ststnet(num_classes: int, **kw) -> nn.Module: ...

    model = create_model("ststnet", num_classes=3)
    model.spec.size  # 28
    spotter = create_model("softnet")  # a spotting model takes no num_classes
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

import torch
from torch import nn

from mekit.errors import MekitError

log = logging.getLogger(__name__)

InputKind = Literal["flow", "apex", "apex_flow", "flow_sequence", "frames", "apex_flow_sequence"]
INPUT_KINDS: tuple[str, ...] = (
    "flow",
    "apex",
    "apex_flow",
    "flow_sequence",
    "frames",
    "apex_flow_sequence",
)
# Kinds whose input has a time axis: (B, C, T, H, W); the others are (B, C, H, W).
TEMPORAL_KINDS: tuple[str, ...] = ("flow_sequence", "frames", "apex_flow_sequence")
# Names a horizontal flow channel may have (negated by a horizontal flip).
U_NAMES: tuple[str, ...] = ("u", "dx")
# The features each input kind reads unless its spec names others: values of
# `mekit.motion.features.FeatureKind`, spelled out because models may not import mekit.motion.
DEFAULT_FEATURES: dict[str, str] = {
    "flow": "onset_apex",
    "apex": "apex",
    "apex_flow": "apex_flow",
    "flow_sequence": "keyframes",
    "frames": "frames",
    "apex_flow_sequence": "apex_flow_clip",
}


class Task(StrEnum):
    """What a model's output means."""

    RECOGNITION = "recognition"  # (B, num_classes) emotion logits, one softmax
    AU = "au"  # (B, num_AUs) action-unit logits, one sigmoid each
    SPOTTING = "spotting"  # (B,) one expression score per flow window, no classes


# The tasks whose models `create_model(name, num_classes)` builds as classifiers, and the
# models `list_models()` and `mekit models` list by default.
CLASSIFIER_TASKS: tuple[Task, ...] = (Task.RECOGNITION, Task.AU)

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """What a model does and what it expects as input.

    `task`: a `Task` (recognition by default).
    `features`: the `mekit.motion.features.FeatureKind` value the data pipeline computes for
    it (`mekit.train.inputs.feature_config_for`); empty: the default of its input kind
    (`DEFAULT_FEATURES`). A "flow_sequence" model states which: "keyframes" (u, v, strain
    between keyframes) or "flow_clip" (dx, dy, magnitude of a whole clip).
    `input_kind`:
      - "flow": one flow image per sample, (B, C, H, W); channel 0 is u (horizontal flow, px).
      - "apex": one (grey or RGB) face image per sample, (B, C, H, W).
      - "apex_flow": apex appearance and onset->apex flow stacked, (B, C, H, W), channels
        e.g. ("apex", "u", "v", "strain"), the image scaled to [0, 1].
      - "flow_sequence": flow images over time, (B, C, T, H, W) with T = `frames`.
      - "frames": raw face frames over time, (B, C, T, H, W) with T = `frames`.
      - "apex_flow_sequence": the apex image (repeated over T) stacked with the flows of
        neighbouring frames, (B, C, T, H, W), channels e.g. ("apex", "dx", "dy", "magnitude").
    `size` is the square side H = W in pixels. `channel_names` name the C channels in order.
    `channels_last`: training keeps its inputs and convolution weights channels-last (NHWC),
    which oneDNN and cuDNN run faster for this network (`train.memory_format` "auto"; set
    where `benchmarks/memory_format.py` measured it faster in every run on one CPU thread,
    1.15x or more); for (C, T, H, W) inputs, channels_last_3d inputs and 3-D convolution
    weights (2-D ones over the frames channels_last).
    """

    name: str
    input_kind: InputKind
    channels: int
    size: int
    frames: int | None = None
    channel_names: tuple[str, ...] = ()
    description: str = ""
    task: Task = Task.RECOGNITION
    features: str = ""
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"{self.name}: input_kind must be one of {INPUT_KINDS}")
        if self.task not in tuple(Task):
            raise ValueError(
                f"{self.name}: task must be one of {', '.join(Task)}, got {self.task!r}"
            )
        object.__setattr__(self, "task", Task(self.task))
        if not self.features:
            object.__setattr__(self, "features", DEFAULT_FEATURES[self.input_kind])
        if self.channel_names and len(self.channel_names) != self.channels:
            raise ValueError(
                f"{self.name}: {len(self.channel_names)} channel names for {self.channels} channels"
            )
        temporal = self.input_kind in TEMPORAL_KINDS
        if temporal and (self.frames is None or self.frames < 1):
            raise ValueError(f"{self.name}: input_kind {self.input_kind!r} needs frames >= 1")
        if not temporal and self.frames is not None:
            raise ValueError(f"{self.name}: input_kind {self.input_kind!r} takes frames=None")

    def variant(self, name: str, description: str) -> ModelSpec:
        """This spec for another model of the same family and input (timm's variants)."""
        return replace(self, name=name, description=description)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: (C, H, W), or (C, T, H, W) for temporal kinds."""
        if self.input_kind in TEMPORAL_KINDS:
            assert self.frames is not None
            return (self.channels, self.frames, self.size, self.size)
        return (self.channels, self.size, self.size)

    @property
    def u_channel(self) -> int | None:
        """Index of the horizontal flow channel (a horizontal flip must negate it), or None.

        Found by name ("u" or "dx") in `channel_names`; unnamed "flow" and "flow_sequence"
        inputs have u first.
        """
        for i, name in enumerate(self.channel_names):
            if name in U_NAMES:
                return i
        if not self.channel_names and self.input_kind in ("flow", "flow_sequence"):
            return 0
        return None


# The channels of the MEGC-style flow image: horizontal and vertical flow (px), optical strain.
UV_STRAIN: tuple[str, ...] = ("u", "v", "strain")


def uv_strain_channels(spec: ModelSpec) -> tuple[int, ...] | None:
    """Where `spec`'s input channels sit in (u, v, strain), e.g. (0, 1) for a u/v model, when
    it takes one flow image whose channels are all among them; None for any other input."""
    if spec.input_kind != "flow" or not set(spec.channel_names) <= set(UV_STRAIN):
        return None
    return tuple(UV_STRAIN.index(c) for c in spec.channel_names)


def uv_strain_spec(
    name: str,
    size: int,
    description: str,
    *,
    frames: int | None = None,
    task: Task = Task.RECOGNITION,
    channels_last: bool = False,
) -> ModelSpec:
    """The spec of a model on u/v/strain flow, the input most ME models share: one onset->apex
    image (B, 3, size, size) ("onset_apex" features), or with `frames` the flows between
    `frames + 1` keyframes (B, 3, frames, size, size) ("keyframes" features). `channels_last`
    as in `ModelSpec`."""
    return ModelSpec(
        name=name,
        input_kind="flow" if frames is None else "flow_sequence",
        channels=len(UV_STRAIN),
        size=size,
        frames=frames,
        channel_names=UV_STRAIN,
        description=description,
        task=task,
        features="onset_apex" if frames is None else "keyframes",
        channels_last=channels_last,
    )


_REGISTRY: dict[str, tuple[ModelSpec, Builder]] = {}


def register_model(spec: ModelSpec) -> Callable[[Builder], Builder]:
    """Decorator registering `fn(num_classes, **kw) -> nn.Module` under `spec.name`
    (`fn(**kw)` for a spotting model)."""

    def decorate(fn: Builder) -> Builder:
        if spec.name in _REGISTRY:
            raise ValueError(f"model {spec.name!r} is registered twice")
        _REGISTRY[spec.name] = (spec, fn)
        return fn

    return decorate


def _known() -> str:
    return ", ".join(sorted(_REGISTRY)) or "(none)"


def get_spec(name: str) -> ModelSpec:
    """The input spec of model `name`; `MekitError` listing the known names if unknown."""
    try:
        return _REGISTRY[name][0]
    except KeyError:
        raise MekitError(f"unknown model {name!r}; known models: {_known()}") from None


def list_models(
    task: Task | str | Iterable[Task | str] | None = CLASSIFIER_TASKS,
) -> list[ModelSpec]:
    """Specs of the registered models of `task` (one, several, or None for every task), sorted
    by name. The default is the classifiers (`CLASSIFIER_TASKS`), what `mekit models` lists."""
    if task is None:
        wanted = set(Task)
    else:
        names = [task] if isinstance(task, str) else list(task)
        unknown = [t for t in names if t not in tuple(Task)]
        if unknown:
            raise MekitError(f"unknown task {unknown[0]!r}; tasks: {', '.join(Task)}")
        wanted = {Task(t) for t in names}
    return [_REGISTRY[n][0] for n in sorted(_REGISTRY) if _REGISTRY[n][0].task in wanted]


class InputCheck:
    """Forward pre-hook raising `MekitError` when an input does not match the model's spec.

    A class rather than a closure so that models stay picklable (process pools, deepcopy).
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def __call__(self, module: nn.Module, args: tuple[object, ...]) -> None:
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor):
            return
        want = self.spec.input_shape
        if x.dim() != len(want) + 1 or tuple(x.shape[1:]) != want:
            raise MekitError(
                f"model {self.spec.name!r} takes input (B, {', '.join(map(str, want))}) "
                f"[{self.spec.input_kind}], got {tuple(x.shape)}; preprocess to "
                f"{self.spec.channels} channels at {self.spec.size}x{self.spec.size} px"
            )


def create_model(name: str, num_classes: int | None = None, **kwargs: object) -> nn.Module:
    """Build registered model `name` with `num_classes` outputs.

    The module gets attribute `.spec` (its `ModelSpec`) and checks every input against it:
    a wrong shape raises `MekitError` before the first layer runs. Output: (B, num_classes)
    logits; a spotting model takes no `num_classes` and gives (B,) scores.
    """
    if name not in _REGISTRY:
        raise MekitError(f"unknown model {name!r}; known models: {_known()}")
    spec, builder = _REGISTRY[name]
    args: tuple[int, ...] = (num_classes,) if num_classes is not None else ()
    if spec.task is Task.SPOTTING:
        if num_classes not in (None, 1):
            raise MekitError(
                f"model {name!r} spots expressions (one score per window) and has no classes; "
                f"leave num_classes out, got {num_classes}"
            )
        args = ()
    elif num_classes is None or num_classes < 2:
        raise MekitError(f"num_classes must be at least 2, got {num_classes}")
    try:
        inspect.signature(builder).bind(*args, **kwargs)
    except TypeError:
        options = [p for p in inspect.signature(builder).parameters if p != "num_classes"]
        raise MekitError(
            f"model {name!r} does not take options {sorted(kwargs)}; "
            f"it takes: {', '.join(options) or '(none)'}"
        ) from None
    model = builder(*args, **kwargs)
    model.spec = spec
    model.register_forward_pre_hook(InputCheck(spec))
    log.debug("created %s (%s classes, %d parameters)", name, num_classes, count_params(model))
    return model


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
