"""The learned spotter's commands: LOSO-score and train on long videos, then spot a video."""

from __future__ import annotations

import csv
import json

import pytest

from mekit.cli.main import main
from mekit.errors import MekitError
from mekit.spot.learned.run import (
    long_videos_in,
    spot_with_spotters,
    spotter_files,
    train_spotters,
)
from mekit.spot.learned.spotter import (
    SpotterConfig,
    load_spotter,
)
from mekit.spot.learned.windows import expression_k_s, k_for
from mekit.synth import SynthConfig
from mekit.synth.long_video import write_long_videos

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
FAST = SpotterConfig(epochs=2, batch_size=64, augment=False, seed=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("learned_run")
    write_long_videos(root / "long_videos", SHORT, progress=False)
    run = train_spotters(root, root / "run", FAST, progress=False)
    return root, run


def test_train_writes_loso_scores_and_a_final_model_per_kind(trained):
    root, run = trained
    assert run.n_videos == 2 and run.subjects == ("01", "02")
    # no macro events in these videos: only a micro spotter, and the overall score
    assert set(run.models) == {"micro"} and set(run.scores) == {"micro", "overall"}
    micro = run.scores["micro"]
    assert micro["tp"] + micro["fn"] == 4  # every true micro event counted once
    tp, fp, fn = micro["tp"], micro["fp"], micro["fn"]
    assert micro["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    saved = json.loads((run.out / "scores.json").read_text())
    assert saved["scores"]["micro"] == micro
    assert saved["settings"]["micro"]["config"]["kind"] == "micro"
    summary = (run.out / "summary.md").read_text()
    assert "leave-one-subject-out" in summary and "| micro |" in summary
    spotter = load_spotter(run.models["micro"])
    assert spotter.meta["kind"] == "micro" and spotter.meta["loso_scores"] == micro
    assert spotter.windows["k_s"] > 0
    # each LOSO fold's k comes from the other subject's annotations only (it was computed over
    # every video, the held-out one included, before), the final model's from all of them
    videos = long_videos_in(root)
    folds = saved["settings"]["micro"]["fold_k_s"]
    assert set(folds) == {"01", "02"}
    for held_out, k_s in folds.items():
        assert k_s == expression_k_s([v for v in videos if v.subject != held_out], "micro")
    assert saved["settings"]["micro"]["k_s"] == expression_k_s(videos, "micro")
    assert folds["01"] != folds["02"]  # so the held-out subject's own annotations differ
    # the windows are cached (one file per video and k): a second run reads them back and
    # gives the same scores
    ks = {k_for(30.0, k) for k in [*folds.values(), saved["settings"]["micro"]["k_s"]]}
    assert len(list((run.out / "windows").glob("*.npz"))) == 2 * len(ks)
    # each LOSO fold's curves are saved too: the second run reads them back instead of training
    assert len(list((run.out / "folds_micro").glob("fold_*.npz"))) == 2
    again = train_spotters(root, run.out, FAST, progress=False)
    assert again.scores == run.scores


def test_spot_a_video_with_the_trained_spotter(trained, tmp_path):
    root, run = trained
    video = sorted((root / "long_videos").glob("*.mp4"))[0]
    intervals = spot_with_spotters(video, [run.out], tmp_path, progress=False)
    rows = list(csv.DictReader((tmp_path / f"{video.stem}.intervals.csv").read_text().splitlines()))
    assert len(rows) == len(intervals)
    assert all(r["kind"] == "micro" and int(r["onset"]) <= int(r["offset"]) for r in rows)
    data = json.loads((tmp_path / f"{video.stem}.intervals.json").read_text())
    assert data["fps"] == 30.0 and len(data["intervals"]) == len(intervals)
    assert (tmp_path / f"{video.stem}.png").stat().st_size > 0


def test_cli_train_and_spot(trained, tmp_path, capsys):
    root, _ = trained
    out = tmp_path / "cli_run"
    code = main(
        ["train", "--corpus", str(root), "--model", "softnet", "--out", str(out), "--quiet"]
        + ["--set", "spotter.epochs=1", "--set", "spotter.augment=false", "--workers", "2"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "leave-one-subject-out over 2 long videos" in printed and "micro" in printed
    assert json.loads((out / "spotter_micro.json").read_text())["config"]["epochs"] == 1
    video = sorted((root / "long_videos").glob("*.mp4"))[1]
    code = main(["spot", str(video), "--spotter", str(out), "--out", str(tmp_path / "s")])
    assert code == 0
    assert (tmp_path / "s" / f"{video.stem}.intervals.csv").is_file()
    assert main(["train", "--corpus", str(root), "--model", "softnet", "--set", "x.y=1"]) == 2


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(MekitError, match="no spotter_"):
        spotter_files([tmp_path])
    with pytest.raises(MekitError, match="kinds"):
        train_spotters(tmp_path, tmp_path / "o", kinds=("blink",))
