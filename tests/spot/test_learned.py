"""The SOFTNet-style learned spotter: pseudo-labels, network shapes, score post-processing,
leave-one-subject-out without leaks, files, and a tiny end-to-end run on synthetic videos."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from mekit.data.schema import Event, LongVideo
from mekit.errors import MekitError
from mekit.models.softnet import SoftNet
from mekit.spot.input.video import iter_frames
from mekit.spot.learned import loso, spotter, windows
from mekit.spot.learned.loso import loso_scores, loso_spotting
from mekit.spot.learned.spotter import (
    SpotterConfig,
    load_spotter,
    save_spotter,
    score_video,
    smooth_scores,
    spot_from_scores,
    train_spotter,
)
from mekit.spot.learned.windows import (
    SpotterVideo,
    flow_windows,
    k_for,
    pseudo_labels,
    softnet_k,
    synth_long_videos,
    video_windows,
)
from mekit.spot.metrics import Interval, iou
from mekit.synth import SynthConfig
from mekit.synth.long_video import write_long_videos
from mekit.train.executors import ProcessExecutor

FAST = SpotterConfig(kind="micro", epochs=2, batch_size=64, augment=False, seed=0)


# ---------------------------------------------------------------------------------------------
# k and pseudo-labels


def test_pseudo_labels_by_hand():
    # window a covers frames a..a+k; k = 3: interval 8..10 is overlapped by windows 5..10
    y = pseudo_labels(16, [(8, 10)], 3)
    assert y.dtype == np.float32
    assert np.flatnonzero(y).tolist() == [5, 6, 7, 8, 9, 10]
    # two intervals, Event and Interval inputs, labels stay 0/1 where they overlap
    y = pseudo_labels(20, [Event(2, 3, 4, "micro"), Interval(onset=5, offset=6, kind="macro")], 2)
    assert np.flatnonzero(y).tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert set(np.unique(y)) == {0.0, 1.0}
    # first frames with gaps (windows left out) and a non-zero start
    frames = np.array([100, 101, 105, 106, 110])
    assert pseudo_labels(frames, [(106, 107)], 1).tolist() == [0, 0, 1, 1, 0]
    assert pseudo_labels(10, [], 2).sum() == 0
    with pytest.raises(MekitError):
        pseudo_labels(10, [(5, 4)], 2)
    with pytest.raises(MekitError):
        pseudo_labels(10, [(1, 2)], 0)


def test_pseudo_labels_are_the_interval_widened_by_half_k_around_window_centres():
    k = 4
    y = pseudo_labels(60, [(20, 30)], k)
    centres = np.flatnonzero(y) + k / 2
    assert centres.min() == 20 - k / 2 and centres.max() == 30 + k / 2


def test_k_is_half_the_mean_length():
    assert softnet_k([6, 8]) == 4  # the paper: int((7 + 1) / 2)
    assert softnet_k([1]) == 1
    assert k_for(200.0, 0.135) == 27 and k_for(30.0, 0.135) == 4
    with pytest.raises(MekitError):
        softnet_k([])
    video = LongVideo(
        "v", "d", "s", 100.0, (Event(0, None, 20, "micro"), Event(50, None, 150, "macro"))
    )
    assert windows.expression_k_s([video], "micro") == pytest.approx(0.1)
    with pytest.raises(MekitError, match="micro"):
        windows.expression_k_s([LongVideo("v", "d", "s", 30.0, ())], "micro")


# ---------------------------------------------------------------------------------------------
# the network


def test_softnet_shapes_and_streams():
    model = SoftNet()
    x = torch.rand(5, 3, 42, 42)
    out = model(x)
    assert out.shape == (5,)
    assert 300_000 < sum(p.numel() for p in model.parameters()) < 330_000
    # one stream per channel, 3/5/8 filters, 5x5 as the authors' code; dense 784 -> 400 -> 1
    assert [s[0].weight.shape for s in model.streams] == [
        (3, 1, 5, 5),
        (5, 1, 5, 5),
        (8, 1, 5, 5),
    ]
    assert model.head[1].in_features == 16 * 7 * 7
    assert SoftNet(size=28, kernel_size=3)(torch.rand(2, 3, 28, 28)).shape == (2,)
    with pytest.raises(ValueError):
        model(torch.rand(2, 2, 42, 42))
    with pytest.raises(ValueError):
        SoftNet(kernel_size=4)


def test_softnet_input_scaling():
    x = torch.rand(4, 3, 42, 42) * 7 + 2
    scaled = SoftNet().prepare(x)
    assert torch.allclose(scaled.amin(dim=(2, 3)), torch.zeros(4, 3))
    assert torch.allclose(scaled.amax(dim=(2, 3)), torch.ones(4, 3))
    flat = SoftNet().prepare(torch.zeros(1, 3, 42, 42))  # a still frame: no division by 0
    assert torch.isfinite(flat).all()
    model = SoftNet(normalize="scale")
    model.fit_scale(x)
    assert (model.input_scale > 2).all()
    assert torch.allclose(model.prepare(x), x / model.input_scale.view(1, 3, 1, 1))
    assert torch.equal(SoftNet(normalize="none").prepare(x), x)


# ---------------------------------------------------------------------------------------------
# scores -> intervals


def test_smoothing_ignores_missing_windows():
    frames = np.array([0, 1, 2, 6, 7])
    grid, agg = smooth_scores(frames, np.array([1.0, 1.0, 1.0, 3.0, 3.0]), 1)
    assert grid.tolist() == list(range(8))
    # agg[j] = mean of the windows j-1..j+1 that exist; none around frame 4
    assert agg[[0, 1, 3, 5, 7]].tolist() == [1.0, 1.0, 1.0, 3.0, 3.0]
    assert np.isnan(agg[4])
    with pytest.raises(MekitError):
        smooth_scores(np.array([2, 1]), np.array([0.0, 0.0]), 1)


def test_spot_from_scores_finds_planted_bumps():
    rng = np.random.default_rng(0)
    k, fps = 4, 30.0
    truth = [(40, 48), (120, 128), (200, 209)]
    frames = np.arange(300)
    scores = pseudo_labels(frames, truth, k) + rng.normal(0, 0.05, len(frames))
    found = spot_from_scores(frames, scores, fps, k, kind="micro", video="v")
    assert len(found) == 3
    for got, (onset, offset) in zip(found, truth, strict=True):
        assert iou(got, (onset, offset)) >= 0.5
        assert got.length == 2 * k + 1
        assert got.onset <= got.apex <= got.offset
        assert got.kind == "micro" and got.video == "v" and got.score > 0.5
    # without a kind, it follows the duration: 2k + 1 frames at 30 fps is micro; at 5 fps macro
    assert {x.kind for x in spot_from_scores(frames, scores, fps, k)} == {"micro"}
    assert {x.kind for x in spot_from_scores(frames, scores, 5.0, k)} == {"macro"}


def test_spot_from_scores_floor_and_edges():
    frames = np.arange(100)
    noise = np.random.default_rng(1).normal(0.05, 0.02, 100)
    # the paper's relative threshold always passes the largest bump of pure noise ...
    assert spot_from_scores(frames, noise, 30.0, 3, min_score=0.0)
    # ... the floor does not
    assert spot_from_scores(frames, noise, 30.0, 3, min_score=0.3) == []
    # a bump at the start is clipped to the first frame, at the end to the last window's end
    scores = np.zeros(100)
    scores[:3] = 1.0
    scores[-3:] = 1.0
    found = spot_from_scores(frames, scores, 30.0, 3, min_score=0.3)
    assert found[0].onset == 0 and found[-1].offset <= 99 + 3
    assert spot_from_scores(np.array([], np.int64), np.array([]), 30.0, 3) == []
    with pytest.raises(MekitError):
        spot_from_scores(frames, noise, 30.0, 3, p=1.5)


def test_combine_kinds_drops_micro_spots_inside_macro_ones():
    micro = [Interval(10, 18, "micro"), Interval(52, 60, "micro"), Interval(95, 103, "micro")]
    macro = [Interval(50, 90, "macro")]
    out = spotter.combine_kinds(micro, macro)
    # 52..60 lies inside 50..90; 95..103 does not; 10..18 neither
    assert [(x.onset, x.kind) for x in out] == [(10, "micro"), (50, "macro"), (95, "micro")]
    assert spotter.combine_kinds(micro, []) == micro


# ---------------------------------------------------------------------------------------------
# training and leave-one-subject-out on hand-made flow images


def planted_video(name: str, subject: str, seed: int, n: int = 80, k: int = 3) -> SpotterVideo:
    """Flow images of noise, with motion in the mouth box over two intervals."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 3, 42, 42), dtype=np.float32) * 0.1
    truth = (Interval(20, 26, "micro", video=name), Interval(55, 61, "micro", video=name))
    y = pseudo_labels(n, truth, k)
    X[y > 0, :, 28:38, 10:32] += 1.0
    return SpotterVideo(name, subject, 30.0, k, np.arange(n), X, truth, n + k)


