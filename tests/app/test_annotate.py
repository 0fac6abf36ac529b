"""annotated.mp4's event labels: emotion words with a trained model, what moved with the demo."""

from __future__ import annotations

import numpy as np

from mekit.app.annotate import MOTION_COLOUR, Overlay, _Painter
from mekit.app.result import AnalysedEvent, emotion_colour

BROWS = (
    {"au": 4, "name": "brow lowerer", "probability": 0.9, "region": "brows", "side": "both"},
    {"au": 7, "name": "lid tightener", "probability": 0.6, "region": "eyes", "side": "left"},
)


def _event(index: int, aus: tuple[dict, ...] = BROWS) -> AnalysedEvent:
    return AnalysedEvent(
        index=index,
        kind="micro",
        onset=2,
        apex=4,
        offset=6,
        onset_s=0.1,
        apex_s=0.2,
        offset_s=0.3,
        score=0.5,
        emotion="negative",
        probabilities={"negative": 0.81, "positive": 0.19},
        aus=aus,
    )


def _painter(demo: bool) -> _Painter:
    events = (_event(1), _event(2, aus=()))
    overlay = Overlay(np.full((10, 4), np.nan, np.float32), np.arange(10) / 20, np.zeros(10), 3.0,
                      events, demo=demo)  # fmt: skip
    return _Painter(overlay, 320, 240, (1.0, 1.0), 20.0, 10.0)


def test_a_trained_model_labels_events_with_its_emotion():
    labels = [(colour, text) for _, colour, text in _painter(demo=False).events]
    bgr = emotion_colour("negative")[::-1]
    assert labels == [(bgr, "#1 micro: negative 81 %"), (bgr, "#2 micro: negative 81 %")]


def test_the_demo_model_labels_events_with_what_moved_not_its_class():
    labels = [(colour, text) for _, colour, text in _painter(demo=True).events]
    bgr = MOTION_COLOUR[::-1]
    assert labels == [(bgr, "#1 micro: AU4+AU7"), (bgr, "#2 micro: motion")]
    assert not any("negative" in text for _, text in labels)


def test_the_labels_are_drawn_while_their_event_is_on():
    painter = _painter(demo=True)
    before, during = np.zeros((240, 320, 3), np.uint8), np.zeros((240, 320, 3), np.uint8)
    painter.paint(before, 0)
    painter.paint(during, 4)
    labels = (slice(0, 60), slice(0, 100))  # top left; the clock is top right
    assert not before[labels].any() and during[labels].any()
