"""Corpus preparation: compute (or find in the cache) each feature kind for every sample, so
later runs read them instantly."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mekit.data.corpora import load_corpus
from mekit.data.schema import Skipped
from mekit.motion import FeatureKind
from mekit.motion.extract import extract_features
from mekit.pipeline.config import ExperimentConfig


@dataclass(frozen=True)
class PrepareOutcome:
    kind: str
    shape: tuple[int, ...]  # per sample
    done: int
    from_cache: int
    skipped: tuple[Skipped, ...]
    seconds: float


def prepare_corpus(
    corpus: Path,
    kinds: Sequence[FeatureKind],
    config: ExperimentConfig = ExperimentConfig(),
    sheet: Path | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> tuple[int, list[PrepareOutcome]]:
    """Compute (or find in the cache) each feature kind for every sample of a corpus."""
    _, loaded = load_corpus(corpus, config.dataset, sheet=sheet)
    outcomes = []
    for kind in kinds:
        t0 = time.perf_counter()
        features = extract_features(
            loaded.samples,
            replace(config.features, kind=FeatureKind(kind)),
            config.face,
            cache_dir,
            config.workers,
            progress,
        )
        outcomes.append(
            PrepareOutcome(
                kind=str(kind),
                shape=tuple(features.features.shape[1:]),
                done=len(features.ids),
                from_cache=features.cache_hits,
                skipped=loaded.skipped + features.skipped,
                seconds=time.perf_counter() - t0,
            )
        )
    return len(loaded.samples), outcomes
