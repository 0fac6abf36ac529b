"""The batched fold ensemble: same results as the plain loop, no leaks between folds."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from mekit.errors import MekitError
from mekit.train import ensemble as ens
from mekit.train.ensemble import (
    ENSEMBLE_MODELS,
    fit_fold_ensemble,
    native_kernel_available,
    run_loso_ensemble,
)
from mekit.train.loop import TrainConfig
from mekit.train.loso import run_loso
from mekit.train.splits import Fold, loso_folds

LABELS = ["neg", "pos"]
BACKENDS = [
    "torch",
    pytest.param(
        "native",
        marks=pytest.mark.skipif(
            not native_kernel_available(), reason="no C compiler for the native kernel"
        ),
    ),
]
needs_native = pytest.mark.skipif(
    not native_kernel_available(), reason="no C compiler for the native kernel"
)


@pytest.fixture
def data(toy_flow):
    # 4 subjects of 6, 6, 6, 5 samples: training sets of 17 or 18 samples, so with batches
    # of 8 folds differ in batch count (8 + 9 with the 1-sample tail folded in, vs 8 + 8 + 2)
    X, y, subjects, ids = toy_flow(4, 6, seed=0, amplitude=0.5)
    return X[:-1], y[:-1], subjects[:-1], ids[:-1]


def _probs(result) -> np.ndarray:
    return result.predictions[[f"prob_{lab}" for lab in result.labels]].to_numpy()


def _losses(result) -> np.ndarray:
    return np.array([[r["train_loss"] for r in h] for h in result.histories.values()])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"loss": "focal", "class_weights": "balanced"},
        {"weight_decay": 0.01, "augment_flip": False},
    ],
)
def test_matches_the_plain_loop_without_dropout(data, backend, options):
    # Same initial weights, batches and flips as fit(); without dropout (whose masks come
    # from a different stream) the ensemble is the plain loop up to float rounding.
    _assert_same_as_plain_loop(
        data, TrainConfig(epochs=4, batch_size=8, lr=1e-2, **options), backend
    )


def _assert_same_as_plain_loop(data, config, backend):
    """The ensemble (no dropout) and the plain loop give the same probabilities and losses;
    returns the ensemble's result."""
    X, y, subjects, ids = data
    kwargs = {"dropout": 0.0}
    a = run_loso_ensemble(
        X, y, subjects, ids, LABELS, config, progress=False, model_kwargs=kwargs, backend=backend
    )
    b = run_loso(
        X, y, subjects, ids, LABELS, "ststnet", config, progress=False, model_kwargs=kwargs
    )
    np.testing.assert_allclose(_probs(a), _probs(b), atol=2e-4)
    np.testing.assert_allclose(_losses(a), _losses(b), rtol=1e-4, atol=1e-5)
    return a


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_the_plain_loop_from_a_model_file(data, backend, tmp_path):
    # train.init_from: every fold starts from the file's tensors (the head, of another shape,
    # from its own seed), as fit() starts; the rest of the run is the plain loop's.
    from mekit.models import create_model
    from mekit.train.checkpoint import save_model

    torch.manual_seed(123)
    pretrained = create_model("ststnet", 5, dropout=0.0)
    path, _ = save_model(
        tmp_path / "pre", pretrained, model_name="ststnet", labels=list("abcde"),
        model_kwargs={"dropout": 0.0}, input={}, config={},
    )  # fmt: skip
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-2, init_from=str(path))
    a = _assert_same_as_plain_loop(data, config, backend)
    X, y, subjects, ids = data
    fresh = run_loso_ensemble(
        X, y, subjects, ids, LABELS, TrainConfig(epochs=3, batch_size=8, lr=1e-2),
        progress=False, model_kwargs={"dropout": 0.0}, backend=backend,
    )  # fmt: skip
    assert not np.allclose(_probs(a), _probs(fresh), atol=1e-3)


@needs_native
@pytest.mark.parametrize("dropout", [0.5, 0.2])
def test_native_and_torch_backends_agree_with_dropout(data, dropout):
    # Both draw the same per-fold dropout masks, so the kernel's whole training step (head,
    # dropout, closed-form BN/max-pool backward, Adam) is checked against torch autograd.
    X, y, subjects, ids = data
    config = TrainConfig(epochs=3, batch_size=7, lr=1e-2, loss="focal", class_weights="balanced")
    a, b = (
        run_loso_ensemble(
            X,
            y,
            subjects,
            ids,
            LABELS,
            config,
            progress=False,
            model_kwargs={"dropout": dropout},
            backend=backend,
        )
        for backend in ("native", "torch")
    )
    np.testing.assert_allclose(_probs(a), _probs(b), atol=1e-4)
    np.testing.assert_allclose(_losses(a), _losses(b), rtol=1e-4, atol=1e-5)


