"""Groups of folds trained together, and folds trained one model at a time, save their
progress and resume from it (`mekit.train.group_state`): an interrupted run ends exactly as an
uninterrupted one."""

from __future__ import annotations

import logging

import pytest
import torch

from mekit.train import batched as batched_module
from mekit.train import ensemble as ensemble_module
from mekit.train import group_state
from mekit.train import loso as loso_module
from mekit.train.batched import BatchedTrainer
from mekit.train.ensemble import KernelTrainer, native_kernel_available
from mekit.train.estimators import NetworkTrainer
from mekit.train.group_state import GroupCheckpoints, GroupState
from mekit.train.loop import TrainConfig
from mekit.train.loso import cross_validate
from mekit.train.splits import Fold

from .conftest import assert_same_run

LABELS = ["neg", "pos"]


def _folds(*indices: int) -> list[Fold]:
    return [Fold(i, f"s{i}", [0], [1]) for i in indices]


def test_a_group_state_round_trips_and_refuses_another_runs_file(tmp_path, caplog):
    checkpoints = GroupCheckpoints(tmp_path, {0: "a", 1: "b", 2: "c"})
    state = checkpoints.for_folds(_folds(0, 1))
    assert state.path.name == "group_000-001_2.pt" and state.load() is None
    saved = {"step": 3, "weights": torch.arange(4.0), "rng": [2**64 - 1, 5]}
    state.save(lambda: saved)
    loaded = checkpoints.for_folds(_folds(0, 1)).load()
    assert loaded["step"] == 3 and loaded["rng"] == [2**64 - 1, 5]
    assert torch.equal(loaded["weights"], saved["weights"])
    # the same folds under other fingerprints (other data or settings): not resumed
    assert GroupCheckpoints(tmp_path, {0: "a", 1: "x"}).for_folds(_folds(0, 1)).load() is None
    state.path.write_bytes(b"torn")
    with caplog.at_level(logging.WARNING):
        assert state.load() is None
    assert "unreadable group progress" in caplog.text
    state.clear()
    assert not state.path.exists()
    state.clear()  # nothing left to remove: fine


def test_a_save_is_due_every_save_every_s(monkeypatch, tmp_path):
    state = GroupState(tmp_path / "g.pt", "f")
    monkeypatch.setattr(group_state, "SAVE_EVERY_S", 3600.0)
    assert not state.due()
    monkeypatch.setattr(group_state, "SAVE_EVERY_S", 0.0)
    assert state.due()
    state.save_seconds = 3600.0  # a save that took long waits its share of the time
    assert not state.due()


class Interrupted(Exception):
    """Stands for the Ctrl-C or kill that stops a run."""


def _interrupt_after(monkeypatch, module, name: str, calls: int) -> None:
    """Make module.name raise `Interrupted` on its call number `calls` + 1."""
    real = getattr(module, name)
    count = {"n": 0}

    def wrapped(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise Interrupted
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)