def test_train_spotter_learns_planted_motion():
    videos = [planted_video(f"v{i}", f"s{i}", i) for i in range(3)]
    config = SpotterConfig(kind="micro", epochs=3, batch_size=32)
    model = train_spotter(videos, config)
    assert not model.training
    test = planted_video("t", "st", 9)
    scores = score_video(model, test.X)
    y = test.labels()
    assert scores.shape == (len(test.X),)
    assert scores[y > 0].mean() > scores[y == 0].mean() + 0.4
    # tuples (X, y, subject) work too; same seed, same model
    again = train_spotter([(v.X, v.labels(), v.subject) for v in videos], config)
    assert np.allclose(score_video(again, test.X), scores, atol=1e-5)


def test_train_spotter_needs_positives():
    video = planted_video("v", "s", 0)
    with pytest.raises(MekitError, match="positive"):
        train_spotter([(video.X, np.zeros(len(video.X)), "s")], FAST)
    with pytest.raises(MekitError, match="macro"):
        train_spotter([video], SpotterConfig(kind="macro"))


def test_loso_scores_each_video_with_the_fold_that_held_its_subject_out(monkeypatch):
    videos = [
        planted_video("a1", "A", 1),
        planted_video("a2", "A", 2),
        planted_video("b1", "B", 3),
        planted_video("c1", "C", 4),
    ]
    seen: list[set[str]] = []
    real = loso.SoftNetEstimator.fit

    def spy(self, X, y, groups=None, eval_set=None):
        seen.append(set(groups.tolist()))
        assert eval_set is None  # the held-out windows never reach fit
        return real(self, X, y, groups, eval_set)

    monkeypatch.setattr(loso.SoftNetEstimator, "fit", spy)
    curves = loso_spotting(videos, FAST)
    assert seen == [{"B", "C"}, {"A", "C"}, {"A", "B"}]
    assert list(curves) == ["a1", "a2", "b1", "c1"]
    for v in videos:
        curve = curves[v.id]
        assert curve.subject == v.subject
        assert curve.scores.shape == (len(v.X),) and curve.k == v.k
        assert curve.last_frame == v.frames[-1] + v.k
    scores = loso_scores(videos, curves, FAST)
    assert scores.n_truth == 8
    with pytest.raises(MekitError, match="2 subjects"):
        loso_spotting(videos[:2], FAST)
    # fold i trains the SOFTNet that train_spotter gives with seed + i on the other subjects
    model = train_spotter(videos[2:], FAST)
    assert np.array_equal(curves["a1"].scores, score_video(model, videos[0].X))


