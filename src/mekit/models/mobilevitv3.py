"""MobileViTv3 (Wadekar & Chaurasia 2022) sized for 64 px micro-expression inputs.

A MobileNetV2 backbone whose three deepest stages end in a MobileViTv3 block:

    x (B, C, H, W) -> local: depthwise 3x3 conv-BN-SiLU, 1x1 conv to d     -> L (B, d, H, W)
    L -> unfold into 2x2 patches (B*4, H*W/4, d) -> pre-norm transformer layers -> LayerNorm
      -> fold back (B, d, H, W) -> 1x1 conv-BN-SiLU to C                    -> G (B, C, H, W)
    out = x + fusion(concat[L, G]), fusion a 1x1 conv-BN-SiLU (C + d -> C)

The four changes against MobileViT v1: the fusion conv is 1x1 (v1: 3x3); it fuses the local
representation L with G (v1: the block input with G); the block input is added to the fusion
output; the local 3x3 conv is depthwise. As in the authors' code (micronDLA/MobileViTv3), L is
taken after the 1x1 projection, so the fusion conv sees C + d channels (2C when d == C).

Layout (64 px input): stem 3x3/2 (32 px), MV2 x1 (32), MV2 x3 (16), [MV2/2 + MobileViTv3] at
8, 4 and 2 px with 2, 4, 3 transformer layers, 1x1 conv to a wide feature, global mean pool,
dropout, linear. Any input side that is a multiple of 64 px works (patches need even maps).
Widths follow the v3 tables (MobileViT v1 widths with wider stage outputs, 4 heads, FFN 2d).
Parameters for 3 classes: xxs 0.74M, xs 1.85M, s 4.81M; with a 1000-class head 1.25M, 2.49M,
5.76M, matching the paper's ImageNet figures 1.2M / 2.5M / 5.8M.

Two departures from the authors' training setup, both for short runs on small ME folds:
BatchNorm momentum 0.3 (authors 0.1) and the last BN of every residual branch initialised to
zero, so each block starts as the identity. Without them, eval-mode (running-statistics)
outputs trail the weights after a few dozen high-learning-rate Adam steps.

`attention_map(model, x)` turns the recorded self-attention into a (B, H, W) map in [0, 1].
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mekit.config import Config, check_range
from mekit.errors import MekitError
from mekit.models.layers import conv_bn_act
from mekit.models.registry import ModelSpec, register_model, uv_strain_spec


@dataclass(frozen=True)
class MobileViTv3Config(Config, section="mobilevitv3"):
    """Widths and depths of one variant.

    `mv2_channels`: outputs of the two MobileNetV2 stages (32 and 16 px at 64 px input);
    `channels`, `dims`, `depths`: output channels C, transformer width d and number of
    transformer layers of the three MobileViTv3 stages (8, 4, 2 px).
    """

    mv2_channels: tuple[int, int]
    channels: tuple[int, int, int]
    dims: tuple[int, int, int]
    expand_ratio: int
    depths: tuple[int, int, int] = (2, 4, 3)
    stem_channels: int = 16
    num_heads: int = 4
    patch_size: int = 2
    ffn_ratio: int = 2
    head_expansion: int = 4
    max_features: int = 960

    def check(self) -> None:
        for name in ("mv2_channels", "channels", "dims", "depths"):
            if min(getattr(self, name)) < 1:
                raise MekitError(f"{self.setting(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("expand_ratio", "stem_channels", "num_heads", "patch_size", "ffn_ratio"):
            check_range(self, name, 1)
        if any(d % self.num_heads for d in self.dims):
            raise MekitError(f"{self.setting('dims')} {self.dims} must be multiples of num_heads")

    @property
    def num_features(self) -> int:
        """Width of the pooled feature (the 1x1 conv before the classifier)."""
        return min(self.head_expansion * self.channels[-1], self.max_features)


CONFIGS: dict[str, MobileViTv3Config] = {
    "xxs": MobileViTv3Config((16, 24), (64, 80, 128), (64, 80, 96), expand_ratio=2),
    "xs": MobileViTv3Config((32, 48), (96, 160, 160), (96, 120, 144), expand_ratio=4),
    "s": MobileViTv3Config((32, 64), (128, 256, 320), (144, 192, 240), expand_ratio=4),
}


# BatchNorm momentum: the authors use 0.1 over 300 ImageNet epochs; ME folds give a few hundred
# steps, where 0.1 leaves the running (eval) statistics trailing weights that still move fast.
BN_MOMENTUM = 0.3


# Conv2d (no bias) -> BatchNorm2d -> SiLU (act=None: no SiLU): (B, c_in, H, W) -> (B, c_out, H', W')
_conv_bn = functools.partial(conv_bn_act, act=nn.SiLU, momentum=BN_MOMENTUM)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise 3x3 (stride), linear 1x1, residual if it fits."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = c_in * expand_ratio
        layers = [_conv_bn(c_in, hidden)] if expand_ratio != 1 else []
        layers += [
            _conv_bn(hidden, hidden, 3, stride=stride, groups=hidden),
            _conv_bn(hidden, c_out, act=None),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class Attention(nn.Module):
    """Multi-head self-attention: (B, N, d) -> (B, N, d).

    With `record = True` the softmax weights of the last call are kept in `last_attention`,
    (B, heads, N queries, N keys), detached.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"transformer width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout
        self.record = False
        # Softmax attention written out instead of the fused kernel: the same maths, and what
        # vmap batches well (it has no batching rule for CPU flash attention), so fold-batched
        # training (`mekit.train.batched`) switches it on.
        self.explicit = False
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        if self.record or self.explicit:  # explicit softmax (weights kept when recording)
            weights = torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1)
            if self.record:
                self.last_attention = weights.detach()
            out = F.dropout(weights, p, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


def attention_layers(module: nn.Module) -> list[Attention]:
    """The self-attention layers in `module`, in module order."""
    return [m for m in module.modules() if isinstance(m, Attention)]


class TransformerLayer(nn.Module):
    """Pre-norm encoder layer: x + MHSA(LN(x)), then + MLP(LN(x)) with SiLU; (B, N, d)."""

    def __init__(
        self, dim: int, ffn_dim: int, num_heads: int, dropout: float, attn_dropout: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, attn_dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.SiLU(), nn.Linear(ffn_dim, dim), nn.Dropout(dropout)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


class MobileViTv3Block(nn.Module):
    """MobileViTv3 block: (B, C, H, W) -> (B, C, H, W); H and W must be multiples of `patch_size`.

    `local`: depthwise 3x3 -> 1x1 to d; `transformer`: layers + LayerNorm over unfolded
    patches; `project`: 1x1 d -> C; `fusion`: 1x1 (C + d) -> C on concat[local, global];
    the block input is added to the fusion output.
    """

    def __init__(
        self,
        channels: int,
        dim: int,
        ffn_dim: int,
        depth: int,
        num_heads: int = 4,
        patch_size: int = 2,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.local = nn.Sequential(
            _conv_bn(channels, channels, 3, groups=channels),
            nn.Conv2d(channels, dim, 1, bias=False),
        )
        self.transformer = nn.Sequential(
            *(
                TransformerLayer(dim, ffn_dim, num_heads, dropout, attn_dropout)
                for _ in range(depth)
            ),
            nn.LayerNorm(dim),
        )
        self.project = _conv_bn(dim, channels)
        self.fusion = _conv_bn(channels + dim, channels)
        self.last_grid: tuple[int, int] | None = None  # patch grid (n_h, n_w) of the last call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.local(x)
        b, d, h, w = local.shape
        p = self.patch_size
        if h % p or w % p:
            raise MekitError(
                f"MobileViTv3 block got a {h}x{w} feature map, not divisible into {p}x{p} "
                "patches; use an input side that is a multiple of 64 px"
            )
        nh, nw = h // p, w // p
        self.last_grid = (nh, nw)
        # (B, d, nh*p, nw*p) -> (B*p*p, nh*nw, d): one sequence of patches per pixel offset
        patches = local.view(b, d, nh, p, nw, p).permute(0, 3, 5, 2, 4, 1)
        patches = self.transformer(patches.reshape(b * p * p, nh * nw, d))
        glob = patches.view(b, p, p, nh, nw, d).permute(0, 5, 3, 1, 4, 2).reshape(b, d, h, w)
        return x + self.fusion(torch.cat([local, self.project(glob)], dim=1))

    @property
    def attention_layers(self) -> list[Attention]:
        return attention_layers(self)


class _RecordsAttention(nn.Module):
    """`model.record_attention = True` makes every attention layer keep its last weights."""

    @property
    def record_attention(self) -> bool:
        layers = attention_layers(self)
        return bool(layers) and all(layer.record for layer in layers)

    @record_attention.setter
    def record_attention(self, value: bool) -> None:
        for layer in attention_layers(self):
            layer.record = bool(value)
            if not value:
                layer.last_attention = None


class MobileViTv3(_RecordsAttention):
    """(B, in_channels, H, W) -> (B, num_classes) logits; H = W a multiple of 64 px.

    `num_classes=0` drops the classifier: the output is the pooled feature, (B, num_features).
    """

    def __init__(
        self,
        num_classes: int,
        config: MobileViTv3Config,
        in_channels: int = 3,
        dropout: float = 0.1,
        transformer_dropout: float = 0.05,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        cfg = config
        self.config = cfg
        self.stem = _conv_bn(in_channels, cfg.stem_channels, 3, stride=2)
        c, e = cfg.stem_channels, cfg.expand_ratio
        stages: list[nn.Module] = []
        for c_out, n_blocks, stride in zip(cfg.mv2_channels, (1, 3), (1, 2), strict=True):
            blocks = []
            for i in range(n_blocks):
                blocks.append(InvertedResidual(c, c_out, stride if i == 0 else 1, e))
                c = c_out
            stages.append(nn.Sequential(*blocks))
        for c_out, dim, depth in zip(cfg.channels, cfg.dims, cfg.depths, strict=True):
            block = MobileViTv3Block(
                c_out,
                dim,
                ffn_dim=cfg.ffn_ratio * dim,
                depth=depth,
                num_heads=cfg.num_heads,
                patch_size=cfg.patch_size,
                dropout=transformer_dropout,
                attn_dropout=attn_dropout,
            )
            stages.append(nn.Sequential(InvertedResidual(c, c_out, 2, e), block))
            c = c_out
        self.stages = nn.Sequential(*stages)
        self.num_features = cfg.num_features
        self.head_conv = _conv_bn(c, self.num_features)
        self.dropout = nn.Dropout(dropout)
        self.classifier = (
            nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        )
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> pooled features (B, num_features)."""
        return self.head_conv(self.stages(self.stem(x))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.forward_features(x)))

    @property
    def blocks(self) -> list[MobileViTv3Block]:
        """The MobileViTv3 blocks, shallow to deep."""
        return [m for m in self.modules() if isinstance(m, MobileViTv3Block)]


class MobileViTv3TwoStream(_RecordsAttention):
    """(B, 4, H, W) apex + u/v/strain -> (B, num_classes) logits.

    An appearance stream on channel 0 (apex grey image in [0, 1]) and a motion stream on
    channels 1-3; their pooled features are concatenated and passed through a trainable
    fusion layer (linear -> LayerNorm -> SiLU -> dropout) before the linear classifier. The
    LayerNorm keeps the fused features' scale fixed, so the logits grow only with the
    classifier's weights rather than with the product of two layers' (fewer loss spikes).
    """

    def __init__(
        self,
        num_classes: int,
        appearance: MobileViTv3Config,
        motion: MobileViTv3Config,
        fusion_dim: int = 256,
        dropout: float = 0.1,
        transformer_dropout: float = 0.05,
    ) -> None:
        super().__init__()
        kw = {"dropout": 0.0, "transformer_dropout": transformer_dropout}
        self.appearance = MobileViTv3(0, appearance, in_channels=1, **kw)
        self.motion = MobileViTv3(0, motion, in_channels=3, **kw)
        self.fusion = nn.Sequential(
            nn.Linear(self.appearance.num_features + self.motion.num_features, fusion_dim),
            nn.LayerNorm(fusion_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Linear(fusion_dim, num_classes)
        _init_weights(self.fusion)
        _init_weights(self.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.appearance.forward_features(x[:, :1]), self.motion.forward_features(x[:, 1:])]
        return self.classifier(self.fusion(torch.cat(feats, dim=1)))


def _init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs and truncated-normal (0.02) linears as the authors do; the last BN
    of every residual branch (MV2 blocks that keep their shape, MobileViTv3 fusion) starts at
    zero so that each block begins as the identity (Goyal et al. 2017), which keeps short
    high-learning-rate runs stable."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
        if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, InvertedResidual) and m.use_residual:
            nn.init.zeros_(m.conv[-1][1].weight)
        elif isinstance(m, MobileViTv3Block):
            nn.init.zeros_(m.fusion[1].weight)


def attention_map(model: nn.Module, x: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """Where the transformer looks: (B, C, H, W) input -> (B, H, W) map in [0, 1] per sample.

    Runs `x` in eval mode with attention recording on (both restored afterwards). For each
    MobileViTv3 backbone in `model` (two for the two-stream model, summed), takes the last
    transformer layer of MobileViTv3 block `block` (index into `backbone.blocks`; default the
    deepest block with more than one patch: at 64 px the last block sees a single patch),
    averages the attention each patch receives over heads, queries and pixel offsets,
    upsamples the patch grid bilinearly to H x W and rescales each sample to [0, 1] (a
    uniform map, e.g. from a single-patch block, comes out as zeros).
    """
    backbones = [m for m in model.modules() if isinstance(m, MobileViTv3)]
    if not backbones:
        raise MekitError(f"attention_map needs a MobileViTv3 model, got {type(model).__name__}")
    layers = attention_layers(model)
    was_training, was_recording = model.training, [m.record for m in layers]
    try:
        model.eval()
        for m in layers:
            m.record = True
        with torch.no_grad():
            model(x)
        total = torch.zeros(x.shape[0], *x.shape[-2:], device=x.device)
        for backbone in backbones:
            total += _received_attention(backbone, block, x.shape[-2:])
    finally:
        model.train(was_training)
        for m, rec in zip(layers, was_recording, strict=True):
            m.record = rec
            m.last_attention = m.last_attention if rec else None
    lo = total.flatten(1).amin(dim=1).view(-1, 1, 1)
    hi = total.flatten(1).amax(dim=1).view(-1, 1, 1)
    return (total - lo) / (hi - lo).clamp_min(1e-12)


def _received_attention(
    backbone: MobileViTv3, block: int | None, size: tuple[int, ...]
) -> torch.Tensor:
    blocks = backbone.blocks
    if block is not None and not -len(blocks) <= block < len(blocks):
        raise MekitError(f"block must index the {len(blocks)} MobileViTv3 blocks, got {block}")
    if block is None:
        multi = [
            i for i, b in enumerate(blocks) if b.last_grid and b.last_grid[0] * b.last_grid[1] > 1
        ]
        block = multi[-1] if multi else len(blocks) - 1
    chosen = blocks[block]
    weights = chosen.attention_layers[-1].last_attention  # (B * p * p, heads, N, N)
    assert weights is not None and chosen.last_grid is not None
    nh, nw = chosen.last_grid
    received = weights.mean(dim=(1, 2)).view(-1, chosen.patch_size**2, nh, nw).mean(dim=1)
    up = F.interpolate(received[:, None], size=tuple(size), mode="bilinear", align_corners=False)
    return up[:, 0]


# Channels-last training: 1.2-1.25x per step on one CPU thread (benchmarks/memory_format.py)
FLOW_SPEC = uv_strain_spec(
    "mobilevitv3_xxs",
    size=64,
    description="MobileViTv3-XXS on 64x64 onset-apex u/v/strain",
    channels_last=True,
)


@register_model(FLOW_SPEC)
def mobilevitv3_xxs(num_classes: int, dropout: float = 0.1) -> nn.Module:
    """MobileViTv3-XXS on (B, 3, 64, 64) u/v/strain; 737,987 parameters at 3 classes."""
    return MobileViTv3(num_classes, CONFIGS["xxs"], dropout=dropout)


@register_model(
    FLOW_SPEC.variant("mobilevitv3_xs", "MobileViTv3-XS on 64x64 onset-apex u/v/strain")
)
def mobilevitv3_xs(num_classes: int, dropout: float = 0.1) -> nn.Module:
    """MobileViTv3-XS on (B, 3, 64, 64) u/v/strain; 1,851,283 parameters at 3 classes."""
    return MobileViTv3(num_classes, CONFIGS["xs"], dropout=dropout)


@register_model(FLOW_SPEC.variant("mobilevitv3_s", "MobileViTv3-S on 64x64 onset-apex u/v/strain"))
def mobilevitv3_s(num_classes: int, dropout: float = 0.1) -> nn.Module:
    """MobileViTv3-S on (B, 3, 64, 64) u/v/strain; 4,805,795 parameters at 3 classes."""
    return MobileViTv3(num_classes, CONFIGS["s"], dropout=dropout)


@register_model(
    ModelSpec(
        name="mobilevitv3_xs_two_stream",
        input_kind="apex_flow",
        channels=4,
        size=64,
        channel_names=("apex", "u", "v", "strain"),
        description="Two MobileViTv3-XS streams on 64x64 input, apex image and onset-apex "
        "u/v/strain; pooled features fused by a trainable layer",
        features="apex_flow",
        channels_last=True,
    )
)
def mobilevitv3_xs_two_stream(
    num_classes: int, dropout: float = 0.1, fusion_dim: int = 256, appearance: str = "xs"
) -> nn.Module:
    """Apex stream + u/v/strain XS stream on (B, 4, 64, 64); `appearance="xxs"` lightens the
    apex stream (3.9M -> 2.9M parameters at 3 classes)."""
    if appearance not in CONFIGS:
        raise MekitError(f"appearance must be one of {sorted(CONFIGS)}, got {appearance!r}")
    return MobileViTv3TwoStream(
        num_classes, CONFIGS[appearance], CONFIGS["xs"], fusion_dim=fusion_dim, dropout=dropout
    )
