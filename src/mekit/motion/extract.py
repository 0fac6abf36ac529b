"""Features for a whole corpus: faces + features per sample, in a process pool, cached.

A sample that fails (unreadable frame, no face) is reported with its reason and the others go
on. Every finished sample is in the cache at once, so an interrupted run loses nothing and a
rerun recomputes nothing already done.

Samples prepared elsewhere (the generic folder format) may have no frames but precomputed
`inputs`; their features are built from those with no face or flow step (`precomputed_features`):

| kind         | inputs needed           | result                                          |
|--------------|-------------------------|-------------------------------------------------|
| `onset_apex` | flow                    | (3, S, S) u, v, strain                          |
| `apex`       | apex_image              | (1, S, S) grey in [0, 1]                        |
| `apex_flow`  | apex_image, flow        | (4, S, S) apex, u, v, strain                    |
| other kinds  | (need frames: skipped)  |                                                 |

A flow `.npy` is (2 or 3, H, W) (or (H, W, 2 or 3)) float: u, v in px of that array, and strain
(computed with `optical_strain` when absent). u, v are rescaled to px of a `FaceConfig.size`
face (u x size / W, v x size / H), the unit of the flows mekit computes, so features from
frames and from precomputed flow mean the same thing; strain, a ratio of lengths, is kept. A
flow image (PNG/JPEG...) holds u, v, strain in its R, G, B channels, each min-max normalised by
whoever wrote it, so absolute motion is lost: u and v are mapped to [-1, 1] (0 -> -1, 255 -> 1;
0..65535 for 16-bit images) and strain to [0, 1]. An apex image is read grey and scaled to
[0, 1] (assumed to be a face crop already). Everything is resized to S x S by area
averaging, as computed features are. Precomputed features are not cached: reading and resizing
costs less than hashing the inputs for a key. Settings of the face and flow steps (flow method,
head motion, eye masks, magnification) do not apply. With `FeatureConfig.realign` the inputs
are moved from their crop into mekit's face alignment, found from the apex image's landmarks
(`mekit.faces.realign`), as a model that knows where mekit puts the brows and mouth needs them.
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

from mekit.data.imagecheck import image_problem
from mekit.data.schema import Sample, Skipped
from mekit.errors import SampleError
from mekit.faces import FaceConfig, FaceLandmarker, align_frames
from mekit.faces.realign import crop_matrix, realign
from mekit.motion.cache import FeatureCache, file_digest
from mekit.motion.features import (
    FEATURE_VERSION,
    FeatureConfig,
    FeatureKind,
    compute_features,
    frames_needed,
)
from mekit.motion.flow import optical_strain
from mekit.procs import die_with_parent

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
    if problem := image_problem(path):  # imread fills a truncated JPEG with grey, silently
        raise SampleError(sample_id, problem)
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
            # realign acts on precomputed inputs only, never on frames: left out of the key
            "features": {k: v for k, v in asdict(config).items() if k != "realign"},
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


def _init_worker(upsample: int, parent: int | None = None) -> None:
    die_with_parent(parent)
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


# The precomputed inputs each feature kind is built from (kinds not listed need frames).
PRECOMPUTED_NEEDS: dict[FeatureKind, tuple[str, ...]] = {
    FeatureKind.ONSET_APEX: ("flow",),
    FeatureKind.APEX: ("apex_image",),
    FeatureKind.APEX_FLOW: ("apex_image", "flow"),
}
_SEQUENCE_NEEDS = {
    FeatureKind.KEYFRAMES: "keyframes onset..apex",
    FeatureKind.FLOW_CLIP: "every frame onset..offset",
    FeatureKind.LBPTOP: "every frame onset..offset",
    FeatureKind.FRAMES: "frames onset..offset",
    FeatureKind.APEX_FLOW_CLIP: "frames around the apex",
}


def precomputed_features(
    sample: Sample, config: FeatureConfig, face_size: int = FaceConfig().size
) -> np.ndarray:
    """Features of a sample without frames, from its precomputed `inputs` (see the module doc);
    raises SampleError naming the inputs a kind needs when the sample lacks them."""
    kind = FeatureKind(config.kind)
    have = ", ".join(name for name, _ in sample.inputs) or "none"
    if kind not in PRECOMPUTED_NEEDS:
        raise SampleError(
            sample.id,
            f"feature kind '{kind}' needs the clip's frames ({_SEQUENCE_NEEDS.get(kind, '')}); "
            f"this sample has only precomputed inputs ({have}): give it a frames folder, or "
            "use a model on onset_apex (needs flow), apex (apex_image) or apex_flow (both) "
            "features",
        )
    needs = PRECOMPUTED_NEEDS[kind]
    missing = [name for name in needs if sample.input_path(name) is None]
    if missing:
        raise SampleError(
            sample.id,
            f"feature kind '{kind}' needs the precomputed input(s) {' and '.join(needs)} "
            f"(or frames); this sample lacks {', '.join(missing)} (it has: {have})",
        )
    parts = []
    if "apex_image" in needs:
        parts.append(read_apex_image(sample.input_path("apex_image"), config.size, sample.id))
    if "flow" in needs:
        parts.append(read_flow(sample.input_path("flow"), config.size, face_size, sample.id))
    if config.realign:
        matrix = _crop_matrix(sample, config.size)
        parts = [realign(p, matrix, vectors=(0, 1) if len(p) == 3 else None) for p in parts]
    return np.concatenate(parts).astype(np.float32)


def _crop_matrix(sample: Sample, size: int) -> np.ndarray:
    """mekit's alignment of a sample's precomputed crop, from its apex image's landmarks."""
    path = sample.input_path("apex_image")
    if path is None:
        raise SampleError(
            sample.id,
            "features.realign needs the sample's apex_image (the face crop its flow was "
            "computed on) to find the face; add an apex_image column or set "
            "features.realign=false",
        )
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise SampleError(sample.id, f"cannot read apex image {path}; is it a valid JPEG/PNG?")
    if "crop" not in _worker:
        _worker["crop"] = FaceLandmarker(upsample=1)
    return crop_matrix(_worker["crop"].on_crop(image), image.shape, size)