def _three_subjects() -> list[SpotterVideo]:
    return [planted_video(n, s, i) for i, (n, s) in enumerate([("a", "A"), ("b", "B"), ("c", "C")])]


def test_loso_spotting_resumes_from_fold_files(tmp_path, monkeypatch):
    videos = _three_subjects()
    first = loso_spotting(videos, FAST, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"fold_00{i}.npz" for i in range(3)]
    fits: list[int] = []
    real = loso.SoftNetEstimator.fit

    def counting(self, *args, **kwargs):
        fits.append(self.config.seed)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(loso.SoftNetEstimator, "fit", counting)
    again = loso_spotting(videos, FAST, checkpoint_dir=tmp_path)
    assert fits == []  # every fold read back
    for name, curve in first.items():
        assert np.array_equal(again[name].scores, curve.scores)
    # a fold whose file is damaged, and every fold after a settings change, is trained again
    (tmp_path / "fold_001.npz").write_bytes(b"not a zip")
    loso_spotting(videos, FAST, checkpoint_dir=tmp_path)
    assert fits == [FAST.seed + 1]
    fits.clear()
    loso_spotting(videos, replace(FAST, epochs=1), checkpoint_dir=tmp_path)
    assert sorted(fits) == [0, 1, 2]
    # other windows (here: one video's flow changed) retrain the folds that see them: all
    fits.clear()
    changed = [videos[0], videos[1], replace(videos[2], X=videos[2].X * 1.01)]
    loso_spotting(changed, FAST, checkpoint_dir=tmp_path)
    assert sorted(fits) == [0, 1, 2]