def _count_calls(monkeypatch, module, name: str) -> dict[str, int]:
    """Count the calls of module.name (in the returned dict's "n")."""
    real, calls = getattr(module, name), {"n": 0}

    def counted(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def _save_always(monkeypatch) -> None:
    monkeypatch.setattr(group_state, "SAVE_EVERY_S", 0.0)
    monkeypatch.setattr(group_state, "SAVE_COST_SHARE", 0)


def _run(data, trainer, checkpoint_dir=None):
    X, y, subjects, ids = data
    return cross_validate(
        X, y, subjects, ids, LABELS, trainer, checkpoint_dir=checkpoint_dir, progress=False
    )


@pytest.fixture
def data(toy_flow):
    return toy_flow(3, 4, seed=1, amplitude=0.5)


def test_an_interrupted_fold_batched_group_resumes_where_it_stopped(data, tmp_path, monkeypatch):
    # STSTNet has dropout (the dropout generator), mixup and the affine step draw from each
    # fold's generator, and the sample streams carry a partial epoch across the interruption
    config = TrainConfig(
        epochs=3, batch_size=4, augment_mixup=0.2, augment_rotation_deg=5.0, fused_adam=False
    )
    trainer = BatchedTrainer("ststnet", 2, config, folds_at_once=3)
    uninterrupted = _run(data, trainer)

    _save_always(monkeypatch)  # after every step
    _interrupt_after(monkeypatch, batched_module, "fold_batches", 4)
    with pytest.raises(Interrupted):
        _run(data, trainer, tmp_path)
    (progress,) = tmp_path.glob("group_*.pt")
    assert torch.load(progress, weights_only=True)["state"]["step"] == 4
    monkeypatch.undo()

    resumed = _run(data, trainer, tmp_path)
    assert_same_run(resumed, uninterrupted)
    assert not list(tmp_path.glob("group_*.pt"))  # removed once its group finished


@pytest.mark.parametrize(
    "backend",
    [
        "torch",
        pytest.param(
            "native",
            marks=pytest.mark.skipif(not native_kernel_available(), reason="no C compiler"),
        ),
    ],
)
def test_an_interrupted_kernel_group_resumes_at_its_last_epoch(
    data, tmp_path, monkeypatch, backend
):
    config = TrainConfig(epochs=4, batch_size=4)
    trainer = KernelTrainer("ststnet", 2, config, backend=backend)
    uninterrupted = _run(data, trainer)

    _save_always(monkeypatch)  # at every epoch's end
    steps_per_epoch = 2  # 8 training samples per fold, batches of 4
    trainer_class = ensemble_module._NativeTrainer if backend == "native" else None
    trainer_class = trainer_class or ensemble_module._TorchTrainer
    _interrupt_after(monkeypatch, trainer_class, "step", 2 * steps_per_epoch + 1)
    with pytest.raises(Interrupted):
        _run(data, trainer, tmp_path)
    (progress,) = tmp_path.glob("group_*.pt")
    assert torch.load(progress, weights_only=True)["state"]["step"] == 2  # epochs done
    monkeypatch.undo()

    resumed = _run(data, trainer, tmp_path)
    assert_same_run(resumed, uninterrupted)  # the histories of the first epochs included
    assert not list(tmp_path.glob("group_*.pt"))


@pytest.mark.parametrize(
    "settings",
    [
        # dropout (STSTNet's), mixup and the affine step: every random stream of a fold
        {"epochs": 3, "augment_mixup": 0.2, "augment_rotation_deg": 5.0},
        # early stopping on held-out training subjects: the best epoch so far and its weights
        {"epochs": 6, "lr": 1e-2, "selection": "val-split", "val_fraction": 0.5, "patience": 2},
    ],
    ids=["fixed", "val-split"],
)
def test_an_interrupted_fold_of_the_per_fold_loop_resumes_at_its_last_epoch(
    data, tmp_path, epochs, settings
):
    trainer = NetworkTrainer("ststnet", 2, TrainConfig(batch_size=4, **settings))
    uninterrupted = _run(data, trainer)
    trained = [len(h) for h in uninterrupted.histories.values()]  # per fold, in fold order
    # Fold 1 is interrupted in its last epoch. Here (val-split) its best epoch (2) comes before
    # that (4), so the rerun stops where it should only if it restored the best epoch.
    fold_1 = list(uninterrupted.histories)[1]
    if settings.get("selection") == "val-split":
        assert uninterrupted.best_epochs[fold_1] < trained[1]

    epochs.stop_at(trained[0] + trained[1])
    with pytest.raises(epochs.Interrupted):
        _run(data, trainer, tmp_path)
    assert (tmp_path / "fold_000.npz").exists()
    progress = tmp_path / "fold_001.progress.pt"
    assert torch.load(progress, weights_only=True)["state"]["step"] == trained[1] - 1

    epochs.reset()
    resumed = _run(data, trainer, tmp_path)
    assert_same_run(resumed, uninterrupted)  # the history of fold 1's first epochs included
    assert epochs.trained == 1 + trained[2]  # fold 1's last epoch, then fold 2
    assert not list(tmp_path.glob("*.progress.pt"))


def test_a_fold_stopped_after_its_training_but_before_its_save_continues_it(data, tmp_path, epochs):
    # The fit has ended, the fold file is not yet written: the progress file must still be
    # there, or the rerun would train the fold from its start.
    trainer = NetworkTrainer("ststnet", 2, TrainConfig(epochs=3, batch_size=4))
    uninterrupted = _run(data, trainer)
    epochs.reset()
    with pytest.MonkeyPatch.context() as patch:
        _interrupt_after(patch, loso_module._Checkpoints, "save", 1)  # fold 1's file
        with pytest.raises(Interrupted):
            _run(data, trainer, tmp_path)
    assert epochs.trained == 6  # folds 0 and 1 trained in full
    assert not (tmp_path / "fold_001.npz").exists()
    assert not (tmp_path / "fold_000.progress.pt").exists()  # fold 0 saved: removed
    progress = tmp_path / "fold_001.progress.pt"
    assert torch.load(progress, weights_only=True)["state"]["step"] == 2  # its last save

    epochs.reset()
    resumed = _run(data, trainer, tmp_path)
    assert_same_run(resumed, uninterrupted)
    assert epochs.trained == 1 + 3  # fold 1's last epoch, then fold 2
    assert not list(tmp_path.glob("*.progress.pt"))


def test_a_group_stopped_before_its_folds_are_saved_continues_its_training(
    data, tmp_path, monkeypatch
):
    config = TrainConfig(epochs=2, batch_size=4, fused_adam=False)
    trainer = BatchedTrainer("ststnet", 2, config, folds_at_once=3)
    uninterrupted = _run(data, trainer)

    _save_always(monkeypatch)  # after every step but the last
    with pytest.MonkeyPatch.context() as patch:
        _interrupt_after(patch, loso_module._Checkpoints, "save", 1)  # the group's 2nd fold
        with pytest.raises(Interrupted):
            _run(data, trainer, tmp_path)
    (progress,) = tmp_path.glob("group_*.pt")
    steps = torch.load(progress, weights_only=True)["state"]["step"]  # all steps but one

    calls = _count_calls(monkeypatch, batched_module, "fold_batches")
    resumed = _run(data, trainer, tmp_path)
    assert_same_run(resumed, uninterrupted)
    assert steps > 1 and calls["n"] == 1  # only the step after the last save
    assert not list(tmp_path.glob("group_*.pt"))


def test_a_rerun_removes_the_progress_of_folds_already_saved(data, tmp_path, epochs):
    # Stopped between a fold's save and the removal of its progress file.
    trainer = NetworkTrainer("ststnet", 2, TrainConfig(epochs=2, batch_size=4))
    with pytest.MonkeyPatch.context() as patch:
        _interrupt_after(patch, GroupState, "clear", 0)
        with pytest.raises(Interrupted):
            _run(data, trainer, tmp_path)
    assert (tmp_path / "fold_000.npz").exists()
    assert (tmp_path / "fold_000.progress.pt").exists()

    epochs.reset()
    _run(data, trainer, tmp_path)
    assert epochs.trained == 2 * 2  # folds 1 and 2; fold 0 was loaded
    assert not list(tmp_path.glob("*.progress.pt"))


def test_the_halves_of_a_group_out_of_gpu_memory_keep_their_progress_until_saved(
    data, tmp_path, monkeypatch
):
    config = TrainConfig(epochs=2, batch_size=4, fused_adam=False)
    trainer = BatchedTrainer("ststnet", 2, config, folds_at_once=3)
    real = BatchedTrainer._fit_group

    def small_gpu(self, X, y, group, progress, checkpoints=None):
        if len(group) > 2:  # 3 folds are trained as 2 and 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, X, y, group, progress, checkpoints)

    monkeypatch.setattr(BatchedTrainer, "_fit_group", small_gpu)
    uninterrupted = _run(data, trainer)

    _save_always(monkeypatch)
    with pytest.MonkeyPatch.context() as patch:
        _interrupt_after(patch, loso_module._Checkpoints, "save", 0)  # before any fold's file
        with pytest.raises(Interrupted):
            _run(data, trainer, tmp_path)
    left = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert left == ["fold_002.progress.pt", "group_000-001_2.pt"]  # the halves' progress

    calls = _count_calls(monkeypatch, batched_module, "fold_batches")
    resumed = _run(data, trainer, tmp_path)
    assert_same_run(resumed, uninterrupted)
    assert calls["n"] == 2  # each half's step after its last save
    assert not list(tmp_path.glob("*.pt"))  # the runner removed the halves' files too
