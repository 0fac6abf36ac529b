"""Learned interval spotting, SOFTNet-style (Liong et al., 2021), on long videos.

SOFTNet ("Shallow optical flow three-stream CNN for macro- and micro-expression spotting from
long videos", ICIP 2021) turns spotting into a per-frame regression. The details below follow
the authors' public code (SoftNet-SpotME: `extraction_preprocess.py`, `training.py`,
`load_label.py`), called "the reference" here.

1. Flow windows (`flow_windows`): for each frame a of the video, the optical flow between the
   aligned face at frames a and a + k. k is half the average expression length (the
   reference's `cal_k`: k = int((N + 1) / 2), N the mean offset - onset in frames;
   `softnet_k`), so one k, and one model, per expression kind. Here the face comes from the
   streaming track (`mekit.spot.input.track`: crop transform fixed per stable shot) and the flow
   from OpenCV's Farneback on an 84 px crop (the reference: TV-L1 on a 128 px crop). As in the
   reference, the mean flow of an 11 px box (in 128) on the nose bridge (landmark 28) is
   subtracted (rigid head motion), u and v are taken as absolute values, the optical strain is
   computed and its nose-box mean subtracted, the eyes are masked (each eye's landmark hexagon
   with its corners and lids pushed out by 15 px in 128: blinks), and the result is resampled to
   a (3, 42, 42) image: with `layout="rois"` (the reference) the top half is the brows-and-eyes
   box and the bottom half the mouth box (landmark boxes grown by 12 px in 128), each resized to
   42 x 21; `layout="face"` resizes the whole crop instead.
2. Pseudo-labels (`pseudo_labels`): the window of frame a is 1 when a..a+k overlaps an annotated
   interval onset..offset (the reference: "IoU > 0"), else 0. Seen from the window's centre
   a + k/2, that is the interval widened by k/2 at both ends.
3. SOFTNet (`mekit.models.softnet.SoftNet`) regresses that label with a mean squared error loss
   (`train_spotter`). As in the reference: half of the negatives are dropped at random, the
   positives of a micro-expression model get three augmented copies (horizontal flip, 7 x 7
   Gaussian blur, Gaussian noise), the inputs are scaled per sample and channel to [0, 1], and
   leave-one-subject-out trains a fresh model per fold (`mekit.spot.learned.loso`).
4. Spotting (`spot_from_scores`): the scores are smoothed by a moving average over about 2k
   windows (the reference's "score aggregation": agg[j] = mean(score[j - k .. j + k - 1]);
   here j - k .. j + k, centred), thresholded at T = mean + p (max - mean) of the smoothed
   curve (p = 0.55 in the reference), and each peak above T (at least k frames apart, scipy's
   find_peaks) gives an interval of 2k + 1 frames. The reference's is j - k .. j + k, centred
   on the first frame j of the peak's windows, which puts it k / 2 frames before their centre;
   here it is centred on that centre, j + k // 2.

Departures from the reference, each an option with the reference's value available: the
optimiser (Adam, lr 1e-3, batches of 12, 10 epochs here; the reference: SGD, lr 5e-4, batches of
12, 10 epochs -> `optimizer="sgd", lr=5e-4`); a floor under T (`min_score`, 0.3 here, none in
the reference, whose relative threshold always passes the largest peak, so that a video without
expressions always reports one); the intervals' placement (above); the smoothing at the ends of
the video (the reference drops the first and last k smoothed values; here they average what
exists); and the noise augmentation (the reference adds skimage's `random_noise`, variance
0.01, to the unscaled features; here noise of 0.1 x each channel's range to the scaled ones).
`combine_kinds` (micro spots inside macro ones dropped) is not in the reference, which scores
its two models apart.

The flow windows and pseudo-labels (steps 1 and 2) are `mekit.spot.learned.windows`.

Training and spotting as commands (`mekit train --corpus DIR --model softnet`, `mekit spot
VIDEO --spotter RUN`) are in `mekit.spot.learned.run`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from scipy.signal import find_peaks
from tqdm.auto import tqdm

from mekit.config import Choice, Config, check_range, choice_enum
from mekit.errors import MekitError
from mekit.fileio import atomic_write
from mekit.models.softnet import CHANNEL_NAMES, NORMALIZE, SoftNet
from mekit.spot.learned.windows import SpotterVideo, WindowStream
from mekit.spot.metrics import Interval
from mekit.train.checkpoint import file_sha256, model_paths, write_weights
from mekit.train.group_state import GroupState, cpu_copy

log = logging.getLogger(__name__)

DEFAULT_P = 0.55  # the reference's threshold factor
OPTIMIZERS = ("adam", "sgd")
MICRO_MAX_MS = 500.0
FORMAT = "mekit-spotter"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# training


class SpotKind(Choice):
    MICRO = "micro"
    MACRO = "macro"


class Augment(Choice):
    AUTO = "auto"  # for micro-expression models only, as the reference


Optimizer = choice_enum("Optimizer", OPTIMIZERS, __name__)
Normalize = choice_enum("Normalize", NORMALIZE, __name__)  # `mekit.models.softnet` owns them


@dataclass(frozen=True)
class SpotterConfig(Config, section="spotter"):
    """How a SOFTNet spotter is trained and how its scores become intervals.

    kind: the expressions that are positives ("micro", "macro"; None: all): the reference
    trains one model per kind, with its own k. epochs, batch_size, lr, optimizer ("adam" |
    "sgd"; the reference: SGD, lr 5e-4, batches of 12, 10 epochs). negative_keep: share of the
    negatives kept (the reference drops half). augment: three augmented copies of each positive
    (flip, blur, noise; "auto": for micro-expression models only, as the reference). normalize:
    input scaling (see `mekit.models.softnet`; the reference: "minmax"). kernel_size, hidden:
    the network.
    train_rate: windows per second of video used for training (every round(fps / train_rate)-th
    window of a `SpotterVideo`; None: all, as the reference): neighbouring windows of a 200 fps
    video are near copies, and training time grows with their number.
    p: threshold factor; min_score: floor under the threshold (see the module doc); seed; threads:
    torch threads while training (None: leave as is).
    """

    kind: SpotKind | None = SpotKind.MICRO
    epochs: int = 10
    batch_size: int = 12
    lr: float = 1e-3
    optimizer: Optimizer = Optimizer("adam")
    negative_keep: float = 0.5
    augment: bool | Augment = Augment.AUTO
    normalize: Normalize = Normalize("minmax")
    kernel_size: int = 5
    hidden: int = 400
    p: float = DEFAULT_P
    min_score: float = 0.3
    seed: int = 0
    threads: int | None = None
    train_rate: float | None = None

    def check(self) -> None:
        check_range(self, "epochs", 1)
        check_range(self, "batch_size", 1)
        check_range(self, "lr", 0, lo_open=True)
        check_range(self, "negative_keep", 0, 1, lo_open=True)
        check_range(self, "p", 0, 1, lo_open=True, hi_open=True)
        if self.train_rate is not None:
            check_range(self, "train_rate", 0, lo_open=True)

    @property
    def augments(self) -> bool:
        return self.kind == "micro" if self.augment == "auto" else bool(self.augment)


TrainingVideo = SpotterVideo | tuple[np.ndarray, np.ndarray, str]


def _xy(
    video: TrainingVideo, kind: str | None, rate: float | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    if isinstance(video, SpotterVideo):
        step = max(1, int(round(video.fps / rate))) if rate and video.fps > 0 else 1
        return video.X[::step], video.labels(kind)[::step], video.subject
    X, y, subject = video
    X, y = np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.float32)
    if X.ndim != 4 or len(X) != len(y):
        raise MekitError(f"training video of {subject}: X {X.shape} and y {y.shape} do not fit")
    return X, y, str(subject)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Three copies of scaled images x (B, C, H, W): flipped, blurred (7 x 7), noisy (0.1 of
    each image channel's range), as the reference augments its positives."""
    flipped = torch.flip(x, dims=(3,))
    c = x.shape[1]
    kernel1d = torch.tensor(cv2.getGaussianKernel(7, 0).ravel(), dtype=x.dtype)
    kernel = (kernel1d[:, None] * kernel1d[None, :]).expand(c, 1, 7, 7)
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3), mode="reflect")
    blurred = torch.nn.functional.conv2d(padded, kernel, groups=c)
    span = x.amax(dim=(2, 3), keepdim=True) - x.amin(dim=(2, 3), keepdim=True)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * 0.1 * span
    return torch.cat([flipped, blurred, x + noise])