def read_apex_image(path: Path, size: int, sample_id: str) -> np.ndarray:
    """(1, size, size) float32 grey in [0, 1] from an apex face image."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise SampleError(sample_id, f"cannot read apex image {path}; is it a valid JPEG/PNG?")
    if problem := image_problem(path):
        raise SampleError(sample_id, problem)
    return resize_channels(image[None] / np.float32(255), size)


def read_flow(path: Path, size: int, face_size: int, sample_id: str) -> np.ndarray:
    """(3, size, size) float32 u, v, strain from a flow `.npy` or flow image (module doc)."""
    if path.suffix.lower() == ".npy":
        return resize_channels(_flow_array(path, face_size, sample_id), size)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SampleError(sample_id, f"cannot read flow image {path}; is it a valid PNG/JPEG?")
    if problem := image_problem(path):
        raise SampleError(sample_id, problem)
    if image.ndim != 3 or image.shape[2] < 3:
        raise SampleError(
            sample_id,
            f"flow image {path} has {1 if image.ndim == 2 else image.shape[2]} channel(s); "
            "it needs 3: R = u, G = v, B = strain",
        )
    top = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else 1.0
    rgb = image[:, :, 2::-1].transpose(2, 0, 1).astype(np.float32) / np.float32(top)  # BGR->RGB
    rgb[:2] = rgb[:2] * 2 - 1
    return resize_channels(rgb, size)


def resize_channels(stack: np.ndarray, size: int) -> np.ndarray:
    """(C, H, W) -> (C, size, size) float32 by area averaging, as `features` resizes; H may
    differ from W here."""
    if stack.shape[1:] == (size, size):
        return stack.astype(np.float32)
    return np.stack(
        [cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in stack]
    ).astype(np.float32)


def _flow_array(path: Path, face_size: int, sample_id: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise SampleError(sample_id, f"cannot read flow {path}: {e}") from None
    if array.ndim == 3 and array.shape[0] not in (2, 3) and array.shape[-1] in (2, 3):
        array = array.transpose(2, 0, 1)  # (H, W, C) as OpenCV writes flows
    if array.ndim != 3 or array.shape[0] not in (2, 3):
        raise SampleError(
            sample_id,
            f"flow {path} has shape {array.shape}; expected (2 or 3, H, W): u, v[, strain]",
        )
    flow = array.astype(np.float32)
    if not np.isfinite(flow).all():
        raise SampleError(sample_id, f"flow {path} holds NaN or infinite values")
    if len(flow) == 2:
        flow = np.concatenate([flow, optical_strain(flow)[None]])
    height, width = flow.shape[1:]
    flow[0] *= face_size / width
    flow[1] *= face_size / height
    return flow


def _precomputed_job(sample: Sample, config: FeatureConfig, face: FaceConfig):
    if not sample.inputs:
        if sample.video is not None:
            reason = (
                f"has a video ({sample.video}) but no frames; features are not read from video "
                "files yet: extract its frames to a folder and name it in the frames column"
            )
        else:
            reason = "has no frames and no precomputed inputs"
        return sample.id, None, reason, False
    try:
        return sample.id, precomputed_features(sample, config, face.size), None, False
    except SampleError as e:
        return sample.id, None, e.reason, False
    except OSError as e:
        return sample.id, None, str(e), False


def extract_features(
    samples: Sequence[Sample],
    config: FeatureConfig = FeatureConfig(),
    face: FaceConfig = FaceConfig(),
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> FeatureSet:
    """Features for every sample, in `samples` order (failures left out and listed).

    Samples without frames are built from their precomputed inputs, in this process, uncached.
    """
    framed = [s for s in samples if s.frames]
    workers = workers or min(len(framed), os.cpu_count() or 1) or 1
    cache_root = str(cache_dir) if cache_dir is not None else None
    results: dict[str, tuple[np.ndarray | None, str | None, bool]] = {}
    bar = tqdm(total=len(samples), desc=f"faces + {config.kind}", unit="clip", disable=not progress)
    precomputed = [s for s in samples if not s.frames]
    if precomputed and (config.magnify_alpha > 0 or config.mask_eyes):
        log.warning("magnification and eye masks do not apply to precomputed inputs")
    for s in precomputed:
        sid, arr, err, hit = _precomputed_job(s, config, face)
        results[sid] = (arr, err, hit)
        bar.update()
    if framed and workers <= 1:
        _init_worker(face.upsample)
        for s in framed:
            sid, arr, err, hit = _job(s, face, config, cache_root)
            results[sid] = (arr, err, hit)
            bar.update()
    elif framed:
        with ProcessPoolExecutor(
            workers, initializer=_init_worker, initargs=(face.upsample, os.getpid())
        ) as pool:
            futures = [pool.submit(_job, s, face, config, cache_root) for s in framed]
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