def test_loso_spotting_in_worker_processes_matches_a_sequential_run():
    videos = _three_subjects()
    config = replace(FAST, threads=1)
    here = loso_spotting(videos, config)
    there = loso_spotting(videos, config, executor=ProcessExecutor(2))
    assert list(there) == list(here)
    for name, curve in here.items():
        assert np.array_equal(there[name].scores, curve.scores)


def test_save_and_load_spotter(tmp_path):
    model = train_spotter([planted_video("v", "s", 0)], FAST)
    X = planted_video("t", "t", 5).X
    windows = {"k_s": 0.1, "size": 42, "face_size": 84, "layout": "rois", "method": "farneback"}
    weights, sidecar = save_spotter(tmp_path / "micro", model, windows=windows, config=FAST)
    assert weights.suffix == ".safetensors" and sidecar.suffix == ".json"
    loaded = load_spotter(tmp_path / "micro.json")
    assert loaded.windows == windows
    assert loaded.meta["config"]["kind"] == "micro"
    assert np.array_equal(score_video(loaded.model, X), score_video(model, X))
    weights.write_bytes(weights.read_bytes()[:-8] + b"xxxxxxxx")
    with pytest.raises(MekitError, match="SHA-256"):
        load_spotter(tmp_path / "micro")
    with pytest.raises(MekitError, match="not found"):
        load_spotter(tmp_path / "other")


def test_windows_round_trip(tmp_path):
    video = planted_video("v", "s", 0)
    again = windows.load_windows(windows.save_windows(video, tmp_path / "v.npz"))
    assert again.truth == video.truth and again.k == video.k and again.fps == video.fps
    assert np.array_equal(again.X, video.X) and np.array_equal(again.frames, video.frames)


# ---------------------------------------------------------------------------------------------
# videos


SHORT = SynthConfig(
    subjects=2,
    clips_per_subject=1,
    long_video_fps=(30.0, 30.0),
    long_video_seconds=3.0,
    micro_per_video=2,
    macro_per_video=0,
    amplitude_px=(2.0, 3.0),
    duration_ms=(200.0, 400.0),
)


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learned") / "long_videos"
    write_long_videos(folder, SHORT, progress=False)
    return folder


def test_end_to_end_on_two_synthetic_videos(synth_folder):
    videos = synth_long_videos(synth_folder.parent)  # OUT or OUT/long_videos
    assert [v.subject for v in videos] == ["01", "02"]
    assert all(len(v.events) == 2 and v.fps == 30.0 for v in videos)
    data = [video_windows(v, k_s=0.15) for v in videos]
    for d in data:
        assert d.k == 4 and d.n_frames == 90
        assert d.X.shape == (86, 3, 42, 42) and d.X.dtype == np.float32
        assert d.frames.tolist() == list(range(86))  # every window has a face
        assert np.isfinite(d.X).all() and d.X[:, :2].min() >= 0  # |u|, |v|
        assert d.labels("micro").sum() > 0
    model = train_spotter(data, FAST)
    for d in data:
        scores = score_video(model, d.X)
        assert scores.shape == (86,) and np.isfinite(scores).all()
        intervals = spot_from_scores(d.frames, scores, d.fps, d.k, kind="micro")
        assert all(0 <= x.onset <= x.offset <= d.last_frame for x in intervals)
    # streamed scoring gives the same scores as windows-then-score
    frames, streamed = spotter.score_source(model, videos[0].video, data[0].k, batch_size=32)
    assert np.array_equal(frames, data[0].frames)
    assert np.allclose(streamed, score_video(model, data[0].X), atol=1e-5)


