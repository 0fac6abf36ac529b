"""`make demo` leaves a demo model that `mekit analyze` reads as the demo model."""

from __future__ import annotations

import json
from dataclasses import replace

from mekit.app.recognise import load_recogniser
from mekit.pipeline import DEMO_MODEL_NAME, run_demo
from mekit.spot.metrics import Interval
from mekit.train.checkpoint import load_model


def test_run_demo_writes_the_demo_model(tmp_path):
    outcome = run_demo(tmp_path, subjects=2, clips_per_subject=3, workers=1, progress=False)
    sidecar = tmp_path / "model" / f"{DEMO_MODEL_NAME}.json"
    assert outcome.model_path == sidecar
    assert (tmp_path / "model" / f"{DEMO_MODEL_NAME}.safetensors").is_file()
    meta = json.loads(sidecar.read_text())
    assert meta["model"] == "ststnet" and meta["training"]["demo"] is True
    assert meta["training"]["trained_on"] == "mekit synthetic corpus (demo)"
    assert meta["training"]["samples"] == outcome.n_samples
    run_metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (
        meta["metrics"]["uf1"] == run_metrics["overall"]["uf1"]
        and meta["metrics"]["protocol"] == "loso"
    )
    assert meta["input"]["features"]["method"] == "tvl1" and meta["input"]["face"]["size"] == 128
    assert load_model(sidecar).labels == tuple(meta["labels"])
    recogniser = load_recogniser(sidecar)
    assert recogniser.info.demo and recogniser.notes == ()
    assert recogniser.features.size == 28 and recogniser.features.kind == "onset_apex"


def test_the_demo_analyses_a_video_with_planted_events(tmp_path, monkeypatch, capsys):
    # `mekit demo` end to end, small: train the demo model, then `mekit analyze` a synthetic
    # video with known events, scored against them.
    from mekit.app import demo
    from mekit.cli.main import main

    monkeypatch.setattr(demo, "DEMO_VIDEO", replace(demo.DEMO_VIDEO, long_video_seconds=8.0))
    argv = ["demo", "--out", str(tmp_path), "--subjects", "2", "--clips-per-subject", "3"]
    assert main([*argv, "--workers", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "mekit analyze on a synthetic 30 fps video" in printed
    assert (tmp_path / "analysis" / "report.html").is_file()
    assert (tmp_path / "analysis" / "annotated.mp4").is_file()
    video = next((tmp_path / "video").glob("*.mp4"))
    result = demo.demo_analysis(tmp_path, tmp_path / "model" / f"{DEMO_MODEL_NAME}.json")
    assert result.video == video  # the video is reused, not written again
    planted = list(result.truth)
    assert len(planted) == demo.DEMO_VIDEO.micro_per_video + demo.DEMO_VIDEO.macro_per_video
    assert {t.emotion for t in planted} <= {"negative", "positive", "surprise"}
    sc = result.scores
    assert sc.tp + sc.fn == len(planted) and sc.tp + sc.fp == len(result.analysis.events)
    assert sc.tp >= len(planted) - 1  # the unsupervised spotter finds the planted events
    assert f"TP {sc.tp} FP {sc.fp} FN {sc.fn}" in printed
    # the emotions of the matched events, scored by hand: UF1 over the classes planted there
    from mekit.spot.metrics import match_corpus

    matched = match_corpus(
        {
            video.stem: [
                Interval(e.onset, e.offset, kind=e.kind, apex=e.apex, emotion=e.emotion)
                for e in result.analysis.events
            ]
        },
        {video.stem: planted},
    )
    pairs = [(p.emotion, t.emotion) for m in matched.values() for p, t in m.pairs]
    assert len(pairs) == sc.tp
    f1s = []
    for label in sorted({t for _, t in pairs}):
        tp = sum(p == t == label for p, t in pairs)
        fp = sum(p == label != t for p, t in pairs)
        fn = sum(t == label != p for p, t in pairs)
        f1s.append(2 * tp / (2 * tp + fp + fn))
    assert abs(result.recognition_uf1 - sum(f1s) / len(f1s)) < 1e-9
    assert result.spot_then_recognise == sc.f1 * result.recognition_uf1
