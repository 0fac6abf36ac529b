"""The learned spotter under leave-one-subject-out, on mekit's fold runner.

`loso_spotting` runs one fold per subject through `mekit.train.loso.map_folds` (any executor:
here, worker processes, Ray): each fold fits a `SoftNetEstimator` on the other subjects'
windows only and scores its own subject's videos into `ScoreCurve`s; finished folds can be
saved and resumed (`checkpoint_dir`). `spot_curves` and `loso_scores` turn the curves into
intervals and MEGC scores. The network, its training and the scores-to-intervals step are
`mekit.spot.learned.spotter`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mekit.data.schema import LongVideo
from mekit.errors import MekitError
from mekit.spot.learned.spotter import (
    SpotterConfig,
    fit_softnet,
    score_video,
    spot_from_scores,
    stack_windows,
)
from mekit.spot.learned.windows import SpotterVideo
from mekit.spot.metrics import Interval, SpotScores, spotting_scores
from mekit.train.executors import FoldExecutor
from mekit.train.group_state import GroupState
from mekit.train.loso import load_stamped, map_folds, save_stamped
from mekit.train.splits import Fold, loso_folds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreCurve:
    """A video's scores from the model of the fold that held its subject out."""

    video: str
    subject: str
    fps: float
    k: int
    frames: np.ndarray
    scores: np.ndarray
    last_frame: int


@dataclass
class SoftNetEstimator:
    """SOFTNet under the fold runner's estimator contract (`mekit.train.estimators`): `fit` on
    one fold's training windows (X (N, 3, S, S), soft targets y (N,), groups their subjects),
    then `predict` the spotting score of other windows. The schedule is fixed, so nothing is
    selected on held-out data and `groups` / `eval_set` are only part of the contract. With a
    `progress_file`, `fit` saves its progress there and continues from it."""

    config: SpotterConfig = field(default_factory=SpotterConfig)
    progress_file: GroupState | None = None

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray | None = None,
        eval_set: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> SoftNetEstimator:
        self.model_ = fit_softnet(X, y, self.config, progress_file=self.progress_file)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(N,) scores of windows X (N, 3, S, S)."""
        return score_video(self.model_, X)


# Bump when a fold file's contents or its fingerprint change: old files are then retrained.
_FOLD_FILE_VERSION = 1


def loso_spotting(
    videos: Sequence[SpotterVideo] | Sequence[LongVideo],
    config: SpotterConfig = SpotterConfig(),
    *,
    progress: bool = False,
    windows_for_fold: Callable[[str], Sequence[SpotterVideo]] | None = None,
    executor: FoldExecutor | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> dict[str, ScoreCurve]:
    """Leave-one-subject-out through mekit's fold runner (`mekit.train.loso.map_folds`): for
    each subject (sorted), a fresh SOFTNet (`SoftNetEstimator`, seed config.seed + fold) fitted
    on the other subjects' windows scores that subject's videos. Returns {video id: its curve};
    no video is ever scored by a model that saw its subject.

    `windows_for_fold(held-out subject)` gives that fold's windows of every video, in the order
    of `videos`, e.g. with a window length k fitted on the other subjects' annotations only
    (`mekit.spot.learned.run`); `videos` may then be the corpus's `LongVideo`s (only their ids
    and subjects are read). By default every fold uses `videos`, which must then be windows.
    `executor`: where folds run (`mekit.train.executors`; default here, one after another;
    workers use config.threads or 1 torch threads). `checkpoint_dir`: each finished fold's
    curves are saved there (`fold_NNN.npz`, stamped with a digest of its settings and of the
    windows it saw), and a rerun loads the folds that match instead of training them again; a
    fold in training saves its progress beside it (`fold_NNN.progress.pt`) and continues it.
    """
    ids = [v.id for v in videos]
    if len(set(ids)) != len(ids):
        raise MekitError("video ids must be unique")
    folds = loso_folds([v.subject for v in videos])
    curves: dict[str, ScoreCurve] = {}
    resumed = 0
    for fold_curves, loaded in map_folds(
        _spot_fold,
        folds,
        (list(videos),),
        (config, windows_for_fold, None if checkpoint_dir is None else str(checkpoint_dir)),
        threads=config.threads or 1,
        executor=executor,
        progress=progress,
        desc=f"LOSO softnet {config.kind or 'all'}",
    ):
        resumed += loaded
        curves.update((c.video, c) for c in fold_curves)
    if checkpoint_dir is not None:
        log.info(
            "softnet LOSO: %d of %d folds resumed from %s", resumed, len(folds), checkpoint_dir
        )
    return {i: curves[i] for i in ids}


def _spot_fold(
    videos: Sequence[SpotterVideo] | Sequence[LongVideo],
    fold: Fold,
    config: SpotterConfig,
    windows_for_fold: Callable[[str], Sequence[SpotterVideo]] | None,
    checkpoint_dir: str | None,
) -> tuple[list[ScoreCurve], bool]:
    """One fold of `loso_spotting`: (the curves of the videos it holds out, whether they were
    read from its checkpoint). The fold's `train_idx` alone chooses what the model sees."""
    data = list(windows_for_fold(fold.test_subject)) if windows_for_fold else list(videos)
    if not all(isinstance(v, SpotterVideo) for v in data):
        raise MekitError("loso_spotting needs windows (SpotterVideo) or windows_for_fold")
    if [v.id for v in data] != [v.id for v in videos]:
        raise MekitError("windows_for_fold must give the windows of every video, in order")
    train = [data[i] for i in fold.train_idx]
    test = [data[i] for i in fold.test_idx]
    cfg = replace(config, seed=config.seed + fold.index)
    path = fingerprint = fit_progress = None
    if checkpoint_dir is not None:
        path = Path(checkpoint_dir) / f"fold_{fold.index:03d}.npz"
        fingerprint = _fold_fingerprint(cfg, fold, train, test)
        fit_progress = GroupState(path.with_suffix(".progress.pt"), fingerprint)
        saved = _load_fold(path, fingerprint, test)
        if saved is not None:
            fit_progress.clear()  # left by a run stopped right after the fold's save
            return saved, True
    X, y, groups = stack_windows(train, cfg)
    estimator = SoftNetEstimator(cfg, progress_file=fit_progress).fit(X, y, groups)
    curves = [
        ScoreCurve(
            video=v.id,
            subject=v.subject,
            fps=v.fps,
            k=v.k,
            frames=v.frames,
            scores=estimator.predict(v.X),
            last_frame=v.last_frame,
        )
        for v in test
    ]
    if path is not None and fingerprint is not None and fit_progress is not None:
        _save_fold(path, fingerprint, curves)
        fit_progress.clear()
    return curves, False


