import numpy as np
import pytest

from mekit.errors import MekitError
from mekit.models import ModelSpec, get_spec, list_models
from mekit.motion import FeatureConfig, FeatureKind
from mekit.motion.features import CHANNELS
from mekit.train.inputs import feature_config_for, feature_kind_for, to_model_layout


def spec(kind, channels, names, size=32, frames=None, features=""):
    return ModelSpec(
        name="m",
        input_kind=kind,
        channels=channels,
        size=size,
        frames=frames,
        channel_names=names,
        features=features,
    )


@pytest.mark.parametrize(
    "model_spec,kind,frames_read",
    [
        (spec("flow", 3, ("u", "v", "strain")), FeatureKind.ONSET_APEX, None),
        (spec("flow", 2, ("u", "v")), FeatureKind.ONSET_APEX, None),
        (spec("apex", 1, ("apex",)), FeatureKind.APEX, None),
        (spec("apex_flow", 4, ("apex", "u", "v", "strain")), FeatureKind.APEX_FLOW, None),
        (spec("flow_sequence", 3, ("u", "v", "strain"), frames=10), FeatureKind.KEYFRAMES, 11),
        (
            spec("flow_sequence", 3, ("dx", "dy", "magnitude"), frames=19, features="flow_clip"),
            FeatureKind.FLOW_CLIP,
            20,
        ),
        (spec("frames", 1, ("grey",), frames=16), FeatureKind.FRAMES, 16),
        (
            spec("apex_flow_sequence", 4, ("apex", "dx", "dy", "magnitude"), frames=8),
            FeatureKind.APEX_FLOW_CLIP,
            9,
        ),
    ],
)
def test_the_model_spec_decides_kind_size_and_frames(model_spec, kind, frames_read):
    base = FeatureConfig(method="farneback", size=99, keyframes=5, mask_eyes=True)
    config = feature_config_for(model_spec, base)
    assert config.kind is kind and config.size == 32
    assert config.method == "farneback" and config.mask_eyes  # the user's settings survive
    if kind is FeatureKind.FLOW_CLIP:
        assert config.clip_length == frames_read
    elif frames_read is not None:
        assert config.keyframes == frames_read


def test_layout_selects_named_channels_and_moves_time_after_channels():
    flow = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    uv = to_model_layout(flow, spec("flow", 2, ("u", "v"), size=4), FeatureKind.ONSET_APEX)
    assert uv.shape == (2, 2, 4, 4) and np.array_equal(uv, flow[:, :2])
    seq = np.random.default_rng(0).random((2, 5, 3, 4, 4)).astype(np.float32)  # N,T,C,H,W
    out = to_model_layout(
        seq, spec("flow_sequence", 3, ("u", "v", "strain"), 4, 5), FeatureKind.KEYFRAMES
    )
    assert out.shape == (2, 3, 5, 4, 4) and np.array_equal(out[1, 2, 3], seq[1, 3, 2])
    with pytest.raises(MekitError, match="wants channels"):
        to_model_layout(flow, spec("flow", 2, ("dx", "dy"), size=4), FeatureKind.ONSET_APEX)


def test_the_declared_features_decide_not_the_channel_names():
    # dx-named channels no longer switch a flow sequence to flow clips: the spec says which
    assert feature_kind_for(spec("flow_sequence", 1, ("dx",), frames=3)) is FeatureKind.KEYFRAMES
    clip = spec("flow_sequence", 3, ("u", "v", "strain"), frames=3, features="flow_clip")
    assert feature_kind_for(clip) is FeatureKind.FLOW_CLIP


@pytest.mark.parametrize("model_spec", list_models(), ids=lambda s: s.name)
def test_every_classifier_declares_features_that_carry_its_channels(model_spec):
    kind = feature_kind_for(model_spec)
    assert set(model_spec.channel_names) <= set(CHANNELS[kind])


def test_a_spotter_has_no_per_sample_features():
    with pytest.raises(MekitError, match="softnet_windows"):
        feature_config_for(get_spec("softnet"))
    unknown = ModelSpec(name="m", input_kind="flow", channels=3, size=8, features="voxels")
    with pytest.raises(MekitError, match="'voxels'.*onset_apex"):
        feature_kind_for(unknown)
