"""Fold-batched training (`mekit.train.batched`): all folds at once, each on its own data."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector

from mekit.errors import MekitError
from mekit.models import create_model
from mekit.models.registry import get_spec, list_models
from mekit.train import batched
from mekit.train.augment import mixup
from mekit.train.batched import (
    BatchedTrainer,
    auto_folds_at_once,
    batched_unsupported,
    fit_folds,
)
from mekit.train.loop import TrainConfig, _flow_channels, augment_batch, fit
from mekit.train.loso import cross_validate
from mekit.train.splits import Fold, loso_folds

FAST = TrainConfig(epochs=2, batch_size=4)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_fold_never_sees_its_held_out_subject(toy_flow):
    X, y, subjects, _ = toy_flow(3, 6)
    folds = loso_folds(subjects)
    models = fit_folds("ststnet", 2, X, y, folds, FAST)
    # replace the held-out subject of fold 0 (inputs and labels): fold 0 must be bit-identical
    X2, y2 = X.copy(), y.copy()
    X2[folds[0].test_idx] = 100.0
    y2[folds[0].test_idx] = 1 - y2[folds[0].test_idx]
    again = fit_folds("ststnet", 2, X2, y2, folds, FAST)
    assert _same(models[0], again[0])
    assert not _same(models[1], again[1])  # that subject trains fold 1, which must notice


def test_folds_start_where_the_per_fold_loop_starts(toy_flow):
    X, y, subjects, _ = toy_flow(3, 4)
    folds = loso_folds(subjects)
    barely = TrainConfig(epochs=1, batch_size=4, lr=1e-12)  # Adam moves weights by ~lr
    models = fit_folds("ststnet", 2, X, y, folds, barely)
    for fold, model in zip(folds, models, strict=True):
        torch.manual_seed(FAST.seed + fold.index)
        start = create_model("ststnet", 2)
        for name, p in start.named_parameters():
            assert torch.allclose(p, model.get_parameter(name), atol=1e-9), (fold.index, name)


def _assert_per_fold_loop(models, folds, X, y, config, kwargs):
    """Each fold's model ends where `fit` on its training samples ends (seed + fold index)."""
    for fold, model in zip(folds, models, strict=True):
        own = replace(config, seed=config.seed + fold.index)
        plain = fit("ststnet", 2, X[fold.train_idx], y[fold.train_idx], own, model_kwargs=kwargs)
        a, b = model.state_dict(), plain.model.state_dict()
        assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a), fold.index


def test_without_dropout_it_is_the_per_fold_loop(toy_flow):
    # Equal folds whose size the batch divides draw the same batches and flips as `fit`, so
    # without dropout every fold ends where the per-fold loop ends, up to float rounding.
    X, y, subjects, ids = toy_flow(4, 8, amplitude=1.5)
    config = TrainConfig(epochs=3, batch_size=8, lr=0.01)
    folds = loso_folds(subjects)
    kwargs = {"dropout": 0.0}
    models = fit_folds("ststnet", 2, X, y, folds, config, model_kwargs=kwargs)
    _assert_per_fold_loop(models, folds, X, y, config, kwargs)
    # with class-balanced sampling, random erasing, mixup and label smoothing too: the same
    # draws from each fold's own generator, the same loss
    augmented = replace(
        config, sampling="balanced", augment_erase=0.5, augment_mixup=0.4, label_smoothing=0.1
    )
    models_aug = fit_folds("ststnet", 2, X, y, folds, augmented, model_kwargs=kwargs)
    _assert_per_fold_loop(models_aug, folds, X, y, augmented, kwargs)
    assert not any(_same(a, b) for a, b in zip(models, models_aug, strict=True))
    chunked = fit_folds("ststnet", 2, X, y, folds, config, model_kwargs=kwargs, folds_at_once=3)
    for a, b in zip(models, chunked, strict=True):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-4) for k in sa)


def test_auto_groups_keep_a_cpu_programs_largest_stacked_parameter_within_32_mib():
    model = create_model("off_apexnet", 3)  # its first dense layer: 1568 x 1024 floats
    assert auto_folds_at_once(model, torch.device("cpu")) == 5 == (32 << 20) // (1568 * 1024 * 4)
    assert auto_folds_at_once(create_model("ststnet", 3), torch.device("cpu")) > 68
    assert auto_folds_at_once(model, torch.device("cuda")) > 68  # a GPU takes all folds at once
    folds = [Fold(i, f"s{i}", np.arange(2), np.arange(2, 3)) for i in range(12)]
    sizes = [
        len(g) for g in BatchedTrainer("off_apexnet", 3, TrainConfig(device="cpu")).groups(folds)
    ]
    assert sizes == [5, 5, 2]
    assert [len(g) for g in BatchedTrainer("ststnet", 3, TrainConfig()).groups(folds)] == [12]
    chosen = BatchedTrainer("off_apexnet", 3, TrainConfig(), folds_at_once=4).groups(folds)
    assert [len(g) for g in chosen] == [4, 4, 4]


