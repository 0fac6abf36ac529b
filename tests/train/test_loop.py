from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mekit.errors import MekitError
from mekit.train import TrainConfig, fit, predict_proba
from mekit.train.loop import epoch_order

FAST = {"epochs": 6, "batch_size": 8, "lr": 1e-2}


@pytest.fixture
def data(toy_flow):
    X, y, _, _ = toy_flow(2, 12, amplitude=0.5)
    return X[:16], y[:16], X[16:], y[16:]


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def test_same_seed_same_result_and_caller_rng_untouched(data):
    X, y, Xv, yv = data
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    a = fit("ststnet", 2, X, y, TrainConfig(**FAST), Xv, yv)
    assert torch.equal(torch.get_rng_state(), rng_before)
    b = fit("ststnet", 2, X, y, TrainConfig(**FAST), Xv, yv)
    c = fit("ststnet", 2, X, y, TrainConfig(**FAST, seed=1), Xv, yv)
    assert a.history == b.history
    assert all(torch.equal(p, q) for p, q in zip(_weights(a.model), _weights(b.model), strict=True))
    assert a.history != c.history
    assert [h["epoch"] for h in a.history] == list(range(1, 7))
    assert {"train_loss", "val_loss", "val_acc"} <= set(a.history[0])
    assert a.stopped_epoch == a.best_epoch == 6  # fixed: the last epoch


def test_fit_restores_thread_count(data):
    X, y, _, _ = data
    threads = torch.get_num_threads()
    fit("ststnet", 2, X, y, TrainConfig(epochs=1, num_threads=1))
    assert torch.get_num_threads() == threads


def test_val_split_stops_early_and_restores_best_weights(data):
    X, y, Xv, yv = data
    rng = np.random.default_rng(0)
    y_noise = rng.integers(0, 2, len(y))  # random labels: validation loss soon rises
    cfg = TrainConfig(epochs=60, batch_size=8, lr=3e-2, selection="val-split", patience=4)
    result = fit("ststnet", 2, X, y_noise, cfg, Xv, yv)
    assert result.stopped_epoch < 60
    assert result.stopped_epoch - result.best_epoch == 4
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1
    with torch.no_grad():
        kept = nn.functional.cross_entropy(result.model(torch.from_numpy(Xv)), torch.from_numpy(yv))
    assert float(kept) == pytest.approx(losses[result.best_epoch - 1], rel=1e-5)


def test_test_oracle_keeps_best_val_accuracy_epoch(data):
    X, y, Xv, yv = data
    result = fit("ststnet", 2, X, y, TrainConfig(**FAST, selection="test-oracle"), Xv, yv)
    accs = [h["val_acc"] for h in result.history]
    assert result.best_epoch == int(np.argmax(accs)) + 1
    assert result.stopped_epoch == 6
    kept = (predict_proba(result.model, Xv).argmax(1) == yv).mean()
    assert kept == pytest.approx(max(accs))


def test_focal_and_balanced_weights_train(data):
    X, y, _, _ = data
    cfg = TrainConfig(**FAST, loss="focal", class_weights="balanced")
    result = fit("ststnet", 2, X, y, cfg)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_shuffled_epochs_are_the_permutations_they_always_were():
    y = torch.tensor([0, 1, 1, 2, 0, 1])
    a = epoch_order(y, torch.Generator().manual_seed(5), "shuffle")
    assert torch.equal(a, torch.randperm(6, generator=torch.Generator().manual_seed(5)))


def test_balanced_epochs_draw_every_present_class_equally_often():
    y = torch.tensor([0] * 90 + [2] * 10)  # class 1 absent
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([epoch_order(y, g, "balanced") for _ in range(200)])
    assert len(draws) == 200 * 100 and 0 <= int(draws.min()) and int(draws.max()) < 100
    share = torch.bincount(y[draws], minlength=3).double() / len(draws)
    assert share[1] == 0 and abs(float(share[0]) - 0.5) < 0.01 and abs(float(share[2]) - 0.5) < 0.01
    # within a class, every sample alike: each of the ten class-2 samples about 1/20 of draws
    rare = torch.bincount(draws[draws >= 90] - 90, minlength=10).double() / len(draws)
    assert torch.allclose(rare, torch.full((10,), 0.05, dtype=torch.float64), atol=0.005)
    again = epoch_order(y, torch.Generator().manual_seed(0), "balanced")
    assert torch.equal(again, draws[:100])


def test_balanced_sampling_trains_reproducibly_and_differently(toy_flow):
    X, y, _, _ = toy_flow(2, 8)
    keep = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:3]]  # 3 of one class
    base = {"epochs": 2, "batch_size": 4, "lr": 1e-2}
    plain = fit("ststnet", 2, X[keep], y[keep], TrainConfig(**base))
    a = fit("ststnet", 2, X[keep], y[keep], TrainConfig(**base, sampling="balanced"))
    b = fit("ststnet", 2, X[keep], y[keep], TrainConfig(**base, sampling="balanced"))
    assert a.history == b.history != plain.history


def test_predict_proba_rows_are_distributions(data):
    X, y, Xv, _ = data
    model = fit("ststnet", 2, X, y, TrainConfig(epochs=1)).model
    p = predict_proba(model, Xv)
    assert p.shape == (len(Xv), 2) and p.dtype == np.float32
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": "mse"},
        {"selection": "best"},
        {"class_weights": "auto"},
        {"sampling": "oversample"},
        {"epochs": 0},
        {"lr": 0.0},
        {"val_fraction": 1.0},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(MekitError, match=next(iter(kwargs))):
        TrainConfig(**kwargs)


def test_fit_input_errors(data):
    X, y, _, _ = data
    with pytest.raises(MekitError, match="needs X_val"):
        fit("ststnet", 2, X, y, TrainConfig(selection="val-split"))
    with pytest.raises(MekitError, match="labels"):
        fit("ststnet", 2, X, y[:-1], TrainConfig(epochs=1))
    with pytest.raises(MekitError, match="class indices"):
        fit("ststnet", 2, X, y + 1, TrainConfig(epochs=1))
    with pytest.raises(MekitError, match="28x28"):
        fit("ststnet", 2, X[:, :, :20, :20], y, TrainConfig(epochs=1))


def test_class_weights_come_from_focal_alpha_or_the_training_labels():
    from mekit.train.loop import class_weights

    y = np.array([0, 0, 0, 1])
    assert class_weights(y, 2, TrainConfig()) is None
    np.testing.assert_allclose(
        class_weights(y, 2, TrainConfig(class_weights="balanced")), [4 / 6, 4 / 2]
    )
    alpha = class_weights(y, 2, TrainConfig(loss="focal", focal_alpha=(0.25, 0.75)))
    np.testing.assert_allclose(alpha, [0.25, 0.75])
    with pytest.raises(MekitError, match="one per class"):
        class_weights(y, 3, TrainConfig(loss="focal", focal_alpha=(0.25, 0.75)))


def test_the_loop_does_not_import_the_pretraining_driver():
    # transfer.py trains with the loop; the loop warm-starts through warm_start.py instead
    import ast
    import inspect

    import mekit.train.loop as loop
    from mekit.train import transfer, warm_start

    tree = ast.parse(inspect.getsource(loop))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "mekit.train.transfer" not in imported and "mekit.train.warm_start" in imported
    assert transfer.transfer_weights is warm_start.transfer_weights
