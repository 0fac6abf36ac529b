"""The vertical slice: corpus -> faces -> onset/apex flow -> model -> LOSO -> report.

Each stage lives in its own package; this module only wires them, joined by sample id.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mekit import __version__
from mekit.config import from_mapping, to_dict
from mekit.data.casme2 import load_casme2
from mekit.data.labels import load_scheme
from mekit.data.schema import Skipped
from mekit.errors import MekitError
from mekit.faces import FaceConfig
from mekit.models import get_spec
from mekit.motion import FeatureConfig, FeatureKind
from mekit.motion.extract import extract_features
from mekit.synth import SynthConfig, generate_corpus
from mekit.train import TrainConfig, run_loso, write_report
from mekit.train.classical import CLASSICAL_MODELS, run_loso_classical
from mekit.train.inputs import feature_config_for, to_model_layout
from mekit.train.metrics import ClassificationMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExperimentConfig:
    dataset: str = "casme2"
    labels: str = "megc2019"  # built-in scheme name or a CSV path (dataset,emotion,label)
    model: str = "ststnet"  # a registered network (`mekit models`) or "lbptop_svm"
    workers: int = 2  # processes for faces/flow and for LOSO folds
    face: FaceConfig = FaceConfig()
    features: FeatureConfig = FeatureConfig()  # kind, size and frames come from the model
    train: TrainConfig = TrainConfig()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        return from_mapping(cls, values)


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    metrics: ClassificationMetrics
    n_samples: int
    skipped: tuple[Skipped, ...]
    timings: dict[str, float] = field(default_factory=dict)


def run_experiment(
    corpus: Path,
    out: Path,
    config: ExperimentConfig = ExperimentConfig(),
    sheet: Path | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> RunOutcome:
    """LOSO on a CASME II-layout corpus; writes a full report to `out` and returns its metrics."""
    timings: dict[str, float] = {}
    spec = None if config.model in CLASSICAL_MODELS else get_spec(config.model)
    if spec is None:
        feature_config = replace(config.features, kind=FeatureKind.LBPTOP)
    else:
        feature_config = feature_config_for(spec, config.features)
    t0 = time.perf_counter()
    loaded = load_casme2(corpus, sheet, dataset=config.dataset)
    scheme = load_scheme(config.labels, raw_labels=tuple({s.emotion for s in loaded.samples}))
    skipped = list(loaded.skipped)
    labelled, label_of = [], {}
    for s in loaded.samples:
        label = scheme.label_of(s)
        if label is None:
            skipped.append(Skipped(s.id, f"emotion '{s.emotion}' is not in scheme {scheme.name}"))
            continue
        labelled.append(s)
        label_of[s.id] = label
    timings["load_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    features = extract_features(
        labelled, feature_config, config.face, cache_dir, config.workers, progress
    )
    timings["features_s"] = time.perf_counter() - t0
    skipped.extend(features.skipped)

    by_id = {s.id: s for s in labelled}
    ids = list(features.ids)
    subjects = [by_id[i].subject for i in ids]
    present = sorted({label_of[i] for i in ids})
    labels = [lab for lab in scheme.labels if lab in present]
    if len(set(subjects)) < 2 or len(labels) < 2:
        raise MekitError(
            f"LOSO needs at least 2 subjects and 2 classes; {corpus} gave {len(ids)} usable "
            f"samples from {len(set(subjects))} subject(s) in classes {labels}"
        )
    y = np.array([labels.index(label_of[i]) for i in ids])

    t0 = time.perf_counter()
    if spec is None:
        result = run_loso_classical(
            features.features, y, subjects, ids, labels, config.train, progress=progress
        )
    else:
        X = to_model_layout(features.features, spec, feature_config.kind)
        result = run_loso(
            X,
            y,
            subjects,
            ids,
            labels,
            config.model,
            config.train,
            workers=config.workers,
            progress=progress,
        )
    timings["loso_s"] = time.perf_counter() - t0

    resolved = {
        "mekit_version": __version__,
        "corpus": str(Path(corpus).resolve()),
        "sheet": str(sheet) if sheet else None,
        "protocol": "loso",
        **to_dict(config),
        "features": to_dict(feature_config),  # as the model's input spec resolved them
    }
    paths = write_report(
        out,
        title=f"{config.model} on {config.dataset} ({scheme.name}, LOSO)",
        config=resolved,
        result=result,
        labels=labels,
        skipped=[(s.id, s.reason) for s in skipped],
        extra={"timings": timings, "feature_cache_hits": features.cache_hits},
    )
    log.info("report written to %s", paths)
    return RunOutcome(
        run_dir=out,
        metrics=result.metrics(),
        n_samples=len(ids),
        skipped=tuple(skipped),
        timings=timings,
    )


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
    loaded = load_casme2(corpus, sheet, dataset=config.dataset)
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


def run_demo(
    out: Path,
    subjects: int = 8,
    clips_per_subject: int = 12,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
) -> RunOutcome:
    """Synthesise a small corpus (reused when already there for the same settings), then LOSO."""
    out = Path(out)
    synth = SynthConfig(
        subjects=subjects, clips_per_subject=clips_per_subject, seed=seed, long_videos=False
    )
    corpus = out / "corpus"
    t0 = time.perf_counter()
    if not _same_corpus(corpus, synth):
        if corpus.exists():
            raise MekitError(f"{corpus} holds a different corpus; delete it or pick another --out")
        # written aside and renamed when complete, so an interrupted run leaves no half corpus
        partial = out / "corpus.partial"
        if partial.exists():
            shutil.rmtree(partial)
        generate_corpus(partial, synth, progress=progress)
        partial.rename(corpus)
    synth_s = time.perf_counter() - t0
    config = ExperimentConfig(dataset="synthetic", labels="megc2019", workers=workers)
    outcome = run_experiment(
        corpus, out / "run", config, cache_dir=out / "cache", progress=progress
    )
    outcome.timings["synth_s"] = synth_s
    return outcome


def _same_corpus(corpus: Path, synth: SynthConfig) -> bool:
    meta = corpus / "synth.json"
    if not meta.is_file():
        return False
    saved = json.loads(meta.read_text()).get("config", {})
    return saved == to_dict(synth)
