"""`mekit analyze`: spot-then-recognise on a synthetic long video with known events."""

from __future__ import annotations

import csv
import json
import re

import av
import cv2
import numpy as np
import pytest

from mekit.app import analyze as analyze_module
from mekit.app.analyze import (
    DEMO_MODEL,
    MODEL_ENV,
    STAGES,
    AnalyzeConfig,
    analyze_video,
    default_model_path,
    resolve_model,
)
from mekit.app.recognise import load_recogniser, recognise_events
from mekit.app.report import DEMO_BANNER, NOTHING_SPOTTED
from mekit.cli.main import main
from mekit.config import to_dict
from mekit.errors import MekitError
from mekit.faces import FaceConfig, FaceLandmarker, align_frames
from mekit.motion import FeatureConfig, FeatureKind
from mekit.motion.features import compute_features
from mekit.spot.input.video import iter_frames
from mekit.spot.metrics import Interval
from mekit.synth import SynthConfig
from mekit.synth.long_video import write_long_video
from mekit.train.checkpoint import save_model
from mekit.train.loop import TrainConfig, fit

AU_CODES = (1, 2, 4, 6, 7, 9, 10, 12, 14, 15, 17, 20, 25, 45)
LABELS = ["negative", "positive", "surprise"]
LONG = SynthConfig(  # as tests/spot/test_run.py: 6 s at 30 fps, 2 micro + 1 macro events
    subjects=1,
    long_video_fps=(30.0,),
    long_video_seconds=6.0,
    micro_per_video=2,
    macro_per_video=1,
    amplitude_px=(2.0, 3.0),
    duration_ms=(250.0, 450.0),
    macro_duration_ms=(800.0, 1200.0),
)
EVENT_KEYS = {
    "index",
    "kind",
    "onset",
    "apex",
    "offset",
    "onset_s",
    "apex_s",
    "offset_s",
    "score",
    "emotion",
    "probabilities",
    "aus",
    "motion_map",
    "explanation_map",
    "during",
}
TOP_KEYS = {
    "video",
    "fps",
    "n_frames",
    "duration_s",
    "width",
    "height",
    "model",
    "events",
    "files",
    "warnings",
    "seconds",
    "spotter",
}


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    path, intervals, _ = write_long_video(tmp_path_factory.mktemp("video"), 0, LONG, False)
    return path, intervals


