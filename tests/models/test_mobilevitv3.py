from __future__ import annotations

import pytest
import torch
from torch import nn

import mekit.models.mobilevitv3  # noqa: F401  (registers the models)
from mekit.errors import MekitError
from mekit.models.mobilevitv3 import (
    BN_MOMENTUM,
    CONFIGS,
    Attention,
    MobileViTv3,
    MobileViTv3Block,
    MobileViTv3TwoStream,
    attention_map,
)
from mekit.models.registry import count_params, create_model, get_spec

FLOW_NAMES = ["mobilevitv3_xxs", "mobilevitv3_xs", "mobilevitv3_s"]
# Parameters at 3 classes, and the paper's ImageNet figures (1000-class head).
PARAM_RANGES = {"xxs": (0.6e6, 0.9e6), "xs": (1.6e6, 2.1e6), "s": (4.3e6, 5.3e6)}
PAPER_IMAGENET = {"xxs": 1.2e6, "xs": 2.5e6, "s": 5.8e6}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # On a busy shared CPU, two intra-op threads run these small models 5-50x slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _xxs(**kw) -> MobileViTv3:
    torch.manual_seed(0)
    return MobileViTv3(3, CONFIGS["xxs"], **kw)


def _block(channels: int = 16, dim: int = 24) -> MobileViTv3Block:
    torch.manual_seed(0)
    return MobileViTv3Block(channels, dim, ffn_dim=2 * dim, depth=2, num_heads=4).eval()


def _fusion_input(block: MobileViTv3Block, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = block.fusion.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    with torch.no_grad():
        block(x)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("name", FLOW_NAMES)
def test_flow_specs(name):
    spec = get_spec(name)
    assert (spec.input_kind, spec.channels, spec.size, spec.frames) == ("flow", 3, 64, None)
    assert spec.channel_names == ("u", "v", "strain") and spec.u_channel == 0
    assert create_model(name, 3).config is CONFIGS[name.removeprefix("mobilevitv3_")]


def test_two_stream_spec():
    spec = get_spec("mobilevitv3_xs_two_stream")
    assert (spec.input_kind, spec.channels, spec.size) == ("apex_flow", 4, 64)
    assert spec.channel_names == ("apex", "u", "v", "strain") and spec.u_channel == 1


def test_param_counts_are_ordered_and_match_the_paper():
    counts = {v: count_params(MobileViTv3(3, cfg)) for v, cfg in CONFIGS.items()}
    assert counts["xxs"] < counts["xs"] < counts["s"]
    for variant, (lo, hi) in PARAM_RANGES.items():
        assert lo < counts[variant] < hi, (variant, counts[variant])
        imagenet = count_params(MobileViTv3(1000, CONFIGS[variant]))
        assert abs(imagenet / PAPER_IMAGENET[variant] - 1) < 0.05, (variant, imagenet)


@pytest.mark.parametrize("variant", list(CONFIGS))
def test_every_block_has_the_v3_layout(variant):
    model = MobileViTv3(3, CONFIGS[variant])
    blocks = model.blocks
    assert len(blocks) == 3
    for block, c, d in zip(blocks, CONFIGS[variant].channels, CONFIGS[variant].dims, strict=True):
        fusion = block.fusion[0]
        assert isinstance(fusion, nn.Conv2d) and fusion.kernel_size == (1, 1)
        assert fusion.in_channels == c + d and fusion.out_channels == c  # local (d) + global (C)
        depthwise, pointwise = block.local[0][0], block.local[1]
        assert depthwise.kernel_size == (3, 3)
        assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == c
        assert pointwise.kernel_size == (1, 1) and pointwise.out_channels == d
        assert block.project[0].kernel_size == (1, 1) and block.project[0].out_channels == c


def test_fusion_takes_twice_the_block_channels_when_dim_equals_channels():
    fusion = _block(channels=32, dim=32).fusion[0]
    assert fusion.in_channels == 2 * 32 and fusion.kernel_size == (1, 1)


@pytest.mark.parametrize("train", [False, True])
def test_block_returns_its_input_when_fusion_is_zeroed(train):
    block = _block().train(train)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(block(x), x, atol=1e-3)
        block.fusion[0].weight.zero_()  # BN: beta 0 (running mean 0 in eval); SiLU(0) = 0
        assert torch.allclose(block(x), x, atol=1e-6)


def test_blocks_start_as_the_identity_in_a_fresh_model():
    model = _xxs().eval()
    assert not any(b.fusion[1].weight.detach().any() for b in model.blocks)
    assert all(m.momentum == BN_MOMENTUM for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.blocks[0](x), x)
        model.blocks[0].fusion[1].weight.fill_(1.0)
        assert not torch.allclose(model.blocks[0](x), x, atol=1e-3)


def test_fusion_concatenates_local_then_global_representation():
    block = _block()
    x = torch.randn(2, 16, 8, 8)
    fused = _fusion_input(block, x)
    assert fused.shape == (2, 16 + 24, 8, 8)
    with torch.no_grad():
        local = block.local(x)
    assert torch.allclose(fused[:, :24], local)  # the local representation, not the input
    assert not torch.allclose(fused[:, 24:], block.project(local))  # the transformer acted


def test_fold_inverts_unfold():
    block = _block()
    block.transformer = nn.Identity()
    x = torch.randn(2, 16, 8, 6)
    with torch.no_grad():
        expected = block.project(block.local(x))
    assert torch.allclose(_fusion_input(block, x)[:, 24:], expected)


def test_unfold_makes_one_sequence_of_patches_per_pixel_offset():
    block = _block()
    seen = []
    block.transformer[0].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    x = torch.randn(1, 16, 8, 6)
    with torch.no_grad():
        block(x)
        local = block.local(x)
    tokens = seen[0].view(2, 2, 4 * 3, 24)  # (offset row, offset col, patches, d)
    for row, col in [(0, 0), (1, 2), (3, 1)]:
        for dy, dx in [(0, 0), (1, 0), (0, 1)]:
            assert torch.equal(
                tokens[dy, dx, row * 3 + col], local[0, :, 2 * row + dy, 2 * col + dx]
            )
    assert block.last_grid == (4, 3)


def test_spatial_stages_for_64_px_and_the_module_at_128_px():
    model = _xxs().eval()
    sizes = []
    for stage in [model.stem, *model.stages]:
        stage.register_forward_hook(lambda m, args, out: sizes.append(out.shape[-1]))
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)
        assert sizes == [32, 32, 16, 8, 4, 2]
        sizes.clear()
        assert model(torch.randn(2, 3, 128, 128)).shape == (2, 3)
        assert sizes == [64, 64, 32, 16, 8, 4]


