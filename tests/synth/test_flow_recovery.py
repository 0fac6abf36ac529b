"""In clean mode the rendered onset -> apex motion is the AU field: Farneback must find it."""

import cv2
import numpy as np
import pandas as pd
import pytest

from mekit.synth import SynthConfig, true_apex_field
from mekit.synth.subjects import subject_identity


def farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    grey = [cv2.cvtColor(x, cv2.COLOR_BGR2GRAY) for x in (a, b)]
    return cv2.calcOpticalFlowFarneback(*grey, None, 0.5, 3, 15, 3, 5, 1.2, 0)


@pytest.mark.parametrize("clip", [0, 1])
def test_farneback_recovers_the_true_displacement(clean_corpus, clip):
    config = SynthConfig(**_config_of(clean_corpus))
    truth = pd.read_csv(clean_corpus.ground_truth, dtype=str).iloc[clip]
    folder = clean_corpus.out / f"sub{truth.subject}" / truth["clip"]
    onset = cv2.imread(str(folder / f"img{truth.onset}.jpg"))
    apex = cv2.imread(str(folder / f"img{truth.apex}.jpg"))
    flow = farneback(onset, apex)
    field = true_apex_field(config, 0, clip)
    true_mag = np.hypot(field[..., 0], field[..., 1])
    flow_mag = np.hypot(flow[..., 0], flow[..., 1])
    assert abs(true_mag.max() - float(truth.apex_displacement_px)) < 1e-3

    core = true_mag > 0.5 * true_mag.max()
    ratio = np.median(flow_mag[core] / true_mag[core])
    cosine = np.median((flow * field).sum(-1)[core] / (flow_mag[core] * true_mag[core] + 1e-9))
    assert 0.6 < ratio < 1.4, f"{truth.emotion}: flow/true magnitude {ratio:.2f}"
    assert cosine > 0.9, f"{truth.emotion}: direction agreement {cosine:.2f}"
    still = true_mag < 0.02 * true_mag.max()
    assert np.median(flow_mag[still]) < 0.1
    # the strongest recovered motion lies where the AUs act
    ys, xs = np.unravel_index(np.argsort(flow_mag, axis=None)[-50:], flow_mag.shape)
    assert (true_mag[ys, xs] > 0.2 * true_mag.max()).mean() > 0.8


def test_the_two_emotions_move_different_parts_of_the_face(clean_corpus):
    config = SynthConfig(**_config_of(clean_corpus))
    eyes_y = subject_identity(0, config).landmarks[36:48, 1].mean()
    truth = pd.read_csv(clean_corpus.ground_truth, dtype=str)
    above = {}
    for _, r in truth.iterrows():
        folder = clean_corpus.out / f"sub{r.subject}" / r["clip"]
        a, b = (cv2.imread(str(folder / f"img{n}.jpg")) for n in (r.onset, r.apex))
        energy = (farneback(a, b) ** 2).sum(-1)
        above[r.emotion] = energy[: int(eyes_y) - 4].sum() / energy.sum()
    assert above["surprise"] > 0.4  # brows
    assert above["happiness"] < 0.2  # cheeks and mouth


def _config_of(summary) -> dict:
    import json

    raw = json.loads((summary.out / "synth.json").read_text())["config"]
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
