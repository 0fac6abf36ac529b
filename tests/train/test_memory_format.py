"""`train.memory_format`: which layout training keeps a network's inputs and convolution weights
in, that it is the layout the convolutions see, and that "auto" leaves the other networks'
training exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from mekit.config import from_mapping
from mekit.errors import MekitError
from mekit.models import create_model, get_spec
from mekit.train.device import memory_format, to_memory_format
from mekit.train.loop import TrainConfig, fit
from mekit.train.multilabel import MultiLabelConfig, fit_multilabel

TEMPORAL = (
    "me_resnet_small",
    "dtscnn",
    "cnn_lstm_fusion",
    "keyframe_gru",
    "apex_neighbour_fusion",
)


def test_auto_follows_the_spec_and_explicit_choices_apply_to_any_network():
    assert memory_format("auto", get_spec("mobilevitv3_xxs")) == torch.channels_last
    for marked in (
        "mobilevitv3_s",
        "mobilevitv3_xs_two_stream",
        "resnet18",
        "resnet18_dual_attention",
    ):
        assert memory_format("auto", get_spec(marked)) == torch.channels_last, marked
    for clip_network in TEMPORAL + ("me_resnet", "cnn_lstm_spatial", "cnn_lstm_temporal"):
        assert memory_format("auto", get_spec(clip_network)) == torch.channels_last_3d
    assert memory_format("auto", get_spec("off_apexnet_strain")) == torch.contiguous_format
    assert memory_format("auto", get_spec("ststnet")) == torch.contiguous_format
    assert memory_format("contiguous", get_spec("mobilevitv3_xxs")) == torch.contiguous_format
    assert memory_format("channels_last", get_spec("ststnet")) == torch.channels_last
    assert memory_format("channels_last", get_spec("me_resnet")) == torch.channels_last_3d
    with pytest.raises(MekitError, match="train.memory_format 'nhwc' is not one of"):
        memory_format("nhwc", get_spec("ststnet"))


def test_the_setting_is_checked_where_it_is_read():
    assert from_mapping(TrainConfig, {"memory_format": "channels_last"}).memory_format == (
        "channels_last"
    )
    with pytest.raises(MekitError, match="memory_format"):
        from_mapping(TrainConfig, {"memory_format": "nhwc"})


@contextmanager
def conv_inputs() -> Iterator[list[torch.Tensor]]:
    """The input of every Conv2d and Conv3d call while the block runs."""
    seen: list[torch.Tensor] = []

    def record(module: nn.Module, args: tuple) -> None:
        if isinstance(module, nn.Conv2d | nn.Conv3d):
            seen.append(args[0])

    handle = nn.modules.module.register_module_forward_pre_hook(record)
    try:
        yield seen
    finally:
        handle.remove()


def channels_last(t: torch.Tensor) -> bool:
    """Laid out NHWC (NDHWC) and not NCHW (a tensor of one channel or pixel can be both)."""
    nhwc = torch.channels_last if t.dim() == 4 else torch.channels_last_3d
    return t.is_contiguous(memory_format=nhwc) and not t.is_contiguous()


def flows(model: str, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, *get_spec(model).input_shape)).astype(np.float32), rng.integers(
        0, 3, n
    )


def test_the_convolutions_train_in_the_layout_chosen_and_the_model_leaves_contiguous():
    X, y = flows("off_apexnet")
    config = TrainConfig(epochs=1, batch_size=20)
    with conv_inputs() as seen:
        nhwc = fit("off_apexnet", 3, X, y, replace(config, memory_format="channels_last"))
    assert seen and any(channels_last(t) for t in seen)
    with conv_inputs() as seen:
        plain = fit("off_apexnet", 3, X, y, replace(config, memory_format="contiguous"))
    assert seen and not any(channels_last(t) for t in seen)
    # The same arithmetic in another order: the first epoch's loss agrees to rounding
    loss = [r.history[0]["train_loss"] for r in (nhwc, plain)]
    assert loss[0] == pytest.approx(loss[1], abs=1e-4)
    assert all(p.is_contiguous() for p in nhwc.model.parameters())


def test_auto_trains_a_network_without_the_flag_exactly_as_contiguous():
    X, y = flows("off_apexnet")
    config = TrainConfig(epochs=2, batch_size=20)
    auto = fit("off_apexnet", 3, X, y, config).model.state_dict()
    plain = fit("off_apexnet", 3, X, y, replace(config, memory_format="contiguous"))
    for name, tensor in plain.model.state_dict().items():
        assert torch.equal(tensor, auto[name]), name


def test_multilabel_training_follows_the_setting_and_leaves_the_au_network_unchanged():
    rng = np.random.default_rng(1)
    y = (rng.random((24, 12)) < 0.3).astype(np.float32)

    def trained(model: str, layout: str) -> tuple[nn.Module, list[torch.Tensor]]:
        x = flows(model, 24)[0]
        torch.manual_seed(0)
        net = create_model(model, 12)
        with conv_inputs() as seen:
            fit_multilabel(
                net, x, y, MultiLabelConfig(epochs=1, batch_size=12, memory_format=layout)
            )
        return net, seen

    auto, _ = trained("aunet", "auto")
    plain, _ = trained("aunet", "contiguous")
    for (name, a), b in zip(auto.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    mvit, seen = trained("mobilevitv3_xxs", "auto")
    assert any(channels_last(t) for t in seen)
    assert all(p.is_contiguous() for p in mvit.parameters())


def test_a_network_mixing_2d_and_3d_convolutions_converts_each_to_its_own_layout():
    net = nn.Sequential(nn.Conv3d(2, 4, 3), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(RuntimeError):  # what fit used to call
        net.to(memory_format=torch.channels_last_3d)
    to_memory_format(net, torch.channels_last_3d)
    assert channels_last(net[0].weight) and net[0].weight.dim() == 5
    assert channels_last(net[1].weight) and net[1].weight.dim() == 4
    assert net[2].weight.is_contiguous()  # 1-D: as it was
    to_memory_format(net, torch.contiguous_format)
    assert all(p.is_contiguous() for p in net.parameters())


@pytest.mark.parametrize("model", TEMPORAL)
def test_every_clip_network_trains_channels_last_to_the_same_loss(model):
    """(C, T, H, W) networks: `channels_last` trains any of them (2-D convolutions over the
    frames too) to the first epoch's loss of contiguous training; in the marked ones the
    convolutions see channels innermost (the CBAM's 2-channel [max; mean] map aside). Batch
    16: below it oneDNN leaves 1x1 convolutions on one thread to a contiguous kernel."""
    X, y = flows(model, 16)
    config = TrainConfig(epochs=1, batch_size=16)
    with conv_inputs() as seen:
        nhwc = fit(model, 3, X, y, replace(config, memory_format="channels_last"))
    if get_spec(model).channels_last:
        maps = [t for t in seen if t.shape[1] > 2 and t[0, 0].numel() > 1]
        assert maps and all(t.stride(1) == 1 for t in maps)
    plain = fit(model, 3, X, y, replace(config, memory_format="contiguous"))
    loss = [r.history[0]["train_loss"] for r in (nhwc, plain)]
    assert loss[0] == pytest.approx(loss[1], abs=1e-4)
    assert all(p.is_contiguous() for p in nhwc.model.parameters())