def test_reports_like_the_other_engines_and_is_deterministic(toy_flow):
    X, y, subjects, ids = toy_flow(3, 6)
    config = TrainConfig(epochs=2, batch_size=4)
    trainer = BatchedTrainer("ststnet", 2, config)
    result = cross_validate(X, y, subjects, ids, ["neg", "pos"], trainer, progress=False)
    p = result.predictions
    assert p["id"].tolist() == ids and len(p) == len(y)
    names = dict(enumerate(sorted(set(subjects))))
    assert (p["subject"] == p["fold"].map(names)).all()  # predicted by the fold holding it out
    again = cross_validate(X, y, subjects, ids, ["neg", "pos"], trainer, progress=False)
    assert again.predictions.equals(p)


def test_init_from_is_loaded_into_every_fold(toy_flow, tmp_path):
    from mekit.train.checkpoint import save_model

    X, y, subjects, _ = toy_flow(2, 4)
    source = create_model("ststnet", 2)
    with torch.no_grad():
        for p in source.parameters():
            p.fill_(0.125)
    save_model(
        tmp_path / "init",
        source,
        model_name="ststnet",
        labels=["a", "b"],
        model_kwargs={},
        input={},
        config={},
    )
    config = TrainConfig(epochs=1, batch_size=4, lr=1e-12, init_from=str(tmp_path / "init"))
    for model in fit_folds("ststnet", 2, X, y, loso_folds(subjects), config):
        conv = next(p for n, p in model.named_parameters() if "weight" in n)
        assert torch.allclose(conv, torch.full_like(conv, 0.125), atol=1e-9)


def test_selection_other_than_fixed_is_refused(toy_flow):
    X, y, subjects, _ = toy_flow(2, 4)
    assert batched_unsupported(TrainConfig(selection="val-split"))
    with pytest.raises(MekitError, match="fixed"):
        fit_folds("ststnet", 2, X, y, loso_folds(subjects), TrainConfig(selection="test-oracle"))


def test_an_asked_for_channels_last_layout_is_refused_not_ignored(toy_flow):
    # vmap lays out the stacked convolutions itself; "auto" lets it, an explicit layout is
    # refused so that the run takes the per-fold loop, which honours it
    X, y, subjects, _ = toy_flow(2, 4)
    assert not batched_unsupported(TrainConfig(memory_format="auto"))
    assert not batched_unsupported(TrainConfig(memory_format="contiguous"))
    (why,) = batched_unsupported(TrainConfig(memory_format="channels_last"))
    assert "train.memory_format='channels_last'" in why
    nhwc = TrainConfig(memory_format="channels_last")
    with pytest.raises(MekitError, match="memory_format"):
        fit_folds("ststnet", 2, X, y, loso_folds(subjects), nhwc)


def test_fp16_is_refused_for_want_of_loss_scaling(monkeypatch):
    monkeypatch.setattr(batched, "resolve_device", lambda name: torch.device("cuda"))
    assert not batched_unsupported(TrainConfig(precision="bf16"))
    (why,) = batched_unsupported(TrainConfig(precision="fp16"))
    assert "train.precision='fp16'" in why and "loss scaling" in why


def test_a_group_out_of_gpu_memory_is_trained_again_in_halves(toy_flow, monkeypatch, caplog):
    X, y, subjects, _ = toy_flow(4, 3)
    folds = loso_folds(subjects)
    in_pairs = fit_folds("ststnet", 2, X, y, folds, FAST, folds_at_once=2)
    real = BatchedTrainer._fit_group
    tried = []

    def small_gpu(self, X, y, group, progress, checkpoints=None):
        tried.append(len(group))
        if len(group) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, X, y, group, progress, checkpoints)

    monkeypatch.setattr(BatchedTrainer, "_fit_group", small_gpu)
    with caplog.at_level("WARNING", logger="mekit.train.batched"):
        models = fit_folds("ststnet", 2, X, y, folds, FAST, folds_at_once=4)
    assert tried == [4, 2, 2]
    assert all(_same(a, b) for a, b in zip(models, in_pairs, strict=True))
    assert "4 folds at once ran out of GPU memory; training them as 2 and 2" in caplog.text


