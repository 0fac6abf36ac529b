"""Features for a whole corpus: faces + features per sample, in a process pool, cached.

A sample that fails (unreadable frame, no face) is reported with its reason and the others go
on. Every finished sample is in the cache at once, so an interrupted run loses nothing and a
rerun recomputes nothing already done.
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
from mekit.motion.features import FEATURE_VERSION, FeatureConfig, compute_features, frames_needed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSet:
    """Features of the samples that worked, by id; `skipped` says why the others did not."""

    ids: tuple[str, ...]
    features: np.ndarray  # (N, ...) float32, row i belongs to ids[i]
    skipped: tuple[Skipped, ...]
    cache_hits: int


def read_frame(path: Path, sample_id: str) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SampleError(sample_id, f"cannot read image {path}; is it a valid JPEG/PNG?")
    return image


def _numbers(sample: Sample, config: FeatureConfig) -> tuple[int, ...]:
    return frames_needed(sample.onset, sample.apex, sample.offset, config)


def feature_key(sample: Sample, face: FaceConfig, config: FeatureConfig) -> str:
    """Cache key: the bytes of every frame used, and every setting that shapes the result."""
    return FeatureCache.key(
        {
            "version": FEATURE_VERSION,
            "frames": [file_digest(sample.frame_path(n)) for n in _numbers(sample, config)],
            "fps": sample.fps,
            "face": asdict(face),
            "features": asdict(config),
        }
    )


def sample_features(
    sample: Sample, face: FaceConfig, config: FeatureConfig, landmarker: FaceLandmarker
) -> np.ndarray:
    """Features of one sample; raises SampleError with the reason on failure."""
    numbers = _numbers(sample, config)
    paths = [sample.frame_path(n) for n in numbers]
    clip = align_frames([read_frame(p, sample.id) for p in paths], landmarker, face)
    if clip is None:
        raise SampleError(
            sample.id,
            f"no face found in onset frame {paths[0]}; the face should be frontal and at "
            "least ~80 px wide",
        )
    frames = np.stack(clip.frames)
    return compute_features(
        frames,
        numbers,
        sample.onset,
        sample.apex,
        sample.offset,
        sample.fps,
        clip.landmarks,
        config,
    )


_worker: dict[str, FaceLandmarker] = {}


def _init_worker(upsample: int) -> None:
    cv2.setNumThreads(1)
    _worker["landmarker"] = FaceLandmarker(upsample)


def _job(sample: Sample, face: FaceConfig, config: FeatureConfig, cache_root: str | None):
    try:
        key = feature_key(sample, face, config)
        cache = FeatureCache(cache_root) if cache_root else None
        if cache is not None and (hit := cache.load(key)) is not None:
            return sample.id, hit, None, True
        array = sample_features(sample, face, config, _worker["landmarker"])
        if cache is not None:
            cache.save(key, array)
        return sample.id, array, None, False
    except SampleError as e:
        return sample.id, None, e.reason, False
    except (KeyError, OSError) as e:
        return sample.id, None, str(e), False


def extract_features(
    samples: Sequence[Sample],
    config: FeatureConfig = FeatureConfig(),
    face: FaceConfig = FaceConfig(),
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> FeatureSet:
    """Features for every sample, in `samples` order (failures left out and listed)."""
    workers = workers or min(len(samples), os.cpu_count() or 1) or 1
    cache_root = str(cache_dir) if cache_dir is not None else None
    results: dict[str, tuple[np.ndarray | None, str | None, bool]] = {}
    bar = tqdm(total=len(samples), desc=f"faces + {config.kind}", unit="clip", disable=not progress)
    if workers <= 1:
        _init_worker(face.upsample)
        for s in samples:
            sid, arr, err, hit = _job(s, face, config, cache_root)
            results[sid] = (arr, err, hit)
            bar.update()
    else:
        with ProcessPoolExecutor(
            workers, initializer=_init_worker, initargs=(face.upsample,)
        ) as pool:
            futures = [pool.submit(_job, s, face, config, cache_root) for s in samples]
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
    stacked = np.stack(arrays) if arrays else np.zeros((0,), np.float32)
    return FeatureSet(tuple(ids), stacked, tuple(skipped), hits)
