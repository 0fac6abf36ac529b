"""Features straight from precomputed inputs (generic format): no face or flow step, the
documented scaling, sequence kinds skipped with what they need, and LOSO training on them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mekit.data.generic import load_generic
from mekit.data.labels import load_scheme
from mekit.models.registry import get_spec
from mekit.motion import FeatureConfig
from mekit.motion import extract as extract_module
from mekit.motion.extract import extract_features, precomputed_features
from mekit.train import TrainConfig, run_loso
from mekit.train.inputs import feature_config_for, to_model_layout

COLUMNS = ["subject", "clip", "label", "onset", "apex", "offset", "frames", "video"]
COLUMNS += ["apex_image", "flow"]


def write_csv(root: Path, rows: list[dict]) -> None:
    frame = pd.DataFrame([{c: r.get(c, "") for c in COLUMNS} for r in rows], columns=COLUMNS)
    frame.to_csv(root / "samples.csv", index=False)


def ramp_flow(side: int = 56) -> np.ndarray:
    """u = 0.5 x px (strain 0.5 everywhere), v = -1 px."""
    x = np.arange(side, dtype=np.float32)
    u = np.broadcast_to(0.5 * x, (side, side))
    return np.stack([u, np.full((side, side), -1.0, np.float32)])


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "prepared"
    (root / "in").mkdir(parents=True)
    np.save(root / "in" / "ramp.npy", ramp_flow())
    three = np.stack([np.full((128, 128), v, np.float32) for v in (2.0, -0.5, 0.3)])
    np.save(root / "in" / "three.npy", three)
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[..., 2], bgr[..., 1], bgr[..., 0] = 0, 255, 51  # R = u, G = v, B = strain
    cv2.imwrite(str(root / "in" / "flow.png"), bgr)
    cv2.imwrite(str(root / "in" / "apex.png"), np.full((40, 40), 102, np.uint8))
    (root / "in" / "clip.mp4").write_bytes(b"video")
    (root / "s9" / "c1").mkdir(parents=True)
    for n in range(3):  # a frames row: tiny faceless frames
        cv2.imwrite(str(root / "s9" / "c1" / f"{n}.png"), np.full((8, 8), 90, np.uint8))
    write_csv(
        root,
        [
            {"subject": "s1", "clip": "ramp", "label": "positive", "flow": "in/ramp.npy"},
            {"subject": "s1", "clip": "three", "label": "negative", "flow": "in/three.npy"},
            {
                "subject": "s2",
                "clip": "image",
                "label": "surprise",
                "flow": "in/flow.png",
                "apex_image": "in/apex.png",
            },
            {"subject": "s2", "clip": "apex", "label": "surprise", "apex_image": "in/apex.png"},
            {"subject": "s3", "clip": "video", "label": "negative", "video": "in/clip.mp4"},
            {"subject": "s9", "clip": "c1", "label": "positive", "frames": "s9/c1"},
        ],
    )
    return root


@pytest.fixture
def no_faces(monkeypatch):
    """Fail loudly if anything builds a face landmarker."""

    class Forbidden:
        def __init__(self, *args, **kwargs):
            raise AssertionError("precomputed inputs must not need a face step")

    monkeypatch.setattr(extract_module, "FaceLandmarker", Forbidden)


def by_clip(corpus: Path) -> dict:
    return {s.clip: s for s in load_generic(corpus).samples}


def test_npy_flow_is_resized_with_its_vectors_in_face_pixels(corpus):
    ramp = by_clip(corpus)["ramp"]
    out = precomputed_features(ramp, FeatureConfig(size=28))  # 56 -> 28, face 128 px
    assert out.shape == (3, 28, 28) and out.dtype == np.float32
    scale = 128 / 56
    expected_u = 0.5 * (2 * np.arange(28) + 0.5) * scale  # mean of x = 2j, 2j + 1
    assert np.allclose(out[0], expected_u[None, :], atol=1e-4)
    assert np.allclose(out[1], -scale, atol=1e-5)
    assert np.allclose(out[2], 0.5, atol=1e-5)  # strain computed, scale-free
    # a smaller face unit scales u, v and not strain
    small = precomputed_features(ramp, FeatureConfig(size=28), face_size=56)
    assert np.allclose(small[0], 0.5 * (2 * np.arange(28) + 0.5)[None, :], atol=1e-4)
    assert np.allclose(small[2], out[2])


def test_three_channel_npy_keeps_its_strain_and_upsizes(corpus):
    three = by_clip(corpus)["three"]
    out = precomputed_features(three, FeatureConfig(size=28))
    assert np.allclose(out[:, 5, 5], [2.0, -0.5, 0.3], atol=1e-5)  # 128 px flow: unit kept
    bigger = precomputed_features(three, FeatureConfig(size=160))
    assert bigger.shape == (3, 160, 160) and np.allclose(bigger[:, 80, 80], [2.0, -0.5, 0.3])


def test_flow_image_channels_and_scaling(corpus):
    image = by_clip(corpus)["image"]
    out = precomputed_features(image, FeatureConfig(size=28))
    assert out.shape == (3, 28, 28)
    # R = 0 -> u = -1, G = 255 -> v = 1, B = 51 -> strain 0.2 (read as RGB, not BGR)
    assert np.allclose(out[:, 3, 3], [-1.0, 1.0, 0.2], atol=1e-5)
    both = precomputed_features(image, FeatureConfig(kind="apex_flow", size=32))
    assert both.shape == (4, 32, 32)
    assert np.allclose(both[:, 0, 0], [0.4, -1.0, 1.0, 0.2], atol=1e-5)


def test_every_precomputed_kind_has_the_shape_of_computed_features(corpus, no_faces):
    samples = [s for s in by_clip(corpus).values() if not s.frames]
    for config, shape, ids in [
        (FeatureConfig(), (3, 28, 28), ["ramp", "three", "image"]),
        (FeatureConfig(kind="apex", size=112), (1, 112, 112), ["image", "apex"]),
        (FeatureConfig(kind="apex_flow", size=64), (4, 64, 64), ["image"]),
    ]:
        result = extract_features(samples, config, workers=2, progress=False)
        assert result.features.shape == (len(ids), *shape)
        assert [i.split("/")[-1] for i in result.ids] == ids
        assert result.cache_hits == 0 and np.isfinite(result.features).all()
    apex = extract_features(samples, FeatureConfig(kind="apex"), progress=False)
    assert np.allclose(apex.features, 0.4)
    reasons = {s.id.split("/")[-1]: s.reason for s in apex.skipped}
    assert "needs the precomputed input(s) apex_image" in reasons["ramp"]
    assert "it has: flow" in reasons["ramp"]
    assert "no frames" in reasons["video"] and "frames column" in reasons["video"]


@pytest.mark.parametrize("kind", ["keyframes", "flow_clip", "lbptop", "frames", "apex_flow_clip"])
def test_sequence_kinds_skip_precomputed_samples_saying_what_they_need(corpus, no_faces, kind):
    samples = [s for s in by_clip(corpus).values() if s.inputs]
    result = extract_features(samples, FeatureConfig(kind=kind), progress=False)
    assert result.ids == () and len(result.skipped) == len(samples)
    for skipped in result.skipped:
        assert f"feature kind '{kind}' needs the clip's frames" in skipped.reason
        assert "only precomputed inputs" in skipped.reason


def test_frames_and_precomputed_samples_mix(corpus, tmp_path):
    samples = list(by_clip(corpus).values())
    assert samples[-1].frames  # the frames row, whose tiny frames hold no face
    result = extract_features(samples, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert [i.split("/")[-1] for i in result.ids] == ["ramp", "three", "image"]
    reasons = {s.id.split("/")[-1]: s.reason for s in result.skipped}
    assert "no face found" in reasons["c1"] and "no frames" in reasons["video"]


def test_loso_trains_on_a_generic_corpus_of_npy_flows(tmp_path, no_faces):
    rng = np.random.default_rng(0)
    classes = ("negative", "positive", "surprise")
    rows = []
    (tmp_path / "flows").mkdir()
    for subject in range(4):
        for c, label in enumerate(classes):
            for clip in range(2):
                flow = rng.normal(0, 0.3, (2, 28, 28)).astype(np.float32)
                flow[c % 2, 8:20, 8:20] += 1.0 if c < 2 else -1.0
                name = f"flows/p{subject}_{label}_{clip}.npy"
                np.save(tmp_path / name, flow)
                rows.append({"subject": f"p{subject}", "clip": f"{label}{clip}", "label": label})
                rows[-1]["flow"] = name
    write_csv(tmp_path, rows)
    loaded = load_generic(tmp_path)
    assert len(loaded.samples) == 24 and loaded.skipped == ()
    scheme = load_scheme("megc2019")
    spec = get_spec("ststnet")
    config = feature_config_for(spec)
    features = extract_features(loaded.samples, config, progress=False)
    assert features.features.shape == (24, 3, 28, 28)
    by_id = {s.id: s for s in loaded.samples}
    ids = list(features.ids)
    labels = list(scheme.labels)
    assert labels == list(classes)
    y = np.array([labels.index(scheme.label_of(by_id[i])) for i in ids])
    X = to_model_layout(features.features, spec, config.kind)
    result = run_loso(
        X,
        y,
        [by_id[i].subject for i in ids],
        ids,
        labels,
        "ststnet",
        TrainConfig(epochs=1, batch_size=8),
        progress=False,
    )
    assert len(result.predictions) == 24 and set(result.histories) == {"p0", "p1", "p2", "p3"}
    assert result.predictions["true"].tolist() == [scheme.label_of(by_id[i]) for i in ids]
    assert 0.0 <= result.metrics().accuracy <= 1.0


def test_realign_moves_flow_and_apex_into_mekits_alignment(tmp_path, monkeypatch):
    """features.realign: landmarks of the apex image give mekit's alignment of the crop; flow
    and apex move by it (the flow's vectors turned); a flow without its apex image is skipped
    with the fix; frames' cache keys do not change."""
    from skimage import data

    from mekit.faces import FaceConfig, FaceLandmarker
    from mekit.faces.realign import crop_matrix, realign
    from mekit.motion.extract import feature_key

    grey = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    face = grey[60:200, 160:290]  # tighter than mekit's crop, taller than wide
    root = tmp_path / "c"
    (root / "in").mkdir(parents=True)
    cv2.imwrite(str(root / "in" / "apex.png"), face)
    np.save(root / "in" / "ramp.npy", ramp_flow())
    write_csv(
        root,
        [
            {"subject": "s1", "clip": "a", "label": "positive", "flow": "in/ramp.npy",
             "apex_image": "in/apex.png"},
            {"subject": "s2", "clip": "b", "label": "positive", "flow": "in/ramp.npy"},
        ],
    )  # fmt: skip
    samples = by_clip(root)
    plain = precomputed_features(samples["a"], FeatureConfig(kind="apex_flow", size=32))
    moved = precomputed_features(
        samples["a"], FeatureConfig(kind="apex_flow", size=32, realign=True)
    )
    matrix = crop_matrix(FaceLandmarker().on_crop(face), face.shape, 32)
    assert np.array_equal(moved[:1], realign(plain[:1], matrix))
    assert np.array_equal(moved[1:], realign(plain[1:], matrix, vectors=(0, 1)))
    assert not np.allclose(moved, plain, atol=0.05)  # this crop is not mekit's
    # the apex image realigned is mekit's own alignment of the face: its eyes are level
    eyes = FaceLandmarker()((moved[0] * 255).astype(np.uint8).repeat(4, 0).repeat(4, 1))
    assert eyes is not None and abs(eyes[42, 1] - eyes[39, 1]) < 4
    result = extract_features(list(samples.values()), FeatureConfig(realign=True), progress=False)
    assert [i.split("/")[-1] for i in result.ids] == ["a"]
    assert "features.realign needs the sample's apex_image" in result.skipped[0].reason
    monkeypatch.setattr(extract_module, "file_digest", lambda path: str(path))
    framed = replace(
        samples["a"],
        onset=0,
        apex=1,
        offset=2,
        frames=tuple(root / f"{n}.png" for n in range(3)),
        frame_numbers=(0, 1, 2),
    )
    key = feature_key(framed, FaceConfig(), FeatureConfig())
    assert key == feature_key(framed, FaceConfig(), FeatureConfig(realign=True))
    assert key != feature_key(framed, FaceConfig(), FeatureConfig(size=32))