def test_output_schema_is_run_loso_s(data):
    X, y, subjects, ids = data
    config = TrainConfig(epochs=2, batch_size=8)
    a = run_loso_ensemble(X, y, subjects, ids, LABELS, config, progress=False)
    b = run_loso(X, y, subjects, ids, LABELS, "ststnet", config, progress=False)
    assert type(a) is type(b)
    assert list(a.predictions.columns) == list(b.predictions.columns)
    assert (a.predictions.dtypes == b.predictions.dtypes).all()
    for column in ("id", "subject", "fold", "true"):
        assert a.predictions[column].tolist() == b.predictions[column].tolist()
    assert list(a.histories) == list(b.histories)
    assert all(list(h[0]) == ["epoch", "train_loss"] for h in a.histories.values())
    assert all(len(h) == 2 for h in a.histories.values())
    assert a.best_epochs == b.best_epochs == dict.fromkeys(a.histories, 2)
    assert (a.labels, a.model_name, a.config, a.oracle) == (
        b.labels,
        b.model_name,
        b.config,
        b.oracle,
    )
    np.testing.assert_allclose(_probs(a).sum(axis=1), 1.0, atol=1e-5)
    assert a.metrics().n == len(y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic_and_independent_of_threads(data, backend):
    X, y, subjects, ids = data
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-2, seed=5)  # dropout on (default)
    # The native kernel runs each fold on one thread: any thread count gives the same floats.
    counts = (1, 2, 1) if backend == "native" else (1, 1)
    runs = [
        run_loso_ensemble(
            X, y, subjects, ids, LABELS, config, progress=False, threads=t, backend=backend
        )
        for t in counts
    ]
    for other in runs[1:]:
        np.testing.assert_array_equal(_probs(runs[0]), _probs(other))
        np.testing.assert_array_equal(_losses(runs[0]), _losses(other))
    different_seed = run_loso_ensemble(
        X,
        y,
        subjects,
        ids,
        LABELS,
        TrainConfig(epochs=3, batch_size=8, lr=1e-2, seed=6),
        progress=False,
        backend=backend,
    )
    assert not np.array_equal(_probs(runs[0]), _probs(different_seed))


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fold_never_sees_its_held_out_subject(data, backend):
    # Replacing the held-out subject's inputs and labels must leave that fold's trained
    # weights (and BN running stats) bit for bit unchanged; the other folds train on those
    # samples, so theirs change. Dropout on, flips on: the real training path.
    X, y, subjects, ids = data
    folds = loso_folds(subjects)
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-2)
    first = fit_fold_ensemble(X, y, folds, 2, config, backend=backend)
    held = folds[1]
    X2, y2 = X.copy(), y.copy()
    rng = np.random.default_rng(1)
    X2[held.test_idx] = rng.normal(0, 5, X2[held.test_idx].shape).astype(np.float32)
    y2[held.test_idx] = 1 - y2[held.test_idx]
    second = fit_fold_ensemble(X2, y2, folds, 2, config, backend=backend)
    for fold, a, b in zip(folds, first.models, second.models, strict=True):
        sa, sb = _state(a), _state(b)
        same = all(torch.equal(sa[k], sb[k]) for k in sa)
        assert same == (fold.index == held.index), fold.test_subject
    assert first.histories[held.index] == second.histories[held.index]


@needs_native
@pytest.mark.parametrize("loss", ["ce", "focal"])
def test_native_gradients_match_autograd_and_ignore_padding(toy_flow, loss):
    # Folds with batches of different sizes (padding slots, one fold skipped this step):
    # the kernel's hand-derived backward equals torch autograd of the same model, and the
    # padding slots' contents never matter (BN statistics over the real batch only).
    X, y, subjects, _ = toy_flow(4, 6, seed=3)
    y = np.minimum(np.arange(len(y)) % 5, 2)  # imbalanced: balanced weights != 1
    folds = loso_folds(subjects)
    config = TrainConfig(loss=loss, class_weights="balanced", batch_size=9)
    bmax = 9
    rng = np.random.default_rng(0)
    bsz = np.array([9, 5, 0, 2], dtype=np.int32)
    idx = np.zeros((4, bmax), dtype=np.int32)
    flip = np.zeros((4, bmax), dtype=np.uint8)
    for f, fold in enumerate(folds):
        chosen = rng.permutation(fold.train_idx)[: bsz[f]]
        idx[f, : bsz[f]] = chosen
        flip[f, : bsz[f]] = rng.integers(0, 2, bsz[f])

    def trainer(kind: str, width: int) -> ens._Trainer:
        fitted = fit_fold_ensemble(
            X, y, folds, 3, TrainConfig(epochs=1, batch_size=8), model_kwargs={"dropout": 0}
        )
        packed = [ens._pack(m) for m in fitted.models]  # trained a little: BN gamma varies
        params = torch.stack([p for p, _ in packed])
        params[:, ens._OFF_G : ens._OFF_G + 4] *= -1  # negative gamma: min-pool selection
        running = torch.stack([r for _, r in packed])
        class_w = torch.stack(
            [torch.from_numpy(ens.balanced_class_weights(y[fold.train_idx], 3)) for fold in folds]
        )
        x = torch.from_numpy(X)
        setup = ens._Setup(
            x2=torch.stack([x, ens.hflip(x, 0)], dim=1).contiguous(),
            labels=torch.from_numpy(y),
            class_w=class_w,
            seeds=[0, 1, 2, 3],
            num_classes=3,
            config=config,
            dropout=0.0,
            bn_eps=1e-5,
            bn_momentum=0.1,
            threads=2,
        )
        if kind == "torch":
            return ens._TorchTrainer(setup, params, running)
        return ens._NativeTrainer(setup, params, running, ens._load_kernel(), width)

    expected = trainer("torch", bmax).gradients(idx, flip, bsz)
    got = trainer("native", bmax).gradients(idx, flip, bsz)
    assert expected[2].abs().max() == 0 and got[2].abs().max() == 0  # skipped fold
    scale = expected.abs().amax(dim=1, keepdim=True).clamp_min(1e-6)
    assert ((got - expected).abs() / scale).max() < 1e-4

    garbage_idx, garbage_flip = idx.copy(), flip.copy()
    for f in range(4):
        garbage_idx[f, bsz[f] :] = folds[f].test_idx[0]  # even a held-out sample
        garbage_flip[f, bsz[f] :] = 1
    native = trainer("native", bmax)
    assert torch.equal(native.gradients(garbage_idx, garbage_flip, bsz), got)
    wider = trainer("native", bmax + 4)
    pad = np.zeros((4, 4), dtype=np.int32)
    assert torch.equal(
        wider.gradients(np.hstack([idx, pad]), np.hstack([flip, pad.astype(np.uint8)]), bsz), got
    )


