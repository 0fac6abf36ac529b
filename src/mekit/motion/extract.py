"""Onset -> apex features for a whole corpus: faces + flow per sample, in a process pool, cached.

A sample that fails (unreadable frame, no face) is reported with its reason and the others go
on. Every finished sample is in the cache at once, so an interrupted run loses nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mekit.data.schema import Sample, Skipped
from mekit.errors import SampleError
from mekit.faces import FaceConfig, FaceLandmarker, align_frames
from mekit.motion.cache import FeatureCache, file_digest
from mekit.motion.features import FEATURE_VERSION, FlowConfig, onset_apex_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSet:
    """Features of the samples that worked, by id; `skipped` says why the others did not."""

    ids: tuple[str, ...]
    features: np.ndarray  # (N, 3, S, S) float32, row i belongs to ids[i]
    skipped: tuple[Skipped, ...]
    cache_hits: int


def read_frame(path: Path, sample_id: str) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SampleError(sample_id, f"cannot read image {path}; is it a valid JPEG/PNG?")
    return image


def feature_key(sample: Sample, face: FaceConfig, flow: FlowConfig) -> str:
    return FeatureCache.key(
        {
            "kind": "onset_apex",
            "version": FEATURE_VERSION,
            "onset": file_digest(sample.frame_path(sample.onset)),
            "apex": file_digest(sample.frame_path(sample.apex)),
            "face": asdict(face),
            "flow": asdict(flow),
        }
    )


def sample_features(
    sample: Sample, face: FaceConfig, flow: FlowConfig, landmarker: FaceLandmarker
) -> np.ndarray:
    """(3, S, S) features of one sample; raises SampleError with the reason on failure."""
    onset_path = sample.frame_path(sample.onset)
    frames = [
        read_frame(onset_path, sample.id),
        read_frame(sample.frame_path(sample.apex), sample.id),
    ]
    clip = align_frames(frames, landmarker, face)
    if clip is None:
        raise SampleError(
            sample.id,
            f"no face found in onset frame {onset_path}; the face should be frontal and at "
            "least ~80 px wide",
        )
    return onset_apex_features(clip.frames[0], clip.frames[1], clip.landmarks, flow)


_worker: dict[str, object] = {}


def _init_worker(upsample: int) -> None:
    cv2.setNumThreads(1)
    _worker["landmarker"] = FaceLandmarker(upsample)


def _job(sample: Sample, face: FaceConfig, flow: FlowConfig, cache_root: str | None):
    landmarker = _worker["landmarker"]
    try:
        key = feature_key(sample, face, flow)
        cache = FeatureCache(cache_root) if cache_root else None
        if cache is not None and (hit := cache.load(key)) is not None:
            return sample.id, hit, None, True
        array = sample_features(sample, face, flow, landmarker)  # type: ignore[arg-type]
        if cache is not None:
            cache.save(key, array)
        return sample.id, array, None, False
    except SampleError as e:
        return sample.id, None, e.reason, False
    except (KeyError, OSError) as e:
        return sample.id, None, str(e), False


def extract_onset_apex(
    samples: Sequence[Sample],
    face: FaceConfig = FaceConfig(),
    flow: FlowConfig = FlowConfig(),
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> FeatureSet:
    """Features for every sample, in `samples` order (failures left out and listed)."""
    workers = workers or min(len(samples), os.cpu_count() or 1) or 1
    cache_root = str(cache_dir) if cache_dir is not None else None
    results: dict[str, tuple[np.ndarray | None, str | None, bool]] = {}
    bar = tqdm(total=len(samples), desc="faces + flow", unit="clip", disable=not progress)
    if workers <= 1:
        _init_worker(face.upsample)
        for s in samples:
            sid, arr, err, hit = _job(s, face, flow, cache_root)
            results[sid] = (arr, err, hit)
            bar.update()
    else:
        with ProcessPoolExecutor(
            workers, initializer=_init_worker, initargs=(face.upsample,)
        ) as pool:
            futures = [pool.submit(_job, s, face, flow, cache_root) for s in samples]
            for future in futures:
                sid, arr, err, hit = future.result()
                results[sid] = (arr, err, hit)
                bar.update()
    bar.close()
    ids, arrays, skipped, hits = [], [], [], 0
    for s in samples:
        arr, err, hit = results[s.id]
        if arr is None:
            skipped.append(Skipped(s.id, err or "unknown failure"))
            log.warning("skipping %s: %s", s.id, err)
            continue
        ids.append(s.id)
        arrays.append(arr)
        hits += hit
    size = flow.size
    stacked = np.stack(arrays) if arrays else np.zeros((0, 3, size, size), np.float32)
    return FeatureSet(tuple(ids), stacked, tuple(skipped), hits)