def test_a_single_fold_out_of_gpu_memory_is_an_error(toy_flow, monkeypatch):
    X, y, subjects, _ = toy_flow(2, 3)
    tried = []

    def no_memory(self, X, y, group, progress, checkpoints=None):
        tried.append(len(group))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(BatchedTrainer, "_fit_group", no_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        fit_folds("ststnet", 2, X, y, loso_folds(subjects), FAST, folds_at_once=2)
    assert tried == [2, 1]  # halved once, then the first single fold gives up


def test_a_steps_batches_are_gathered_and_augmented_where_the_samples_live():
    # on a GPU the samples are moved there once and each step's batches are made there (the
    # meta device checks placement as a GPU does); the draws come from the folds' generators
    spec = get_spec("off_apexnet")
    config = TrainConfig(augment_mixup=0.2, augment_rotation_deg=10.0, augment_erase=0.5)
    x = torch.randn(6, *spec.input_shape)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    picks = [torch.tensor([0, 1]), torch.tensor([2, 5])]

    def batches(x_all: torch.Tensor) -> tuple[torch.Tensor, ...]:
        gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
        flow, magnitude = _flow_channels(spec)
        return batched.fold_batches(x_all, y, picks, gens, config, spec, flow, magnitude)

    xb, yb, others, lams = batches(x.to("meta"))
    assert [t.device.type for t in (xb, yb, others, lams)] == ["meta"] * 4
    assert xb.shape == (2, 2, *spec.input_shape) and yb.shape == others.shape == (2, 2)
    cpu = batches(x)
    assert cpu[0].shape == xb.shape and torch.equal(cpu[1], y[torch.stack(picks)])
    again = batches(x)
    assert all(torch.equal(a, b) for a, b in zip(cpu, again, strict=True))


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("off_apexnet", {"augment_rotation_deg": 10.0, "augment_scale": 0.1, "augment_erase": 0.5}),
        ("off_apexnet", {"augment_translate": 0.1, "augment_mixup": 0.2}),
        ("me_resnet_small", {"augment_temporal_jitter": 1, "augment_erase": 0.5}),
    ],
)
@pytest.mark.parametrize("chunk_bytes", [1, 1 << 30])  # a fold per chunk; all folds at once
def test_all_folds_augmented_at_once_are_each_folds_own_batch_augmented_alone(
    name, settings, chunk_bytes, monkeypatch
):
    # the transforms run once on many folds' samples together; each fold's batch must be what
    # augmenting it alone with its own generator gives (flip, affine, erase, jitter, mixup)
    monkeypatch.setattr(batched, "CPU_AUGMENT_BYTES", chunk_bytes)
    spec = get_spec(name)
    config = TrainConfig(**settings)
    x = torch.randn(8, *spec.input_shape)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    picks = [torch.tensor([0, 1, 2]), torch.tensor([3, 7, 5]), torch.tensor([6, 6, 4])]
    flow, magnitude = _flow_channels(spec)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1, 2)]
    together = batched.fold_batches(x, y, picks, gens, config, spec, flow, magnitude)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1, 2)]
    for f, (idx, g) in enumerate(zip(picks, gens, strict=True)):
        alone = augment_batch(x[idx], config, spec, g, flow, magnitude)
        labels = y[idx]
        if config.augment_mixup:
            alone, other, lam = mixup(alone, labels, g, config.augment_mixup)
            assert torch.equal(together[2][f], other) and together[3][f] == torch.tensor(lam)
        assert torch.equal(together[0][f], alone) and torch.equal(together[1][f], labels)
    assert not torch.equal(together[0], x[torch.stack(picks)])  # it did augment
    with pytest.raises(ValueError, match="fold 1 takes a batch of 2"):
        uneven = [picks[0], picks[1][:2]]
        batched.fold_batches(x, y, uneven, gens[:2], config, spec, flow, magnitude)


@pytest.mark.parametrize("name", ["ststnet", "mobilevitv3_xxs", "keyframe_gru"])
def test_bf16_autocast_trains_fold_batched_through_every_kind_of_norm(name):
    # batch norm (STSTNet), batch and layer norm (MobileViTv3), group and layer norm (keyframe
    # GRU): under vmap, torch's norms refused a bf16 input beside fp32 parameters, so on a GPU
    # (bf16 by default) every such model failed at its first step
    spec = get_spec(name)
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (4, *spec.input_shape)).astype(np.float32)
    y = np.array([0, 1, 0, 1])
    folds = loso_folds(["a", "a", "b", "b"])
    config = TrainConfig(epochs=2, batch_size=2)
    fp32 = fit_folds(name, 2, X, y, folds, config)
    bf16 = fit_folds(name, 2, X, y, folds, replace(config, precision="bf16"))
    for fold, a, b in zip(folds, fp32, bf16, strict=True):
        torch.manual_seed(config.seed + fold.index)
        start = parameters_to_vector(create_model(name, 2).parameters())
        step32 = (parameters_to_vector(a.parameters()) - start).detach()
        step16 = (parameters_to_vector(b.parameters()) - start).detach()
        assert torch.isfinite(step16).all() and not torch.equal(step16, step32)
        # the same start, batches and dropout masks: bf16 rounding alone tilts the update
        # (cosine .66-.997 measured); a broken bf16 path would not point the same way
        assert torch.nn.functional.cosine_similarity(step16, step32, dim=0) > 0.5


@pytest.mark.parametrize("spec", list_models(), ids=lambda s: s.name)
def test_every_registered_model_trains_fold_batched(spec):
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (4, *spec.input_shape)).astype(np.float32)
    y = np.array([0, 1, 0, 1])
    folds = loso_folds(["a", "a", "b", "b"])
    models = fit_folds(spec.name, 2, X, y, folds, TrainConfig(epochs=1, batch_size=2))
    assert len(models) == 2 and not _same(models[0], models[1])
    assert all(not m.training for m in models)