def test_input_side_not_a_multiple_of_64_raises_a_clear_error():
    with pytest.raises(MekitError, match="multiple of 64"):
        _xxs()(torch.randn(1, 3, 96, 96))


def test_in_channels_and_feature_extractor():
    model = MobileViTv3(0, CONFIGS["xxs"], in_channels=1).eval()
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, model.num_features) == (2, 512)
    assert not [p for p in model.modules() if isinstance(p, nn.Linear) and p.out_features == 0]


def test_two_stream_forward_and_stream_inputs():
    torch.manual_seed(0)
    model = create_model("mobilevitv3_xs_two_stream", 3).eval()
    assert isinstance(model, MobileViTv3TwoStream)
    assert model.appearance.stem[0].in_channels == 1 and model.motion.stem[0].in_channels == 3
    fusion = model.fusion[0]
    assert fusion.in_features == model.appearance.num_features + model.motion.num_features
    assert isinstance(model.fusion[1], nn.LayerNorm) and model.classifier.in_features == 256
    x = torch.rand(4, 4, 64, 64)
    with torch.no_grad():
        out, motion = model(x), model.motion.forward_features(x[:, 1:])
        x2 = x.clone()
        x2[:, 0] = 1 - x2[:, 0]  # only the apex image changes
        assert out.shape == (4, 3) and torch.isfinite(out).all()
        assert not torch.allclose(model(x2), out)
        assert torch.equal(model.motion.forward_features(x2[:, 1:]), motion)


def test_two_stream_lighter_appearance_option():
    light = create_model("mobilevitv3_xs_two_stream", 3, appearance="xxs")
    assert count_params(light) < count_params(create_model("mobilevitv3_xs_two_stream", 3))
    with pytest.raises(MekitError, match="appearance"):
        create_model("mobilevitv3_xs_two_stream", 3, appearance="xl")


def test_attention_is_recorded_only_when_asked_and_does_not_change_the_output():
    model = _xxs().eval()
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    assert len(layers) == sum(CONFIGS["xxs"].depths) and model.record_attention is False
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = model(x)
        assert all(m.last_attention is None for m in layers)
        model.record_attention = True
        recorded = model(x)
    assert torch.allclose(plain, recorded, atol=1e-5)
    first = layers[0].last_attention  # first block: 8x8 map -> 16 patches, 4 offsets
    assert first is not None and first.shape == (2 * 4, 4, 16, 16)
    assert torch.allclose(first.sum(-1), torch.ones(()))
    model.record_attention = False
    assert all(m.last_attention is None for m in layers)


@pytest.mark.parametrize("name", ["mobilevitv3_xxs", "mobilevitv3_xs_two_stream"])
def test_attention_map_shape_range_and_restored_state(name):
    torch.manual_seed(0)
    model = create_model(name, 3).train()
    x = torch.rand(3, *model.spec.input_shape)
    amap = attention_map(model, x)
    assert amap.shape == (3, 64, 64)
    assert amap.min() >= 0 and amap.max() <= 1
    assert torch.allclose(amap.flatten(1).amax(1), torch.ones(3))
    assert torch.allclose(amap.flatten(1).amin(1), torch.zeros(3))
    assert model.training and model.record_attention is False
    assert torch.allclose(attention_map(model, x), amap)


def test_attention_map_puts_the_attended_patch_in_the_right_place():
    model = _xxs()
    # at 64 px the last block sees a single patch, so the map comes from block 1 (2x2 grid)
    layer = model.blocks[1].attention_layers[-1]
    focus = torch.zeros(2 * 4, 4, 4, 4)
    focus[..., 1] = 1.0  # every query attends to patch 1 = top row, right column

    def overwrite(module, args, out):
        module.last_attention = focus

    layer.register_forward_hook(overwrite)
    amap = attention_map(model, torch.randn(2, 3, 64, 64))
    assert torch.allclose(amap[:, :16, 48:], torch.ones(()))
    assert torch.allclose(amap[:, 48:, :16], torch.zeros(()))
    assert (amap[:, :32, 32:].mean() > amap[:, 32:, :32].mean() + 0.5).all()


def test_attention_map_rejects_other_models_and_bad_block_index():
    with pytest.raises(MekitError, match="MobileViTv3"):
        attention_map(nn.Conv2d(3, 3, 1), torch.randn(1, 3, 64, 64))
    model = _xxs()
    with pytest.raises(MekitError, match="block"):
        attention_map(model, torch.randn(1, 3, 64, 64), block=3)
    assert model.training and model.record_attention is False  # restored after the error