def test_custom_folds(data):
    X, y, subjects, ids = data
    folds = loso_folds(subjects)
    halves = [
        Fold(0, "first", np.concatenate([f.test_idx for f in folds[2:]]), folds[0].test_idx),
        Fold(7, "second", np.concatenate([f.test_idx for f in folds[:2]]), folds[3].test_idx),
    ]
    result = run_loso_ensemble(
        X, y, subjects, ids, LABELS, TrainConfig(epochs=2, batch_size=8), "ststnet", False, halves
    )
    assert list(result.histories) == ["first", "second"]
    assert len(result.predictions) == len(folds[0].test_idx) + len(folds[3].test_idx)
    assert set(result.predictions["fold"]) == {0, 7}


def test_learns_like_the_plain_loop(toy_flow):
    # With dropout (different masks than fit) the two are equal in distribution only: both
    # learn the toy task (class = sign of u, so no flips).
    X, y, subjects, ids = toy_flow(3, 12)
    config = TrainConfig(epochs=15, batch_size=8, lr=1e-2, augment_flip=False)
    a = run_loso_ensemble(X, y, subjects, ids, LABELS, config, progress=False)
    b = run_loso(X, y, subjects, ids, LABELS, "ststnet", config, progress=False)
    assert a.metrics().accuracy >= 0.9 and b.metrics().accuracy >= 0.9
    assert abs(_losses(a)[:, -1].mean() - _losses(b)[:, -1].mean()) < 0.15


def test_unsupported_settings_raise(data):
    X, y, subjects, ids = data
    assert ENSEMBLE_MODELS == ("ststnet",)
    with pytest.raises(MekitError, match="supports models ststnet"):
        run_loso_ensemble(X, y, subjects, ids, LABELS, TrainConfig(), model_name="dtscnn")
    for config in (
        TrainConfig(selection="val-split"),
        TrainConfig(selection="test-oracle"),
        TrainConfig(augment_rotation_deg=10),
        TrainConfig(augment_erase=0.5),
        TrainConfig(augment_mixup=0.2),
        TrainConfig(label_smoothing=0.1),
        TrainConfig(sampling="balanced"),
    ):
        with pytest.raises(MekitError, match="plain per-fold loop"):
            run_loso_ensemble(X, y, subjects, ids, LABELS, config, progress=False)
    with pytest.raises(MekitError, match="stream widths"):
        run_loso_ensemble(
            X,
            y,
            subjects,
            ids,
            LABELS,
            TrainConfig(epochs=1),
            progress=False,
            model_kwargs={"stream_widths": (4, 4)},
        )
    with pytest.raises(MekitError, match=r"\(N, 3, 28, 28\)"):
        run_loso_ensemble(X[:, :, :20, :20], y, subjects, ids, LABELS, TrainConfig())
    with pytest.raises(MekitError, match="backend"):
        run_loso_ensemble(X, y, subjects, ids, LABELS, TrainConfig(), backend="gpu")


def test_falls_back_to_torch_when_the_kernel_cannot_build(data, monkeypatch, tmp_path, caplog):
    X, y, subjects, ids = data
    monkeypatch.setattr(ens, "_kernel", None)
    monkeypatch.setattr(ens, "_kernel_error", None)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv(ens._KERNEL_ENV, str(tmp_path / "kernels"))
    config = TrainConfig(epochs=1, batch_size=8)
    with caplog.at_level(logging.WARNING, logger="mekit.train.ensemble"):
        result = run_loso_ensemble(X, y, subjects, ids, LABELS, config, progress=False)
    assert "torch backend" in caplog.text
    assert len(result.predictions) == len(y)
    with pytest.raises(MekitError, match="native ensemble kernel is unavailable"):
        run_loso_ensemble(X, y, subjects, ids, LABELS, config, progress=False, backend="native")
