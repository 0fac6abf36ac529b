"""mekit.api, the Python API the `mekit` command runs: on a short synthetic video with planted
events, a tiny CASME II tree and a tiny synthetic corpus; and docs/api.md, generated from it."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from tests.app.fakes import LABELS, write_model
from tests.data.test_corpora import casme2_tree

import mekit
from mekit import api, docs_api
from mekit.errors import MekitError
from mekit.spot.run import COLUMNS
from mekit.synth import SynthConfig
from mekit.synth.long_video import write_long_video, write_long_video_tables

SHORT = SynthConfig(  # 3 s at 30 fps: one micro and one macro event
    subjects=1,
    long_video_fps=(30.0,),
    long_video_seconds=3.0,
    micro_per_video=1,
    macro_per_video=1,
    amplitude_px=(2.0, 3.0),
    duration_ms=(250.0, 450.0),
    macro_duration_ms=(800.0, 1000.0),
)
EVENT_COLUMNS = ["kind", "onset", "apex", "offset", "onset_s", "apex_s", "offset_s", "score"]
EVENT_COLUMNS += ["emotion", "probability", "aus", "during", *(f"prob_{x}" for x in LABELS)]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("video")
    written = write_long_video(folder, 0, SHORT, False)
    write_long_video_tables(folder, [written])  # intervals.csv beside it: the truth
    return written[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def analysis(video, model, tmp_path_factory) -> api.Analysis:
    return mekit.analyze(video, model=model, out=tmp_path_factory.mktemp("out"), video=False)


def test_analyze_gives_the_events_as_a_table(analysis, tmp_path):
    events = analysis.events
    assert list(events.columns) == EVENT_COLUMNS and events.index.name == "event"
    assert list(events.index) == list(range(1, len(analysis.details.events) + 1))
    assert len(events) >= 1 and set(events["kind"]) <= {"micro", "macro"}
    assert (events["onset"] <= events["apex"]).all() and (events["apex"] <= events["offset"]).all()
    assert (events["onset_s"] < events["offset_s"]).all()
    probs = events[[f"prob_{x}" for x in LABELS]]
    recognised = events["emotion"] != "unknown"
    assert np.allclose(probs[recognised].sum(axis=1), 1.0, atol=1e-3)
    first = analysis.to_json()["events"][0]
    assert (first["onset"], first["emotion"]) == (
        events["onset"].iloc[0],
        events["emotion"].iloc[0],
    )
    assert analysis.details.files["mp4"] is None  # the video=False setting reached the analysis
    saved = pd.read_csv(analysis.save(tmp_path / "copy") / "events.csv", index_col="event")
    assert list(saved["onset"]) == list(events["onset"])


def test_analysis_plot_is_a_figure_and_signals_one_row_per_frame(analysis):
    figure = analysis.plot()
    assert isinstance(figure, Figure) and figure.get_size_inches()[0] > 5
    signals = analysis.signals
    assert len(signals) == analysis.details.video.n_frames
    assert {"frame", "time_s", "strain", "face_ok"} <= set(signals.columns)
    assert signals["time_s"].is_monotonic_increasing


def test_spot_gives_events_scores_and_plot(video, tmp_path):
    spotting = api.spot(video, out=tmp_path / "spots")
    assert list(spotting.events.columns) == list(COLUMNS) and len(spotting.events) >= 1
    assert set(spotting.events["video"]) == {video.stem}
    assert spotting.scores is not None and spotting.scores["overall"]["tp"] >= 1
    assert isinstance(spotting.plot(), Figure)
    with pytest.raises(MekitError, match="no video 'other'"):
        spotting.plot("other")
    assert len(spotting.signals) == int(SHORT.long_video_seconds * 30)


def test_mekit_spot_is_the_api_spot_and_still_a_package(video, tmp_path):
    by_package = mekit.spot(video, out=tmp_path / "package")
    by_api = api.spot(video, out=tmp_path / "api")
    assert isinstance(by_package, api.Spotting) and by_package.out == tmp_path / "package"
    pd.testing.assert_frame_equal(by_package.events, by_api.events)
    assert by_package.scores == by_api.scores
    spot_input = importlib.import_module("mekit.spot.input")
    assert mekit.spot.input is spot_input and mekit.spot.run.spot is not None


def test_mekit_train_is_the_api_train_and_still_a_package(tmp_path, monkeypatch):
    from mekit.pipeline import ExperimentConfig

    with pytest.raises(MekitError, match="not both"):  # the same check as api.train's
        mekit.train(tmp_path, config=ExperimentConfig(), model="ststnet")
    calls = []
    monkeypatch.setattr(api, "train", lambda *a, **kw: calls.append((a, kw)) or "run")
    assert mekit.train("corpus", model="ststnet") == "run"  # looked up in mekit.api per call
    assert calls == [(("corpus",), {"model": "ststnet"})]
    assert mekit.train.loso_folds is not None and callable(mekit.train)


def test_the_callable_packages_load_on_first_use_without_the_api():
    code = (
        "import sys, mekit; print(callable(mekit.spot), 'mekit.api' in sys.modules); "
        "import mekit.spot.input; print('mekit.api' in sys.modules, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "False", "False", "False"]


def test_a_loaded_model_recognises_the_events_the_analysis_found(analysis, model, video):
    loaded = mekit.load_model(model)
    assert loaded.labels == tuple(LABELS) and loaded.info.name == "ststnet"
    table = loaded.predict(video, analysis.events)
    timing = ["onset", "apex", "offset"]
    assert table[timing].values.tolist() == analysis.events[timing].values.tolist()
    assert list(table["emotion"]) == list(analysis.events["emotion"])
    assert np.allclose(table["probability"], analysis.events["probability"], atol=1e-4)


def test_load_corpus_gives_samples_by_id_and_problems(tmp_path):
    root = casme2_tree(
        tmp_path / "CASME2",
        [
            ["01", "EP01", "", 1, 3, 5, "", "4", "disgust"],
            ["01", "EP02", "", 1, 3, 5, "", "12", "happiness"],
            ["01", "EP03", "", 1, 3, 5, "", "14", "fear"],  # not in megc2019
            ["02", "EP01", "", 1, 2, 5, "", "14", "disgust"],  # its folder is missing
        ],
        {("sub01", clip): range(1, 6) for clip in ("EP01", "EP02", "EP03")},
    )
    corpus = mekit.load_corpus(root)
    assert corpus.layout == "casme2"
    samples = corpus.samples
    assert list(samples.index) == [f"casme2/sub01/EP0{n}" for n in (1, 2, 3)]
    assert samples.loc["casme2/sub01/EP02", "emotion"] == "happiness"
    assert samples.loc["casme2/sub01/EP01", "n_frames"] == 5
    assert list(samples["label"].fillna("(none)")) == ["negative", "positive", "(none)"]
    problems = dict(zip(corpus.problems["id"], corpus.problems["problem"], strict=True))
    assert set(problems) == {"casme2/sub01/EP03", "casme2/sub02/EP01"}
    assert "not in label scheme megc2019" in problems["casme2/sub01/EP03"]
    raw = mekit.load_corpus(root, "casme2", "raw")
    assert list(raw.samples["label"]) == ["disgust", "happiness", "fear"]


def test_missing_files_are_named_in_the_error(tmp_path, model):
    missing = tmp_path / "nothing"
    calls = {
        "analyze": lambda: mekit.analyze(missing / "clip.mp4", model=model, out=tmp_path / "a"),
        "spot": lambda: api.spot(missing / "clip.mp4", out=tmp_path / "s"),
        "load_corpus": lambda: mekit.load_corpus(missing / "CASME2"),
        "load_model": lambda: mekit.load_model(missing / "model.json"),
    }
    for call in calls.values():
        with pytest.raises(MekitError, match=re.escape(str(missing))):
            call()


def test_a_wrong_setting_is_named_before_any_work(video, model, tmp_path):
    with pytest.raises(MekitError, match="unknown setting 'flow'"):
        mekit.analyze(video, model=model, out=tmp_path / "out", flow="dis")
    with pytest.raises(MekitError, match="unknown setting 'q'"):
        api.spot(video, out=tmp_path / "spots", q=0.5)
    assert not (tmp_path / "out").exists()
    from mekit.pipeline import ExperimentConfig

    with pytest.raises(MekitError, match="not both"):
        api.train(tmp_path, config=ExperimentConfig(), model="ststnet")


def test_import_mekit_loads_neither_the_api_nor_torch():
    code = (
        "import sys, mekit, mekit.data.corpora; "
        "print('torch' in sys.modules, 'mekit.api' in sys.modules, 'pandas' in sys.modules); "
        "mekit.load_corpus; print('mekit.api' in sys.modules, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False", "False", "True", "False"]
    assert mekit.analyze is api.analyze and "analyze" in mekit.__all__
    assert "spot" not in mekit.__all__ and "train" not in mekit.__all__  # the subpackages


def test_the_api_page_is_generated_from_the_docstrings():
    page = Path(__file__).parents[1] / "docs" / "api.md"
    assert page.read_text(encoding="utf-8") == docs_api.render(), (
        "docs/api.md is out of date: python -m mekit.docs_api > docs/api.md"
    )
    for name in api.__all__:
        assert f"### `mekit.api.{name}`" in page.read_text(encoding="utf-8")


@pytest.mark.slow
def test_train_then_evaluate_a_tiny_corpus(tmp_path):
    from mekit.synth import generate_corpus

    corpus = tmp_path / "corpus"
    config = SynthConfig(subjects=3, clips_per_subject=3, long_videos=False)
    generate_corpus(corpus, config, progress=False)
    run = api.train(corpus, out=tmp_path / "run", cache=False, workers=1, train={"epochs": 2})
    assert set(run.metrics) >= {"accuracy", "uf1", "uar", "per_class", "n"}
    assert run.metrics["n"] == 9 and 0.0 <= run.metrics["uf1"] <= 1.0
    assert len(run.predictions) == 9 and run.predictions.index.str.startswith("synthetic/").all()
    assert run.model_path == tmp_path / "run" / "model.json" and run.model_path.is_file()
    assert isinstance(run.plot(), Figure)
    scored = api.evaluate(run.model_path, corpus, out=tmp_path / "eval", cache=False, workers=1)
    assert isinstance(scored, api.Evaluation) and len(scored.predictions) == 9


@pytest.mark.slow
def test_mekit_train_gives_what_api_train_gives(tmp_path):
    from mekit.synth import generate_corpus

    corpus = tmp_path / "corpus"
    small = SynthConfig(subjects=3, clips_per_subject=2, long_videos=False)
    generate_corpus(corpus, small, progress=False)
    options = {"cache": False, "workers": 1, "export": False, "train": {"epochs": 1}}
    by_package = mekit.train(corpus, out=tmp_path / "package", **options)
    by_api = api.train(corpus, out=tmp_path / "api", **options)
    assert isinstance(by_package, api.TrainRun) and by_package.run_dir == tmp_path / "package"
    assert by_package.metrics == by_api.metrics and by_package.metrics["n"] == 6
    pd.testing.assert_frame_equal(by_package.predictions, by_api.predictions)
