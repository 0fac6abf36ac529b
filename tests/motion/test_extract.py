"""Faces + flow on a real (synthetic) corpus: motion lands where the AUs act; bad frames are
skipped with their reason while the rest goes on; a rerun comes from the cache."""

import shutil

import cv2
import numpy as np
import pytest

from mekit.data.casme2 import load_casme2
from mekit.faces import FaceConfig, FaceLandmarker, align_frames
from mekit.faces.landmarks import EYES, MOUTH
from mekit.motion import FeatureConfig
from mekit.motion.extract import extract_features, sample_features
from mekit.synth import SynthConfig, generate_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "corpus"
    config = SynthConfig(
        subjects=2,
        clips_per_subject=2,
        nuisances=False,
        long_videos=False,
        emotions=("happiness", "surprise"),
        amplitude_px=(2.0, 2.5),
    )
    generate_corpus(out, config, progress=False)
    return out


@pytest.mark.parametrize("emotion", ["happiness", "surprise"])
def test_aligned_flow_peaks_where_the_au_acts(corpus, emotion):
    landmarker = FaceLandmarker()
    samples = [s for s in load_casme2(corpus, dataset="synthetic").samples if s.emotion == emotion]
    assert len(samples) == 2
    for sample in samples:
        features = sample_features(sample, FaceConfig(), FeatureConfig(size=128), landmarker)
        assert features.shape == (3, 128, 128)
        magnitude = np.hypot(features[0], features[1])
        assert 1.0 < magnitude.max() < 4.0  # px on the 128 px face: amplitude 2-2.5 px
        rows = _aligned_landmark_rows(sample, landmarker)
        eye_row, mouth_top = int(rows[list(EYES)].mean()), int(rows[list(MOUTH)].min())
        total = magnitude.sum()
        above_eyes = magnitude[:eye_row].sum() / total  # share of the motion
        around_mouth = magnitude[mouth_top - 20 :].sum() / total
        if emotion == "surprise":  # AU1+2 raise the brows (AU25, when drawn, parts the lips)
            assert above_eyes > 0.3
        else:  # AU6+12: cheeks and lip corners, below the eyes
            assert above_eyes < 0.2 and around_mouth > 0.4


def _aligned_landmark_rows(sample, landmarker):
    frame = cv2.imread(str(sample.frame_path(sample.onset)))
    return align_frames([frame], landmarker, FaceConfig()).landmarks[:, 1]


def test_bad_frames_are_skipped_and_the_rest_resumes_from_cache(corpus, tmp_path):
    own = shutil.copytree(corpus, tmp_path / "corpus")  # the frames are about to be damaged
    samples = load_casme2(own, dataset="synthetic").samples
    broken, faceless = samples[0], samples[1]
    broken.frame_path(broken.onset).write_bytes(b"not a jpeg")
    cv2.imwrite(str(faceless.frame_path(faceless.onset)), np.full((192, 192, 3), 128, np.uint8))
    cache = tmp_path / "cache"
    first = extract_features(samples, cache_dir=cache, workers=1, progress=False)
    assert first.ids == tuple(s.id for s in samples[2:])
    assert first.features.shape == (2, 3, 28, 28) and first.cache_hits == 0
    reasons = {s.id: s.reason for s in first.skipped}
    assert "cannot read image" in reasons[broken.id] and str(broken.onset) in reasons[broken.id]
    assert "no face found" in reasons[faceless.id]
    again = extract_features(samples, cache_dir=cache, workers=2, progress=False)
    assert again.cache_hits == 2
    assert np.array_equal(again.features, first.features)


@pytest.mark.parametrize(
    "config,shape",
    [
        (FeatureConfig(kind="keyframes", method="farneback"), (10, 3, 28, 28)),
        (
            FeatureConfig(kind="keyframes", keyframe_step=3, keyframes=5, method="dis"),
            (4, 3, 28, 28),
        ),
        (FeatureConfig(kind="flow_clip", method="farneback", size=32), (19, 3, 32, 32)),
        (FeatureConfig(kind="lbptop", interpolate=10), (5 * 5 * 1 * 3 * 59,)),
        (FeatureConfig(method="dis", mask_eyes=True, magnify_alpha=4.0), (3, 28, 28)),
        (FeatureConfig(kind="apex", size=64), (1, 64, 64)),
        (FeatureConfig(kind="apex_flow", method="dis", size=32), (4, 32, 32)),
        (FeatureConfig(kind="frames", keyframes=16, size=32), (16, 1, 32, 32)),
        (FeatureConfig(kind="apex_flow_clip", method="dis", keyframes=9), (8, 4, 28, 28)),
    ],
    ids=[
        "keyframes",
        "every_3rd",
        "flow_clip",
        "lbptop",
        "magnified",
        "apex",
        "apex_flow",
        "frames",
        "apex_flow_clip",
    ],
)
def test_every_feature_kind_has_its_documented_shape(corpus, config, shape, tmp_path):
    samples = load_casme2(corpus, dataset="synthetic").samples[:2]
    result = extract_features(samples, config, cache_dir=tmp_path, workers=1, progress=False)
    assert result.features.shape == (2, *shape)
    assert np.isfinite(result.features).all() and result.features.std() > 0


def test_an_interrupted_run_resumes_without_recomputing(corpus, tmp_path):
    samples = load_casme2(corpus, dataset="synthetic").samples
    config = FeatureConfig(method="farneback")
    # a run killed after two samples has cached exactly those two
    extract_features(samples[:2], config, cache_dir=tmp_path, workers=1, progress=False)
    resumed = extract_features(samples, config, cache_dir=tmp_path, workers=1, progress=False)
    assert resumed.cache_hits == 2 and len(resumed.ids) == len(samples)
    # any setting that shapes the result gives another key
    other = extract_features(
        samples[:2],
        FeatureConfig(method="farneback", size=14),
        cache_dir=tmp_path,
        workers=1,
        progress=False,
    )
    assert other.cache_hits == 0 and other.features.shape[-1] == 14