def train_spotter(
    videos: Sequence[TrainingVideo],
    config: SpotterConfig = SpotterConfig(),
    *,
    progress: bool = False,
) -> SoftNet:
    """A SOFTNet trained on `videos`: `SpotterVideo`s (labels from their truths of
    `config.kind`) or (X (N, 3, S, S), y (N,), subject) tuples. Returns the model in eval mode.

    Deterministic for a given `config.seed` (on one machine and torch version)."""
    if not videos:
        raise MekitError("no training video")
    X, y, _ = stack_windows(videos, config)
    return fit_softnet(X, y, config, progress=progress)


def stack_windows(
    videos: Sequence[TrainingVideo], config: SpotterConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training windows of `videos`, their targets and their subjects, concatenated in
    order."""
    parts = [_xy(v, config.kind, config.train_rate) for v in videos]
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([np.full(len(p[1]), p[2]) for p in parts]),
    )


def fit_softnet(
    X: np.ndarray,
    y: np.ndarray,
    config: SpotterConfig = SpotterConfig(),
    *,
    progress: bool = False,
    progress_file: GroupState | None = None,
) -> SoftNet:
    """A SOFTNet trained on windows X (N, 3, S, S) with soft targets y (N,) in [0, 1]: the
    negatives thinned, the positives augmented, as `train_spotter` describes. Returns the model
    in eval mode; deterministic for a given `config.seed`. With `progress_file`
    (`mekit.train.group_state`), saves its progress at epoch ends (about once a minute) and
    continues from it, with the same result (the caller removes it once the result is kept)."""
    positives = np.flatnonzero(y >= 0.5)
    negatives = np.flatnonzero(y < 0.5)
    if len(positives) == 0:
        raise MekitError(
            f"no positive window among {len(X)} training windows "
            f"({config.kind or 'any'} expressions): nothing to learn"
        )
    rng = np.random.default_rng(config.seed)
    keep = rng.choice(
        negatives, size=int(round(len(negatives) * config.negative_keep)), replace=False
    )
    chosen = np.sort(np.concatenate([positives, keep]))
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(int(config.threads))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = SoftNet(
                size=X.shape[-1],
                kernel_size=config.kernel_size,
                hidden=config.hidden,
                normalize=config.normalize,
            )
        generator = torch.Generator().manual_seed(config.seed)
        raw = torch.from_numpy(np.ascontiguousarray(X[chosen]))
        targets = torch.from_numpy(y[chosen])
        if config.normalize == "scale":
            model.fit_scale(raw)
        with torch.no_grad():
            inputs = model.prepare(raw)
            if config.augments:
                pos = targets >= 0.5
                inputs = torch.cat([inputs, _augment(inputs[pos], generator)])
                targets = torch.cat([targets, targets[pos].repeat(3)])
        _fit(model, inputs, targets, config, generator, progress, progress_file)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model


def _fit(
    model: SoftNet,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: SpotterConfig,
    generator: torch.Generator,
    progress: bool,
    progress_file: GroupState | None = None,
) -> None:
    if config.optimizer == "sgd":
        optimiser: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    else:
        optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = torch.nn.MSELoss()
    n = len(inputs)
    model.train()
    start = 0
    saved = progress_file.load() if progress_file is not None else None
    if saved is not None:  # SOFTNet has no dropout: the batch order is its only draw
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        start = int(saved["step"])
    bar = tqdm(
        range(start, config.epochs),
        desc="softnet",
        unit="epoch",
        initial=start,
        total=config.epochs,
        disable=not progress,
    )
    for epoch in bar:
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for s in range(0, n, config.batch_size):
            batch = order[s : s + config.batch_size]
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model.body(inputs[batch]), targets[batch])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        bar.set_postfix(loss=f"{total / n:.4f}")
        log.debug("softnet epoch loss %.4f", total / n)
        if progress_file is not None and epoch + 1 < config.epochs and progress_file.due():
            progress_file.save(
                lambda done=epoch + 1: cpu_copy(
                    {
                        "step": done,
                        "model": model.state_dict(),
                        "optimizer": optimiser.state_dict(),
                        "generator": generator.get_state(),
                    }
                )
            )


@torch.no_grad()
def score_video(model: SoftNet, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(N,) float32 spotting scores of flow images X (N, 3, S, S)."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise MekitError(f"score_video needs flow images (N, C, H, W), got shape {X.shape}")
    was = model.training
    model.eval()
    out = np.empty(len(X), np.float32)
    for s in range(0, len(X), batch_size):
        out[s : s + batch_size] = model(torch.from_numpy(X[s : s + batch_size])).numpy()
    model.train(was)
    return out


def score_source(
    model: SoftNet,
    source: str | Path | Iterable,
    k: int,
    *,
    batch_size: int = 512,
    **window_options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """(frames, scores) of a video scored as its windows stream by, batch by batch: memory
    does not grow with the video beyond the two (N,) arrays. `window_options` go to
    `WindowStream` (fps, face_size, method, layout, track, ...), and must match how the model
    was trained."""
    stream = WindowStream(source, k, model.size, **window_options)
    frames: list[int] = []
    scores: list[np.ndarray] = []
    batch = np.empty((batch_size, 3, model.size, model.size), np.float32)
    used = 0
    for index, image in stream:
        batch[used] = image
        used += 1
        frames.append(index)
        if used == batch_size:
            scores.append(score_video(model, batch))
            used = 0
    if used:
        scores.append(score_video(model, batch[:used]))
    return np.asarray(frames, dtype=np.int64), np.concatenate(scores)


# ---------------------------------------------------------------------------------------------
# spotting


def smooth_scores(frames: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(grid, agg): the window scores on every frame frames[0]..frames[-1] (windows left out
    are missing), smoothed over 2k + 1 windows: agg[j] = mean(score[j - k .. j + k]) over the
    windows that exist (NaN where none does). The reference averages score[j - k .. j + k - 1]."""
    frames = np.asarray(frames, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if frames.shape != scores.shape or frames.ndim != 1:
        raise MekitError(f"frames {frames.shape} and scores {scores.shape} must be (N,) alike")
    if len(frames) == 0:
        return frames.copy(), scores.copy()
    if np.any(np.diff(frames) <= 0):
        raise MekitError("frames must be strictly increasing")
    grid = np.arange(frames[0], frames[-1] + 1)
    value = np.zeros(len(grid))
    count = np.zeros(len(grid))
    ok = np.isfinite(scores)
    value[frames[ok] - frames[0]] = scores[ok]
    count[frames[ok] - frames[0]] = 1.0
    cv = np.concatenate([[0.0], np.cumsum(value)])
    cc = np.concatenate([[0.0], np.cumsum(count)])
    j = np.arange(len(grid))
    lo, hi = np.clip(j - k, 0, len(grid)), np.clip(j + k + 1, 0, len(grid))
    n = cc[hi] - cc[lo]
    agg = np.full(len(grid), np.nan)
    np.divide(cv[hi] - cv[lo], n, out=agg, where=n > 0)
    return grid, agg


def spot_from_scores(
    frames: np.ndarray,
    scores: np.ndarray,
    fps: float,
    k: int,
    p: float = DEFAULT_P,
    *,
    kind: str | None = None,
    min_score: float = 0.0,
    last_frame: int | None = None,
    micro_max_ms: float = MICRO_MAX_MS,
    video: str = "",
) -> list[Interval]:
    """Intervals from per-window scores (the reference's spotting, see the module doc).

    `frames`: the windows' first frames; `scores`: their scores (NaN: missing). The scores are
    smoothed (`smooth_scores`); T = max(mean + p (max - mean), min_score) of the smoothed
    curve; each peak j above T (peaks at least k frames apart) is an expression centred on its
    windows' centre c = j + k // 2: the interval c - k .. c + k (clipped to frames[0] ..
    `last_frame`, default frames[-1] + k), apex c, score the smoothed value. (The reference puts
    the interval at j - k .. j + k, k / 2 frames early.) `kind`: the kind of every interval
    (None: "micro" when it lasts at most `micro_max_ms`, else "macro").
    """
    if not 0 < p < 1:
        raise MekitError(f"p must be in (0, 1), got {p}")
    if k < 1:
        raise MekitError(f"k must be at least 1, got {k}")
    if not fps > 0:
        raise MekitError(f"fps must be positive, got {fps}")
    grid, agg = smooth_scores(frames, scores, k)
    good = np.isfinite(agg)
    if not good.any():
        return []
    mean, top = float(agg[good].mean()), float(agg[good].max())
    threshold = max(mean + p * (top - mean), float(min_score))
    # below everything at missing windows and past both ends, so a maximum there is a peak
    low = float(agg[good].min()) - 1.0
    curve = np.concatenate([[low], np.where(good, agg, low), [low]])
    peaks, _ = find_peaks(curve, height=threshold, distance=max(1, int(k)))
    peaks = peaks - 1
    first = int(grid[0])
    last = int(grid[-1]) + int(k) if last_frame is None else int(last_frame)
    out = []
    for i in peaks:
        centre = min(max(int(grid[i]) + k // 2, first), last)
        onset, offset = max(centre - k, first), min(centre + k, last)
        if kind is None:
            this = "micro" if (offset - onset) / fps * 1000.0 <= micro_max_ms else "macro"
        else:
            this = kind
        out.append(
            Interval(
                onset=onset,
                offset=offset,
                kind=this,
                apex=centre,
                score=float(agg[i]),
                video=video,
            )
        )
    return out


def combine_kinds(
    micro: Iterable[Interval], macro: Iterable[Interval], overlap: float = 0.5
) -> list[Interval]:
    """One video's micro- and macro-expression intervals from the two kinds' spotters, in time
    order, without the micro intervals that lie within a macro one (sharing at least
    `overlap` of their frames): a micro-expression model fires on the rise and fall of
    macro-expressions too, since its k-frame windows cannot see an expression's length.
    (The reference scores the two models apart and does not combine them.)"""
    macro = list(macro)
    kept = []
    for x in micro:
        inside = max(
            (min(x.offset, m.offset) - max(x.onset, m.onset) + 1 for m in macro), default=0
        )
        if inside < overlap * x.length:
            kept.append(x)
    return sorted(kept + macro, key=lambda x: (x.onset, x.offset))


# ---------------------------------------------------------------------------------------------
# files


@dataclass(frozen=True)
class LoadedSpotter:
    """A spotter read by `load_spotter`: the model (eval mode, CPU) and what it was saved with
    (`meta`: k_s, window settings, spotting settings, provenance)."""

    model: SoftNet
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def windows(self) -> dict[str, Any]:
        """The `flow_windows` settings the model was trained with."""
        return dict(self.meta.get("windows", {}))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise MekitError(f"cannot write {value!r} ({type(value).__name__}) to a spotter sidecar")


def save_spotter(
    path: str | os.PathLike[str],
    model: SoftNet,
    *,
    windows: Mapping[str, Any],
    config: SpotterConfig | None = None,
    **extra: Any,
) -> tuple[Path, Path]:
    """Write the weights (safetensors) and a JSON sidecar; returns (weights, sidecar).

    `path`: stem or either file name. `windows`: how the flow images were made (k_s or k,
    size, face_size, method, layout), needed to use the model; `config`: the training and
    spotting settings; `extra`: provenance (corpus, metrics...), JSON-serialisable. Not the
    recognition models' `save_model`: SOFTNet is not a registered classifier.
    """
    weights, sidecar = model_paths(path)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    digest = write_weights(weights, state, {"format": FORMAT})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": "softnet",
        "model_kwargs": model.options(),
        "input": {"channels": list(CHANNEL_NAMES), "size": model.size},
        "windows": _plain(dict(windows)),
        "config": _plain(asdict(config)) if config is not None else None,
        "sha256": digest,
        **_plain(extra),
    }
    atomic_write(sidecar, json.dumps(meta, indent=2, sort_keys=True))
    return weights, sidecar


def load_spotter(path: str | os.PathLike[str]) -> LoadedSpotter:
    """Read a spotter written by `save_spotter` (stem or either file): the sidecar is checked,
    the weights' SHA-256 compared with it, and the weights read with safetensors (no pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, sidecar = model_paths(path)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MekitError(f"spotter sidecar {sidecar} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MekitError(f"spotter sidecar {sidecar} is not valid JSON: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise MekitError(f"{sidecar} is not a mekit spotter file (format is not {FORMAT!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise MekitError(f"{sidecar} was written by a newer mekit; upgrade mekit")
    if not weights.is_file():
        raise MekitError(f"spotter weights {weights} not found (named by {sidecar})")
    if file_sha256(weights) != meta.get("sha256"):
        raise MekitError(
            f"spotter weights {weights} do not match the SHA-256 in {sidecar}: the file is "
            "corrupt or was modified after saving"
        )
    try:
        state = load_file(str(weights), device="cpu")
        kwargs = dict(meta["model_kwargs"])
        kwargs["stream_widths"] = tuple(kwargs.get("stream_widths", (3, 5, 8)))
        model = SoftNet(**kwargs)
        model.load_state_dict(state, strict=True)
    except (SafetensorError, OSError, KeyError, TypeError, ValueError, RuntimeError) as error:
        raise MekitError(f"cannot read spotter {weights}: {error}") from None
    model.eval()
    return LoadedSpotter(model=model, meta=meta)