def _save(path, demo: bool, features: FeatureConfig | None = None):
    """A tiny STSTNet (2 epochs on noise: its emotions mean nothing, its files are real)."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.5, (12, 3, 28, 28)).astype(np.float32)
    y = np.arange(12) % 3
    model = fit("ststnet", 3, x, y, TrainConfig(epochs=2, seed=0)).model
    given = (
        {} if features is None else {"features": to_dict(features), "face": to_dict(FaceConfig())}
    )
    training = {"demo": True, "trained_on": "noise (test)"} if demo else {"trained_on": "noise"}
    return save_model(
        path,
        model,
        model_name="ststnet",
        labels=LABELS,
        model_kwargs={},
        input=given,
        config={},
        metrics={"uf1": 0.5, "uar": 0.5, "protocol": "loso"},
        training=training,
    )[1]


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("models") / "demo", demo=True)


@pytest.fixture(scope="module")
def own_model(tmp_path_factory):
    features = FeatureConfig(method="farneback")
    return _save(tmp_path_factory.mktemp("models") / "own", demo=False, features=features)


@pytest.fixture(scope="module")
def analysed(long_video, demo_model, tmp_path_factory):
    calls = []
    out = tmp_path_factory.mktemp("analysis") / "out"
    analysis = analyze_video(
        long_video[0], out, demo_model, progress=lambda s, f: calls.append((s, f))
    )
    return analysis, out, calls


def test_finds_the_known_events_and_writes_every_file(long_video, analysed):
    _, truth = long_video
    analysis, out, _ = analysed
    assert len(truth) == 3
    tolerance = 6  # frames at 30 fps; the spotter's bounds move with the raised-cosine tails
    for t in truth:
        near = [e for e in analysis.events if abs(e.onset - int(t["onset"])) <= tolerance]
        assert near, f"no event near the true onset {t['onset']}"
        assert near[0].kind == t["type"]
        assert near[0].onset <= near[0].apex <= near[0].offset
    assert len(analysis.events) <= len(truth) + 1
    for name in ("analysis.json", "timeline.csv", "timeline.png", "annotated.mp4", "report.html"):
        assert (out / name).stat().st_size > 0, name
    for e in analysis.events:
        for name in (e.motion_map, e.explanation_map):
            image = cv2.imread(str(out / name))
            assert image is not None and image.shape == (256, 256, 3), name
    timeline = cv2.imread(str(out / "timeline.png"))
    assert timeline is not None and timeline.shape[1] >= 800


def test_analysis_json_has_the_schema(long_video, analysed):
    analysis, out, _ = analysed
    data = json.loads((out / "analysis.json").read_text())
    assert set(data) == TOP_KEYS
    assert data == json.loads(json.dumps(analysis.to_json()))
    assert data["video"] == long_video[0].name
    assert (data["fps"], data["n_frames"], data["width"], data["height"]) == (30.0, 180, 192, 192)
    assert data["duration_s"] == pytest.approx(6.0)
    assert set(data["model"]) == {"path", "name", "labels", "demo", "trained_on", "oracle"}
    assert data["model"]["oracle"] is False
    assert data["model"]["labels"] == LABELS and data["model"]["demo"] is True
    assert data["files"] == {
        "json": "analysis.json",
        "csv": "timeline.csv",
        "timeline_png": "timeline.png",
        "mp4": "annotated.mp4",
        "html": "report.html",
    }
    assert isinstance(data["seconds"], float) and data["seconds"] > 0
    assert [e["index"] for e in data["events"]] == list(range(1, len(data["events"]) + 1))
    for e in data["events"]:
        assert set(e) == EVENT_KEYS
        assert e["kind"] in ("micro", "macro")
        assert e["onset_s"] == pytest.approx(e["onset"] / 30, abs=1e-3)
        assert e["offset_s"] == pytest.approx(e["offset"] / 30, abs=1e-3)
        assert set(e["probabilities"]) == set(LABELS)
        assert sum(e["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert e["emotion"] == max(e["probabilities"], key=e["probabilities"].get)
        assert e["motion_map"] == f"events/event_{e['index']:02d}_motion.png"
        assert e["explanation_map"] == f"events/event_{e['index']:02d}_explain.png"
        for au in e["aus"]:
            assert set(au) == {"au", "name", "probability", "region", "side"}
            assert au["au"] in AU_CODES and 0.5 <= au["probability"] <= 1
            assert au["region"] in ("brows", "eyes", "nose", "mouth", "chin")
            assert au["side"] in ("left", "right", "both")
        probabilities = [au["probability"] for au in e["aus"]]
        assert probabilities == sorted(probabilities, reverse=True)


def test_timeline_csv_has_one_row_per_event(analysed):
    analysis, out, _ = analysed
    with open(out / "timeline.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(analysis.events)
    assert list(rows[0])[:10] == [
        "index",
        "kind",
        "onset",
        "apex",
        "offset",
        "onset_s",
        "apex_s",
        "offset_s",
        "score",
        "emotion",
    ]
    assert list(rows[0])[10:] == [*(f"prob_{label}" for label in LABELS), "aus", "au_details"]
    for row, event in zip(rows, analysis.events, strict=True):
        assert row["aus"] == "+".join(str(a["au"]) for a in event.aus)
        assert row["au_details"].count("AU") == len(event.aus)
        assert int(row["onset"]) == event.onset and row["emotion"] == event.emotion
        assert float(row["offset_s"]) == pytest.approx(event.offset_s, abs=1e-3)
        assert float(row["prob_positive"]) == pytest.approx(event.probabilities["positive"], 1e-3)


def test_annotated_mp4_has_every_input_frame(long_video, analysed):
    _, out, _ = analysed
    with av.open(str(long_video[0])) as source:
        originals = [f.to_ndarray(format="bgr24") for f in source.decode(video=0)]
    with av.open(str(out / "annotated.mp4")) as video:
        stream = video.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        frames = [f.to_ndarray(format="bgr24") for f in video.decode(video=0)]
    assert len(frames) == len(originals) == 180
    assert frames[0].shape == originals[0].shape
    # the motion strip darkens the bottom of every frame; the face above it is left as it was
    strip = slice(192 - 36, 192)
    assert frames[90][strip].mean() < 0.6 * originals[90][strip].mean()
    middle = (slice(80, 120), slice(80, 112))
    assert np.abs(frames[90][middle].astype(int) - originals[90][middle]).mean() < 8


def test_report_is_one_self_contained_file(analysed):
    analysis, out, _ = analysed
    text = (out / "report.html").read_text()
    assert "http://" not in text and "https://" not in text
    without_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert "//" not in without_data  # no protocol-relative URL either
    for tag in ("<script", "<link", "<iframe", "<object", "@import", "url("):
        assert tag not in text.lower()
    sources = re.findall(r"<img[^>]*\ssrc=\"([^\"]*)\"", text)
    assert len(sources) == 1 + 2 * len(analysis.events)  # timeline + two maps per event
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert DEMO_BANNER in text
    for e in analysis.events:
        assert f"#{e.index} {e.kind}" in text and e.emotion in text
        for au in e.aus:  # the demo model: each event is headed by what moved, in FACS terms
            assert f"{au['name']} (AU{au['au']})" in text
    assert "demo model class (synthetic, not an emotion)" in text


def test_the_planted_action_units_are_found(long_video, analysed):
    """The video's expressions are AU renders: the packaged AU model, on the flow analyze
    computes from the video, names at least one planted AU of at least 2 of the 3 events."""
    _, truth = long_video
    analysis, _, _ = analysed
    hits = 0
    for t in truth:
        near = [e for e in analysis.events if abs(e.onset - int(t["onset"])) <= 6]
        planted = {int(a) for a in t["aus"].split("+")}
        hits += bool(near and planted & {a["au"] for a in near[0].aus})
    assert hits >= 2


def test_progress_goes_through_the_stages_in_order(analysed):
    _, _, calls = analysed
    stages = list(dict.fromkeys(s for s, _ in calls))
    assert stages == list(STAGES)
    for stage in STAGES:
        fractions = [f for s, f in calls if s == stage]
        assert fractions[0] == 0.0 and fractions[-1] == 1.0
        assert fractions == sorted(fractions)
    assert len([f for s, f in calls if s == "spotting"]) > 10  # it moves as frames are read


def test_cli_with_an_own_model_and_no_video(long_video, own_model, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["analyze", str(long_video[0]), "--model", str(own_model), "--out", str(out)]
    assert main([*args, "--no-video", "--quiet"]) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "analysis.json").read_text())
    assert data["files"]["mp4"] is None and not (out / "annotated.mp4").exists()
    assert data["model"]["demo"] is False and data["model"]["trained_on"] == "noise"
    assert data["warnings"] == []  # the sidecar says how its input was computed
    assert "report.html" in printed and "demo model" not in printed
    for e in data["events"]:
        assert f"{e['onset_s']:.2f}" in printed and e["emotion"] in printed
    report = (out / "report.html").read_text()
    assert DEMO_BANNER not in report
    assert len(re.findall(r"<img", report)) == 1 + 2 * len(data["events"])


def test_the_model_input_is_computed_as_training_computes_it(long_video, own_model, monkeypatch):
    """The recogniser's tensor for an event equals the training path's features (align on the
    onset frame, compute_features with the sidecar's settings) on the same frames."""
    import mekit.app.recognise as recognise

    recogniser = load_recogniser(own_model)
    assert recogniser.features.method == "farneback"  # from the sidecar
    assert recogniser.features.kind == FeatureKind.ONSET_APEX and recogniser.features.size == 28
    onset, apex, offset = 30, 34, 39
    frames = dict(iter_frames(long_video[0], onset, offset + 1))
    seen = []
    real = recognise.predict_proba

    def capture(model, x):
        seen.append(x)
        return real(model, x)

    monkeypatch.setattr(recognise, "predict_proba", capture)
    found = recogniser.recognise(frames, onset, apex, offset, 30.0, FaceLandmarker())
    clip = align_frames([frames[onset], frames[apex]], FaceLandmarker(), FaceConfig())
    config = FeatureConfig(kind=FeatureKind.ONSET_APEX, size=28, method="farneback")
    expected = compute_features(
        np.stack(clip.frames), (onset, apex), onset, apex, offset, 30.0, clip.landmarks, config
    )
    np.testing.assert_allclose(seen[0][0], expected, atol=1e-5)
    assert found.motion.shape == (128, 128) and found.motion.max() > 0.5  # a 2-3 px event
    assert found.cam is not None and found.cam.shape == (128, 128)


def test_flow_at_the_model_input_size_only_where_the_model_was_trained_so(
    long_video, own_model, tmp_path, monkeypatch
):
    """A model whose sidecar records features.flow_size = 28 gets its onset -> apex TV-L1 flow
    at 28 px (the fast path), exactly as training computed it; one without keeps 128 px."""
    import mekit.app.recognise as recognise

    assert load_recogniser(own_model).features.flow_size == 0  # inputs unchanged
    fast = FeatureConfig(method="tvl1", flow_size=28)
    recogniser = load_recogniser(_save(tmp_path / "fast", demo=False, features=fast))
    assert recogniser.features.flow_size == 28
    onset, apex, offset = 30, 34, 39
    frames = dict(iter_frames(long_video[0], onset, offset + 1))
    seen, flows = [], []
    real_predict, real_flow = recognise.predict_proba, recognise.onset_apex_flow
    monkeypatch.setattr(
        recognise, "predict_proba", lambda m, x: seen.append(x) or real_predict(m, x)
    )
    monkeypatch.setattr(
        recognise, "onset_apex_flow", lambda *a: flows.append(real_flow(*a)) or flows[-1]
    )
    found = recogniser.recognise(frames, onset, apex, offset, 30.0, FaceLandmarker())
    assert flows[0].shape == (2, 28, 28)
    clip = align_frames([frames[onset], frames[apex]], FaceLandmarker(), FaceConfig())
    config = FeatureConfig(kind=FeatureKind.ONSET_APEX, size=28, method="tvl1", flow_size=28)
    expected = compute_features(
        np.stack(clip.frames), (onset, apex), onset, apex, offset, 30.0, clip.landmarks, config
    )
    np.testing.assert_allclose(seen[0][0], expected, atol=1e-5)
    assert found.motion.shape == (128, 128)  # the map is drawn over the aligned face


def test_an_event_that_cannot_be_recognised_keeps_its_timing(long_video, own_model, tmp_path):
    recogniser = load_recogniser(own_model)
    events = [Interval(30, 39, "micro", 34), Interval(170, 400, "macro", 300)]  # past the end
    results = recognise_events(long_video[0], events, recogniser, 30.0)
    assert not isinstance(results[0], str) and set(results[0].probabilities) == set(LABELS)
    assert isinstance(results[1], str) and "could not be read" in results[1]


def test_a_face_step_failure_is_a_warning_not_a_drop(long_video, own_model, tmp_path, monkeypatch):
    import mekit.app.recognise as recognise

    monkeypatch.setattr(recognise, "align_frames", lambda *a, **k: None)  # no face at onset
    analysis = analyze_video(long_video[0], tmp_path, own_model, AnalyzeConfig(video=False))
    assert len(analysis.events) >= 3
    data = json.loads((tmp_path / "analysis.json").read_text())
    for e in data["events"]:
        assert e["emotion"] == "unknown" and e["probabilities"] == {}
        assert e["motion_map"] is None and e["explanation_map"] is None
    failures = [w for w in data["warnings"] if "was not recognised" in w]
    assert len(failures) == len(data["events"]) and "no face found in onset frame" in failures[0]
    rows = list(csv.DictReader((tmp_path / "timeline.csv").read_text().splitlines()))
    assert [r["emotion"] for r in rows] == ["unknown"] * len(rows) and rows[0][
        "prob_surprise"
    ] == ""


def test_nothing_spotted_gives_a_valid_result_with_a_warning(own_model, tmp_path):
    # 3 s with a blink and a head shift (both vetoed) and no expression
    quiet = SynthConfig(
        subjects=1,
        long_video_fps=(30.0,),
        long_video_seconds=3.0,
        micro_per_video=0,
        macro_per_video=0,
    )
    path, truth, _ = write_long_video(tmp_path, 0, quiet, False)
    assert truth == []
    analysis = analyze_video(path, tmp_path / "out", own_model, AnalyzeConfig(video=False))
    assert analysis.events == ()
    assert any(w.startswith(NOTHING_SPOTTED) for w in analysis.warnings)
    data = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert data["events"] == [] and data["n_frames"] == 90
    assert NOTHING_SPOTTED in (tmp_path / "out" / "report.html").read_text()
    assert len((tmp_path / "out" / "timeline.csv").read_text().splitlines()) == 1  # header


def _still_video(path, frames=20):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(frames):
            image = np.full((64, 64, 3), 40 + i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_bad_inputs_name_the_file_and_the_fix(long_video, own_model, tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(MekitError, match=r"missing\.mp4: no such file"):
        analyze_video(missing, tmp_path / "o", own_model)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(MekitError, match=r"notes\.mp4: not a video: FFmpeg recognises.*ffmpeg -i"):
        analyze_video(text, tmp_path / "o", own_model)
    truncated = tmp_path / "truncated.mp4"
    data = long_video[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # an MP4 whose index was never written
    with pytest.raises(MekitError, match=r"truncated\.mp4: not a readable video: an MP4/MOV"):
        analyze_video(truncated, tmp_path / "o", own_model)
    with pytest.raises(MekitError, match="is a folder"):
        analyze_video(tmp_path, tmp_path / "o", own_model)
    wall = _still_video(tmp_path / "wall.mp4")
    with pytest.raises(MekitError, match=r"wall\.mp4: no face found in 20 frames.*frontal face"):
        analyze_video(wall, tmp_path / "o", own_model)
    with pytest.raises(MekitError, match=r"model .*nothing\.json.*not found.*make demo"):
        analyze_video(long_video[0], tmp_path / "o", tmp_path / "nothing.json")


def test_cli_reports_user_errors_without_a_traceback(tmp_path, own_model, capsys):
    assert main(["analyze", str(tmp_path / "none.mp4"), "--model", str(own_model)]) == 2
    err = capsys.readouterr().err
    assert "mekit: error:" in err and "none.mp4" in err and "Traceback" not in err


def test_resolve_model_order(tmp_path, monkeypatch, own_model, demo_model):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert default_model_path() is None
    with pytest.raises(MekitError, match=r"make demo.*mekit train.*--model"):
        resolve_model(None)
    demo = tmp_path / DEMO_MODEL
    demo.parent.mkdir(parents=True)
    demo.write_text("{}")
    assert default_model_path() == demo.resolve()  # absolute: not the server's working folder
    assert resolve_model(None) == demo.resolve()  # the demo model, when nothing else is given
    monkeypatch.setenv(MODEL_ENV, str(demo_model))
    assert resolve_model(None) == demo_model  # $MEKIT_MODEL before the demo model
    assert resolve_model(own_model) == own_model  # --model before both
    stem = own_model.with_suffix("")
    assert resolve_model(stem) == own_model
    assert resolve_model(stem.with_suffix(".safetensors")) == own_model
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "gone.json"))
    with pytest.raises(MekitError, match=r"gone\.json \(\$MEKIT_MODEL\) not found") as info:
        resolve_model(None)
    assert analyze_module.HOW_TO_GET_A_MODEL in str(info.value)


def test_a_video_cut_short_keeps_the_part_before_the_cut(long_video, own_model, tmp_path):
    """An MP4 with its index first (faststart) whose data stops at 60 %: the frames before
    the cut are analysed, a warning says where reading stopped."""
    fast = tmp_path / "fast.mp4"
    with av.open(str(long_video[0])) as source:
        with av.open(str(fast), "w", options={"movflags": "+faststart"}) as target:
            stream = target.add_stream_from_template(source.streams.video[0])
            for packet in source.demux(source.streams.video[0]):
                if packet.size:
                    packet.stream = stream
                    target.mux(packet)
    cut = tmp_path / "cut.mp4"
    data = fast.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.warns(UserWarning, match="reading stopped"):
        analysis = analyze_video(cut, tmp_path / "out", own_model)
    assert 0 < analysis.video.n_frames < 180 and not analysis.video.complete
    assert any("truncated" in w for w in analysis.warnings)
    assert all(e.offset < analysis.video.n_frames for e in analysis.events)
    with av.open(str(tmp_path / "out" / "annotated.mp4")) as video:
        assert sum(1 for _ in video.decode(video=0)) == analysis.video.n_frames


def test_a_trained_spotter_finds_the_events_instead(long_video, own_model, tmp_path, capsys):
    # A SOFTNet spotter file (untrained weights: this is about the wiring): the events
    # are exactly what learned_spots finds, recognised as usual, and the report says so.
    import torch

    from mekit.models.softnet import SoftNet
    from mekit.spot.learned.run import learned_spots
    from mekit.spot.learned.spotter import SpotterConfig, save_spotter

    torch.manual_seed(0)
    _, sidecar = save_spotter(
        tmp_path / "spotter_micro",
        SoftNet(),
        windows={"k_s": 0.15, "size": 42, "face_size": 84, "layout": "rois"},
        config=SpotterConfig(min_score=-1e9),  # no floor: the relative threshold alone
        kind="micro",
    )
    video, _ = long_video
    expected = learned_spots(video, [sidecar]).intervals
    assert expected and all(i.kind == "micro" for i in expected)
    out = tmp_path / "out"
    argv = ["analyze", str(video), "--model", str(own_model), "--spotter", str(sidecar)]
    assert main([*argv, "--out", str(out), "--no-video", "--quiet"]) == 0
    data = json.loads((out / "analysis.json").read_text())
    assert data["spotter"] == f"softnet: {sidecar}"
    got = [(e["onset"], e["apex"], e["offset"], e["kind"]) for e in data["events"]]
    assert got == [(i.onset, i.apex, i.offset, i.kind) for i in expected]
    assert "softnet" in (out / "report.html").read_text()


def test_a_clip_too_short_to_measure_motion_gets_advice_analyze_can_take(
    long_video, own_model, tmp_path
):
    short = tmp_path / "short.mp4"
    with av.open(str(long_video[0])) as source, av.open(str(short), "w") as target:
        video = source.streams.video[0]
        stream = target.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        for index, frame in enumerate(source.decode(video=0)):
            if index == 4:
                break
            rgb = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            target.mux(stream.encode(rgb))
        target.mux(stream.encode())
    with pytest.raises(MekitError, match=r"short\.mp4: no motion could be measured") as info:
        analyze_video(short, tmp_path / "o", own_model, AnalyzeConfig(video=False))
    assert "at least a second" in str(info.value)
    assert "reference=" not in str(info.value) and "smaller k" not in str(info.value)
