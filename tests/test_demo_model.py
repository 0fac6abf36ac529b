"""`make demo` leaves a demo model that `mekit analyze` reads as the demo model."""

from __future__ import annotations

import json

from mekit.app.recognise import load_recogniser
from mekit.pipeline import DEMO_MODEL_NAME, run_demo
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
