"""From a model's input spec to the features it needs, and from features to its tensor layout.

The data pipeline reads only the model's name: `feature_config_for(get_spec(name), base)`
says what to compute; `to_model_layout` turns the stacked features into what `forward` takes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mekit.errors import MekitError
from mekit.models.registry import TEMPORAL_KINDS, ModelSpec, Task
from mekit.motion.features import CHANNELS, FeatureConfig, FeatureKind


def feature_kind_for(spec: ModelSpec) -> FeatureKind:
    """The motion features the model declares (`spec.features`)."""
    if spec.task is Task.SPOTTING:
        raise MekitError(
            f"model {spec.name!r} spots expressions in long videos from {spec.features!r}, "
            "not from per-sample features; train it with mekit.spot.learned "
            f"(`mekit train --model {spec.name}`)"
        )
    try:
        return FeatureKind(spec.features)
    except ValueError:
        raise MekitError(
            f"model {spec.name!r} takes features {spec.features!r}, which mekit.motion does "
            f"not compute (it computes {', '.join(FeatureKind)})"
        ) from None


def feature_config_for(spec: ModelSpec, base: FeatureConfig = FeatureConfig()) -> FeatureConfig:
    """`base` (flow method, head motion, magnification...) with the kind, size and number of
    frames the model needs."""
    kind = feature_kind_for(spec)
    config = replace(base, kind=kind, size=spec.size)
    if kind in (FeatureKind.KEYFRAMES, FeatureKind.FLOW_CLIP, FeatureKind.APEX_FLOW_CLIP):
        assert spec.frames is not None
        # T flows need T + 1 frames
        return replace(config, keyframes=spec.frames + 1, clip_length=spec.frames + 1)
    if kind is FeatureKind.FRAMES:
        return replace(config, keyframes=spec.frames)
    return config


def to_model_layout(features: np.ndarray, spec: ModelSpec, kind: FeatureKind) -> np.ndarray:
    """(N, [T,] C_feature, S, S) features -> (N, C, [T,] S, S) float32 as the model takes them,
    keeping the channels the spec names (e.g. u, v out of u, v, strain)."""
    available = CHANNELS[FeatureKind(kind)]
    channel_axis = 2 if spec.input_kind in TEMPORAL_KINDS else 1
    if spec.channel_names and tuple(spec.channel_names) != available:
        missing = [c for c in spec.channel_names if c not in available]
        if missing:
            raise MekitError(
                f"model {spec.name} wants channels {spec.channel_names}; features '{kind}' "
                f"have {available}"
            )
        index = [available.index(c) for c in spec.channel_names]
        features = np.take(features, index, axis=channel_axis)
    if spec.input_kind in TEMPORAL_KINDS:
        features = features.transpose(0, 2, 1, 3, 4)  # (N, T, C, H, W) -> (N, C, T, H, W)
    return np.ascontiguousarray(features, dtype=np.float32)