def _fold_fingerprint(
    config: SpotterConfig, fold: Fold, train: Sequence[SpotterVideo], test: Sequence[SpotterVideo]
) -> str:
    """Hex digest of everything that determines a fold's curves: its settings (seed included)
    and every window it trains on or scores, with their truths."""
    h = hashlib.sha256()

    def add(payload: bytes) -> None:
        h.update(len(payload).to_bytes(8, "little"))
        h.update(payload)

    add(
        json.dumps(
            [_FOLD_FILE_VERSION, asdict(config), fold.index, fold.test_subject],
            sort_keys=True,
            default=str,
        ).encode()
    )
    for role, group in (("train", train), ("test", test)):
        for v in group:
            truth = [[t.onset, t.apex, t.offset, t.kind] for t in v.truth]
            add(json.dumps([role, v.id, v.subject, v.fps, v.k, truth], default=str).encode())
            add(np.ascontiguousarray(v.frames, dtype=np.int64).tobytes())
            add(memoryview(np.ascontiguousarray(v.X, dtype=np.float32)).cast("B"))
    return h.hexdigest()


def _save_fold(path: Path, fingerprint: str, curves: Sequence[ScoreCurve]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"scores_{i}": np.asarray(c.scores, np.float32) for i, c in enumerate(curves)}
    save_stamped(path, fingerprint, ids=np.array(json.dumps([c.video for c in curves])), **arrays)


def _load_fold(
    path: Path, fingerprint: str, test: Sequence[SpotterVideo]
) -> list[ScoreCurve] | None:
    """The saved curves of a fold, or None when the file is missing, stale or unreadable."""

    def read(z: Any) -> list[np.ndarray] | None:
        if json.loads(str(z["ids"])) != [v.id for v in test]:
            return None
        return [np.array(z[f"scores_{i}"], dtype=np.float32) for i in range(len(test))]

    scores = load_stamped(path, fingerprint, read)
    if scores is None or any(len(s) != len(v.frames) for s, v in zip(scores, test, strict=True)):
        return None
    return [
        ScoreCurve(v.id, v.subject, v.fps, v.k, v.frames, s, v.last_frame)
        for s, v in zip(scores, test, strict=True)
    ]


def spot_curves(
    curves: Mapping[str, ScoreCurve], config: SpotterConfig = SpotterConfig()
) -> dict[str, list[Interval]]:
    """{video: intervals} spotted on each curve with config.p, min_score and kind."""
    return {
        name: spot_from_scores(
            c.frames,
            c.scores,
            c.fps,
            c.k,
            config.p,
            kind=config.kind,
            min_score=config.min_score,
            last_frame=c.last_frame,
            video=name,
        )
        for name, c in curves.items()
    }


def loso_scores(
    videos: Sequence[SpotterVideo],
    curves: Mapping[str, ScoreCurve],
    config: SpotterConfig = SpotterConfig(),
    threshold: float = 0.5,
) -> SpotScores:
    """MEGC spotting scores (IoU >= `threshold`) of the LOSO curves against the videos'
    truths of config.kind (all kinds when None)."""
    predicted = spot_curves(curves, config)
    truth = {
        v.id: [t for t in v.truth if config.kind is None or t.kind == config.kind] for v in videos
    }
    return spotting_scores(predicted, truth, threshold, kind=config.kind)
