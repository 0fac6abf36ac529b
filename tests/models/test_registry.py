"""Tests every registered model gets for free, plus the registry's own behaviour."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from mekit.errors import MekitError
from mekit.models import (
    CLASSIFIER_TASKS,
    ModelSpec,
    Task,
    create_model,
    get_spec,
    list_models,
    register_model,
    registry,
    uv_strain_spec,
)

SPECS = list_models()
NAMES = [s.name for s in SPECS]
NUM_CLASSES = 3


def _batch(spec: ModelSpec, b: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, *spec.input_shape, generator=g)


def test_registry_is_not_empty_and_has_ststnet():
    assert "ststnet" in NAMES
    assert NAMES == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_spec_is_consistent(name):
    spec = get_spec(name)
    assert spec.name == name
    assert spec.size > 0 and spec.channels > 0
    assert not spec.channel_names or len(spec.channel_names) == spec.channels
    assert create_model(name, NUM_CLASSES).spec is spec


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape(name):
    torch.manual_seed(0)
    model = create_model(name, NUM_CLASSES)
    for mode in (model.train, model.eval):
        mode()
        out = model(_batch(model.spec, b=5))
        assert out.shape == (5, NUM_CLASSES)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_backward_gives_finite_grads_on_all_params(name):
    torch.manual_seed(0)
    model = create_model(name, NUM_CLASSES)
    loss = nn.functional.cross_entropy(model(_batch(model.spec)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_wrong_input_shape_raises_mekit_error(name):
    model = create_model(name, NUM_CLASSES)
    shape = list(model.spec.input_shape)
    wrong_channels = [shape[0] + 1, *shape[1:]]
    wrong_size = [*shape[:-2], shape[-2] + 4, shape[-1] + 4]
    for bad in (wrong_channels, wrong_size, shape[1:]):
        with pytest.raises(MekitError, match=name):
            model(torch.zeros(2, *bad))


@pytest.mark.parametrize("name", NAMES)
def test_adam_steps_reduce_loss_on_tiny_batch(name):
    torch.manual_seed(0)
    model = create_model(name, NUM_CLASSES)
    x, y = _batch(model.spec, b=6, seed=1), torch.tensor([0, 1, 2, 0, 1, 2])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model(x), y))

    before = eval_loss()
    for _ in range(40):
        model.train()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert eval_loss() < 0.7 * before


@pytest.mark.parametrize("name", NAMES)
def test_model_pickles_for_process_pools(name):
    torch.manual_seed(0)
    model = create_model(name, NUM_CLASSES).eval()
    clone = pickle.loads(pickle.dumps(model))
    x = _batch(model.spec)
    assert torch.equal(model(x), clone(x))
    with pytest.raises(MekitError):  # the input check survives pickling
        clone(torch.zeros(1, 1, 5, 5))


def test_unknown_model_lists_known_names():
    with pytest.raises(MekitError, match="ststnet"):
        create_model("no-such-net", 3)
    with pytest.raises(MekitError, match="known models"):
        get_spec("no-such-net")


def test_unknown_option_and_bad_num_classes_raise():
    with pytest.raises(MekitError, match="dropout"):
        create_model("ststnet", 3, no_such_option=1)
    with pytest.raises(MekitError, match="num_classes"):
        create_model("ststnet", 1)


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_temporal_model_input_check(scratch_registry):
    spec = ModelSpec(name="tiny3d", input_kind="flow_sequence", channels=2, size=8, frames=4)

    @register_model(spec)
    def tiny3d(num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 8 * 8, num_classes))

    model = create_model("tiny3d", 2)
    assert spec.input_shape == (2, 4, 8, 8) and spec.u_channel == 0
    assert model(torch.zeros(3, 2, 4, 8, 8)).shape == (3, 2)
    with pytest.raises(MekitError, match=r"\(B, 2, 4, 8, 8\)"):
        model(torch.zeros(3, 2, 5, 8, 8))
    assert "tiny3d" in [s.name for s in list_models()]


def test_duplicate_registration_raises(scratch_registry):
    with pytest.raises(ValueError, match="twice"):
        register_model(get_spec("ststnet"))(lambda num_classes: nn.Identity())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_kind": "video"},
        {"input_kind": "frames"},  # temporal kind without frames
        {"input_kind": "apex", "frames": 8},  # frames on a single-image kind
        {"input_kind": "flow", "channel_names": ("u", "v")},  # 2 names for 3 channels
    ],
)
def test_invalid_spec_raises(kwargs):
    with pytest.raises(ValueError):
        ModelSpec(**{"name": "x", "channels": 3, "size": 28, **kwargs})


def test_u_channel_found_by_name_for_fusion_inputs():
    fused = ModelSpec(
        name="f",
        input_kind="apex_flow",
        channels=4,
        size=8,
        channel_names=("apex", "u", "v", "strain"),
    )
    seq = ModelSpec(
        name="s",
        input_kind="apex_flow_sequence",
        channels=4,
        size=8,
        frames=3,
        channel_names=("apex", "dx", "dy", "magnitude"),
    )
    apex = ModelSpec(name="a", input_kind="apex", channels=1, size=8)
    assert (fused.u_channel, seq.u_channel, apex.u_channel) == (1, 1, None)
    assert seq.input_shape == (4, 3, 8, 8)


def test_tasks_and_the_default_listing():
    assert get_spec("ststnet").task is Task.RECOGNITION and get_spec("aunet").task is Task.AU
    assert get_spec("softnet").task is Task.SPOTTING
    assert "softnet" not in NAMES  # the default lists the classifiers, as `mekit models` does
    assert {s.task for s in SPECS} == set(CLASSIFIER_TASKS)
    assert [s.name for s in list_models(task="spotting")] == ["softnet"]
    recognition = list_models(task=Task.RECOGNITION)
    assert "aunet" not in [s.name for s in recognition] and "ststnet" in NAMES
    every = list_models(task=None)
    assert len(every) == len(SPECS) + 1
    assert [s.name for s in every] == sorted(s.name for s in every)
    with pytest.raises(MekitError, match="unknown task"):
        list_models(task="detection")
    with pytest.raises(ValueError, match="task"):
        ModelSpec(name="x", input_kind="flow", channels=3, size=28, task="detection")


def test_features_default_to_the_input_kind_and_are_declared_by_every_model():
    assert ModelSpec(name="x", input_kind="flow", channels=3, size=28).features == "onset_apex"
    assert get_spec("cnn_lstm_fusion").features == "flow_clip"
    assert get_spec("me_resnet").features == "keyframes"


def test_uv_strain_spec_is_the_onset_apex_image_or_the_keyframe_flows():
    image = uv_strain_spec("i", size=28, description="d", task=Task.AU)
    assert (image.input_kind, image.features, image.input_shape) == (
        "flow",
        "onset_apex",
        (3, 28, 28),
    )
    assert (image.channel_names, image.u_channel, image.task) == (("u", "v", "strain"), 0, Task.AU)
    clip = uv_strain_spec("c", size=48, description="d", frames=10)
    assert (clip.input_kind, clip.features) == ("flow_sequence", "keyframes")
    assert (clip.input_shape, clip.task) == ((3, 10, 48, 48), Task.RECOGNITION)
    assert get_spec("ststnet") == uv_strain_spec("ststnet", 28, get_spec("ststnet").description)


def test_softnet_is_created_by_name_without_classes():
    from mekit.models.softnet import SoftNet

    torch.manual_seed(0)
    model = create_model("softnet", hidden=32)
    torch.manual_seed(0)
    direct = SoftNet(hidden=32)
    assert isinstance(model, SoftNet) and model.spec is get_spec("softnet")
    assert list(model.state_dict()) == list(direct.state_dict())
    x = torch.rand(2, 3, 42, 42)
    torch.testing.assert_close(model.eval()(x), direct.eval()(x))
    assert model(x).shape == (2,)
    with pytest.raises(MekitError, match="no classes"):
        create_model("softnet", 3)
    with pytest.raises(MekitError, match=r"\(B, 3, 42, 42\)"):
        model(torch.rand(2, 3, 40, 40))
