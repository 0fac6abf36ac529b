"""Abstention: an event whose best class stays below the model's threshold is "uncertain"."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mekit.app.recognise import Recognition, abstain_below
from mekit.app.result import UNCERTAIN, AnalysedEvent


def _recognition(probabilities, threshold=0.0):
    face = np.zeros((4, 4), np.uint8)
    return Recognition(probabilities, face, face.astype(np.float32), None, threshold)


def test_below_the_threshold_the_emotion_is_uncertain_and_the_best_class_is_kept():
    r = _recognition({"negative": 0.45, "positive": 0.35, "surprise": 0.2}, 0.5)
    assert r.emotion == UNCERTAIN and r.predicted == "negative"
    assert replace(r, abstain_below=0.45).emotion == "negative"  # reaching it is enough
    assert replace(r, abstain_below=0.0).emotion == "negative"  # 0: never abstain


def test_the_threshold_comes_from_the_model_files_config():
    assert abstain_below({"config": {"abstain_below": 0.6}}) == 0.6
    assert abstain_below({"config": {}}) == 0.0 and abstain_below({}) == 0.0
    assert abstain_below({"config": {"abstain_below": 1.5}}) == 0.0  # nonsense: ignored


def test_an_uncertain_events_confidence_is_its_best_probability():
    event = AnalysedEvent(
        index=1, kind="micro", onset=0, apex=2, offset=4, onset_s=0, apex_s=0.1,
        offset_s=0.2, score=1.0, emotion=UNCERTAIN, probabilities={"a": 0.4, "b": 0.6},
    )  # fmt: skip
    assert event.confidence == 0.6
    assert replace(event, emotion="a").confidence == 0.4
