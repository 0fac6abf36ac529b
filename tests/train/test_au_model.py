from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark_script import load_benchmark
from mekit.app.au_training import AUTrainConfig, train_au_model
from mekit.models import count_params, create_model, get_spec
from mekit.models.au_net import AU_LABELS
from mekit.synth.au_flows import AUS, au_flow_dataset
from mekit.synth.aus import AU_NAMES as RENDERED_NAMES
from mekit.train.au_model import AU_NAMES, AUDetector, _side, shipped_model_path
from mekit.train.augment import hflip
from mekit.train.checkpoint import file_sha256, load_model, model_paths, read_sidecar
from mekit.train.metrics import au_metrics

TINY = AUTrainConfig(n_train=64, n_val=32, epochs=1, batch_size=32, width=4, members=1)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("au") / "a"
    train_au_model(out, TINY)
    return out


def test_aunet_takes_28_px_flow_and_gives_one_logit_per_au():
    spec = get_spec("aunet")
    assert spec.input_shape == (3, 28, 28) and spec.channel_names == ("u", "v", "strain")
    model = create_model("aunet", len(AU_LABELS))
    assert model(torch.zeros(2, 3, 28, 28)).shape == (2, 14)
    assert [int(a.removeprefix("AU")) for a in AU_LABELS] == list(AUS)
    assert count_params(create_model("aunet", 14, width=16)) < 60_000
    assert AU_NAMES == RENDERED_NAMES  # the names analyze reports are the generator's


def test_training_is_bit_for_bit_reproducible(tiny, tmp_path):
    again = tmp_path / "b"
    train_au_model(again, TINY)
    assert file_sha256(model_paths(again)[0]) == file_sha256(model_paths(tiny)[0])
    meta = read_sidecar(tiny)
    # the packaged model's command with TINY's options that differ from it
    assert meta["training"]["retrain"].endswith("--seed 0 --n-train 64 --n-val 32 --epochs 1")
    assert "no real data" in meta["training"]["trained_on"]
    assert 0 <= meta["metrics"]["synthetic_macro_f1"] <= 1
    assert meta["input"]["threshold"] == meta["metrics"]["threshold"]
    assert AUDetector.load(tiny).threshold == meta["input"]["threshold"]


def test_detector_reads_any_scale_and_reports_regions(tiny):
    detector = AUDetector.load(tiny)
    x, _ = au_flow_dataset(3)
    probs = detector.probabilities(x * 7 + 3)  # min-max normalised inside: scale is irrelevant
    np.testing.assert_allclose(probs, detector.probabilities(x), atol=1e-6)
    detector.threshold = 0.0  # every AU is "present"
    found = detector.findings(x[0])
    assert [f.au for f in found] == sorted(AUS, key=lambda a: -probs[0][AUS.index(a)])
    by_au = {f.au: f for f in found}
    assert by_au[4].region == "brows" and by_au[17].region == "chin" and by_au[45].region == "eyes"
    assert by_au[12].name == "lip corner puller" and by_au[12].to_json()["au"] == 12


def test_side_follows_the_half_that_moved():
    motion = np.zeros((28, 28))
    motion[20, 3] = 1.0  # mouth rows, image left
    assert _side(motion, "mouth") == "left"
    assert _side(motion, "brows") == "both"  # nothing moved there
    motion[20, 24] = 0.9
    assert _side(motion, "mouth") == "both"


def test_the_shipped_model_is_small_and_says_how_to_retrain_it():
    sidecar = shipped_model_path()
    weights = model_paths(sidecar)[0]
    assert weights.stat().st_size < 1_000_000
    meta = json.loads(sidecar.read_text())
    assert meta["model"] == "aunet" and meta["labels"] == list(AU_LABELS)
    assert "python -m mekit.app.au_training" in meta["training"]["retrain"]
    assert "no real data" in meta["training"]["trained_on"]
    detector = AUDetector.shipped()
    x, y = au_flow_dataset(200, start=10_000_000)  # far beyond the training samples
    hits = sum(
        bool(p & {a for a, t in zip(AUS, row, strict=True) if t})
        for p, row in zip(detector.predict(x), y, strict=True)
    )
    assert hits > 0.6 * len(x)


def test_benchmark_skips_cleanly_without_a_corpus(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "real_aus.py"), str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "skipped" in run.stdout


def test_benchmark_gap_interval_on_hand_made_cases():
    gap_interval = load_benchmark("real_aus").gap_interval
    truth = [frozenset({4}), frozenset({4, 7}), frozenset({12}), frozenset({4})] * 5
    # the same predictions: no gap in any draw
    assert gap_interval(truth, truth, truth, aus=(4, 7, 12), resamples=50) == (0.0, 0.0)
    # perfect against nothing: every AU a draw holds scores 1 against 0
    nothing = [frozenset()] * len(truth)
    assert gap_interval(truth, truth, nothing, aus=(4, 7, 12), resamples=50) == (1.0, 1.0)
    # one AU12 missed of five: the gap's interval holds the whole-set gap (au_metrics')
    missed = truth[:-2] + [frozenset(), frozenset({4})]
    exact = au_metrics(truth, truth, (4, 7, 12)).macro_f1
    exact -= au_metrics(truth, missed, (4, 7, 12)).macro_f1
    low, high = gap_interval(truth, truth, missed, aus=(4, 7, 12), resamples=500)
    assert 0.0 <= low <= exact <= high <= 1 / 3


