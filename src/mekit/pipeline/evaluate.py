"""Evaluation of a trained model file on other corpora: one pass, no training, the report of
a run."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mekit import __version__
from mekit.config import from_mapping, to_dict
from mekit.data.corrections import Corrections
from mekit.data.schema import Sample, Skipped
from mekit.errors import MekitError
from mekit.faces import FaceConfig
from mekit.models import ModelSpec, get_spec
from mekit.motion import FeatureConfig
from mekit.motion.extract import extract_features
from mekit.pipeline.config import ExperimentConfig
from mekit.pipeline.experiment import RunOutcome
from mekit.pipeline.labelled import CorpusSource, LabelledCorpus, corpus_sources, load_labelled
from mekit.train import LosoResult, TrainConfig, write_report
from mekit.train.inputs import feature_config_for, to_model_layout
from mekit.train.report import ORACLE_WARNING

log = logging.getLogger(__name__)


def evaluate_model(
    model_path: Path,
    corpus: Path | CorpusSource | Sequence[CorpusSource],
    out: Path,
    *,
    labels: str = "megc2019",
    dataset: str = "auto",
    workers: int = 2,
    cache_dir: Path | None = None,
    progress: bool = True,
    corrections: Corrections | None = None,
) -> RunOutcome:
    """Score a trained model file on every sample of other corpora, with no training: the
    report of a run (predictions.csv, metrics.json, summary.md, confusion.png) in `out`.

    The samples' input is computed as the model's sidecar records (flow method, face size...);
    their classes come from the label scheme `labels`, and samples whose class the model
    does not output are skipped with that reason. The model's own cross-validation figures
    (and its test-oracle flag) are noted in the report; the figures here are a held-out
    evaluation only if none of these subjects was in the model's training data.
    """
    from mekit.train.checkpoint import load_model
    from mekit.train.loop import predict_proba

    t0 = time.perf_counter()
    loaded = load_model(model_path)
    spec = get_spec(loaded.name)
    meta = loaded.meta
    face, feature_config = _model_input(meta, spec)
    sources = corpus_sources(corpus, None)
    config = ExperimentConfig(dataset=dataset, labels=labels, workers=workers, face=face)
    data = load_labelled(sources, config, corrections)
    usable, skipped = _outputs_of_the_model(data, loaded.labels)
    features = extract_features(usable, feature_config, face, cache_dir, workers, progress)
    skipped += list(features.skipped)
    if not features.ids:
        where = ", ".join(str(s.path) for s in sources)
        raise MekitError(f"no sample of {where} could be scored (see the skipped reasons above)")
    ids = list(features.ids)
    X = to_model_layout(features.features, spec, feature_config.kind)
    names = list(loaded.labels)
    predictions = _predictions(ids, usable, data, names, predict_proba(loaded.model, X))
    result = LosoResult(
        predictions=predictions,
        histories={},
        best_epochs={},
        labels=tuple(names),
        model_name=loaded.name,
        config=from_mapping(TrainConfig, (meta.get("config") or {}).get("train") or {}),
        oracle=False,  # nothing is selected here; the model's own figures are noted below
    )
    corpora = "+".join(dict.fromkeys(data.layouts))
    title = f"{loaded.name} ({model_path}) evaluated on {corpora} ({data.scheme.name})"
    extra = _model_notes(model_path, meta, sources)
    extra["timings"] = {"total_s": time.perf_counter() - t0}
    write_report(
        out,
        title=title,
        config=_resolved_config(model_path, sources, labels, face, feature_config),
        result=result,
        labels=names,
        skipped=[(s.id, s.reason) for s in skipped],
        extra=extra,
        protocol=f"the trained model file {Path(model_path).name} scored on every sample "
        "(no training, one pass)",
    )
    return RunOutcome(
        run_dir=Path(out),
        metrics=result.metrics(),
        n_samples=len(ids),
        skipped=tuple(skipped),
        timings={"total_s": time.perf_counter() - t0},
        per_seed=(result.metrics(),),
        title=title,
    )


def _model_input(meta: Mapping[str, Any], spec: ModelSpec) -> tuple[FaceConfig, FeatureConfig]:
    """The face and feature settings the model's sidecar records for its input."""
    given = meta.get("input") or {}
    face = from_mapping(FaceConfig, given.get("face") or {})
    feature_config = feature_config_for(
        spec, from_mapping(FeatureConfig, given.get("features") or {})
    )
    return face, feature_config


def _resolved_config(
    model_path: Path,
    sources: Sequence[CorpusSource],
    labels: str,
    face: FaceConfig,
    feature_config: FeatureConfig,
) -> dict[str, Any]:
    """config.json's content: the version, the model file, the corpora, the input settings."""
    return {
        "mekit_version": __version__,
        "model": str(Path(model_path).resolve()),
        "corpora": [str(s.path.resolve()) for s in sources],
        "labels": labels,
        "face": to_dict(face),
        "features": to_dict(feature_config),
    }


def _outputs_of_the_model(
    data: LabelledCorpus, outputs: Sequence[str]
) -> tuple[list[Sample], list[Skipped]]:
    """(the samples whose class the model outputs, every skipped sample with its reason)."""
    skipped = list(data.skipped)
    usable = []
    for s in data.samples:
        if data.label_of[s.id] in outputs:
            usable.append(s)
        else:
            skipped.append(
                Skipped(
                    s.id,
                    f"class '{data.label_of[s.id]}' is not one the model outputs "
                    f"({', '.join(outputs)}); pick another --labels scheme",
                )
            )
    return usable, skipped


def _predictions(
    ids: list[str],
    usable: Sequence[Sample],
    data: LabelledCorpus,
    names: list[str],
    probs: np.ndarray,
) -> pd.DataFrame:
    """predictions.csv's table: one row per scored sample, joined by id."""
    by_id = {s.id: s for s in usable}
    return pd.DataFrame(
        {
            "id": ids,
            "dataset": [by_id[i].dataset for i in ids],
            "subject": [by_id[i].subject for i in ids],
            "fold": "model",
            "true": [data.label_of[i] for i in ids],
            "pred": [names[j] for j in probs.argmax(axis=1)],
            **{f"prob_{name}": probs[:, j] for j, name in enumerate(names)},
        }
    )


def _model_notes(
    model_path: Path, meta: Mapping[str, Any], sources: Sequence[CorpusSource]
) -> dict[str, Any]:
    """The report's notes on the model: its file, a warning when it was trained on one of
    these corpora, and its own cross-validation estimate (with the test-oracle flag)."""
    from mekit.train.export import model_is_oracle

    own = meta.get("metrics") or {}
    extra: dict[str, Any] = {"model_file": str(Path(model_path).resolve())}
    trained = {str(c.get("path")) for c in (meta.get("config") or {}).get("corpora") or [] if c} & {
        str(s.path.resolve()) for s in sources
    }
    if trained:
        extra["warning"] = (
            f"the model was trained on {', '.join(sorted(trained))}: these are figures on its "
            "own training data, not an estimate for new people"
        )
        log.warning("%s", extra["warning"])
    if isinstance(own, dict) and own.get("uf1") is not None:
        extra["model_own_estimate"] = (
            f"{own.get('protocol', 'cross-validation')} UF1 {own['uf1']:.4f}, "
            f"UAR {own.get('uar', float('nan')):.4f}"
            + (f" ({ORACLE_WARNING})" if model_is_oracle(meta) else "")
        )
    return extra