def test_flow_windows_layouts_and_a_folder_of_frames(synth_folder, tmp_path):
    path = sorted(synth_folder.glob("*.mp4"))[0]
    frames, X = flow_windows(path, 3, stop=20)
    assert frames.tolist() == list(range(17)) and X.shape == (17, 3, 42, 42)
    _, face = flow_windows(path, 3, 28, layout="face", stop=20)
    assert face.shape == (17, 3, 28, 28)
    # eyes are masked: a blink-free still face moves little anywhere
    assert float(np.median(X[:, :2])) < 0.5
    # the same video as numbered image files, read through a LongVideo
    files, numbers = [], []
    for index, image in iter_frames(path, stop=20):
        file = tmp_path / f"img{index + 1:03d}.png"
        cv2.imwrite(str(file), image)
        files.append(file)
        numbers.append(index + 1)
    video = LongVideo("f", "d", "s", 30.0, (), frames=tuple(files), frame_numbers=tuple(numbers))
    data = video_windows(video, 3)
    assert data.frames.tolist() == list(range(1, 18))
    assert np.allclose(data.X, X, atol=1e-4)


def test_bad_inputs_say_what_is_wrong(synth_folder):
    blank = [np.zeros((120, 120), np.uint8)] * 10
    with pytest.raises(MekitError, match="no face"):
        flow_windows(blank, 2, fps=30.0)
    with pytest.raises(MekitError, match="fps"):
        flow_windows(blank, 2)
    path = sorted(synth_folder.glob("*.mp4"))[0]
    with pytest.raises(MekitError, match="no flow window"):
        flow_windows(path, 8, stop=5)
    with pytest.raises(MekitError, match="layout"):
        flow_windows(path, 2, layout="cheeks")
    with pytest.raises(MekitError, match="intervals.csv"):
        synth_long_videos(synth_folder / "missing")
    with pytest.raises(MekitError, match="k_s"):
        video_windows(LongVideo("v", "d", "s", 30.0, (), video=path))


class Stopped(Exception):
    """Stands for the Ctrl-C or kill that stops a run."""


def test_an_interrupted_loso_spotting_fold_continues_from_its_last_epoch(tmp_path, monkeypatch):
    from mekit.train import group_state

    videos = _three_subjects()
    config = replace(FAST, epochs=3)
    uninterrupted = loso_spotting(videos, config)

    monkeypatch.setattr(group_state, "SAVE_EVERY_S", 0.0)  # at every epoch's end
    monkeypatch.setattr(group_state, "SAVE_COST_SHARE", 0)
    saves, real_save = [], group_state.GroupState.save

    def stop_in_fold_1(self, make_state):
        saves.append(self.path.name)
        if saves.count("fold_001.progress.pt") == 2:  # after its 2nd epoch, before its 3rd
            real_save(self, make_state)
            raise Stopped
        real_save(self, make_state)

    with monkeypatch.context() as patch:
        patch.setattr(group_state.GroupState, "save", stop_in_fold_1)
        with pytest.raises(Stopped):
            loso_spotting(videos, config, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold_000.npz", "fold_001.progress.pt"]

    saves.clear()
    with monkeypatch.context() as patch:
        patch.setattr(group_state.GroupState, "save", stop_in_fold_1)
        resumed = loso_spotting(videos, config, checkpoint_dir=tmp_path)
    # fold 1 trained only its 3rd epoch (after which nothing is saved); fold 2 all three
    assert saves == ["fold_002.progress.pt"] * 2
    for name, curve in uninterrupted.items():
        assert np.array_equal(resumed[name].scores, curve.scores)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"fold_00{i}.npz" for i in range(3)]