def test_an_ensemble_averages_members_trained_as_single_models(tiny, tmp_path):
    pair = tmp_path / "pair"
    train_au_model(pair, replace(TINY, members=2))
    ensemble = AUDetector.load(pair).loaded.model
    single = AUDetector.load(tiny).loaded.model
    assert read_sidecar(pair)["model_kwargs"]["members"] == 2
    # member 0 is the single model of the same seed, bit for bit; member 1 differs
    for key, value in single.state_dict().items():
        assert torch.equal(ensemble.members[0].state_dict()[key], value)
    assert not torch.equal(ensemble.members[1].classifier.weight, single.classifier.weight)
    x = torch.from_numpy(au_flow_dataset(4)[0])
    with torch.no_grad():
        mean = torch.stack([torch.sigmoid(m(x)) for m in ensemble.members]).mean(0)
        torch.testing.assert_close(torch.sigmoid(ensemble(x)), mean)


def test_shipped_detector_gives_the_mean_over_each_flow_and_its_mirror():
    """One batched call on the channels-last model, the same numbers as the plain two calls."""
    detector = AUDetector.shipped()
    x, _ = au_flow_dataset(5)
    plain = load_model(shipped_model_path()).model.eval()
    with torch.no_grad():
        c = torch.from_numpy(x)
        expected = (torch.sigmoid(plain(c)) + torch.sigmoid(plain(hflip(c, 0)))) / 2
    np.testing.assert_allclose(detector.probabilities(x), expected.numpy(), atol=1e-5)
    single = np.stack([detector.probabilities(s[None])[0] for s in x])
    np.testing.assert_allclose(single, expected.numpy(), atol=1e-5)


def test_flows_of_crops_laid_out_otherwise_move_into_the_au_models_layout():
    from mekit.faces import FaceConfig, alignment_matrix
    from mekit.faces.realign import crop_matrix, realign
    from mekit.synth.base_faces import BASE_FACES, load_landmarks
    from mekit.train.au_model import in_au_layout

    raw = load_landmarks(BASE_FACES[1]).astype(np.float64)
    flow = au_flow_dataset(1)[0][0]
    for config in [FaceConfig(size=128), FaceConfig(size=96)]:  # mekit's layout at any size
        m = alignment_matrix(raw, config)
        aligned = raw @ m[:, :2].T + m[:, 2]
        assert in_au_layout(flow, aligned, config.size) is flow
    # a tighter crop (as when the square is fitted inside a frame the face fills): warped
    tight = FaceConfig(size=128, margin=-0.1, forehead=0.0)
    m = alignment_matrix(raw, tight)
    aligned = raw @ m[:, :2].T + m[:, 2]
    moved = in_au_layout(flow, aligned, 128)
    expected = realign(flow, crop_matrix(aligned, (128, 128), 28), vectors=(0, 1))
    assert np.array_equal(moved, expected) and not np.allclose(moved, flow, atol=0.05)
    # the moved crop is mekit's: its landmarks map onto the default alignment's
    canon = alignment_matrix(raw, FaceConfig(size=28))
    back = crop_matrix(aligned, (128, 128), 28)
    ours = (aligned * 28 / 128) @ back[:, :2].T + back[:, 2]
    assert np.abs(ours - (raw @ canon[:, :2].T + canon[:, 2])).max() < 1e-6


class Stopped(Exception):
    """Stands for the run being stopped (Ctrl-C, kill) at a chosen point."""


def test_a_stopped_run_continues_to_the_same_model_and_leaves_no_files(tmp_path, monkeypatch):
    from mekit.app import au_training
    from mekit.train.group_state import GroupState

    config = replace(TINY, members=2, epochs=3)
    whole = tmp_path / "whole"
    train_au_model(whole, config)

    # stop in member 1's training, right after it saved its progress at the end of epoch 1;
    # member 0 is trained and kept by then
    saves: list[str] = []
    real_save = GroupState.save

    def save_then_stop(self, make_state):
        real_save(self, make_state)
        saves.append(self.path.name)
        if self.path.name == "run.member1.progress.pt":
            raise Stopped

    monkeypatch.setattr(GroupState, "due", lambda self: True)
    monkeypatch.setattr(GroupState, "save", save_then_stop)
    run = tmp_path / "run"
    with pytest.raises(Stopped):
        train_au_model(run, config)
    assert saves == [
        "run.member0.progress.pt",  # after epochs 1 and 2 (not 3: the member then ends)
        "run.member0.progress.pt",
        "run.member0.done.pt",
        "run.member1.progress.pt",
    ]
    assert not model_paths(run)[0].exists()
    monkeypatch.setattr(GroupState, "save", real_save)

    # the rerun makes no samples for member 0 and trains member 1 from its epoch 1
    made: list[int] = []
    real_dataset = au_training.au_flow_dataset

    def counted(n, data, **kwargs):
        made.append(data.seed)
        return real_dataset(n, data, **kwargs)

    epochs: list[int] = []
    real_fit = au_training.fit_multilabel

    def fit_counting_epochs(model, x, y, schedule, **kwargs):
        saved = kwargs["progress_file"].load()
        epochs.append(schedule.epochs - (saved["step"] if saved else 0))
        return real_fit(model, x, y, schedule, **kwargs)

    monkeypatch.setattr(au_training, "au_flow_dataset", counted)
    monkeypatch.setattr(au_training, "fit_multilabel", fit_counting_epochs)
    train_au_model(run, config)
    assert made == [1, 0]  # member 1's training samples, then the validation samples
    assert epochs == [2]
    assert file_sha256(model_paths(run)[0]) == file_sha256(model_paths(whole)[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(p.name for p in model_paths(whole)), *(p.name for p in model_paths(run))]
    )
