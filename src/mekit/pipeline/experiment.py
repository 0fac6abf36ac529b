"""An experiment run: corpora -> labels -> faces -> features -> model -> cross-validation ->
report, and optionally the model file trained on all samples.

Each stage lives in its own package; this module only wires them, joined by sample id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mekit import __version__
from mekit.config import to_dict
from mekit.data.corrections import Corrections
from mekit.data.schema import Skipped
from mekit.errors import MekitError
from mekit.models import ModelSpec, get_spec
from mekit.models.blend import resize_flow
from mekit.motion import FeatureConfig, FeatureKind
from mekit.motion.extract import FeatureSet, extract_features
from mekit.pipeline.config import ExperimentConfig
from mekit.pipeline.cross_validation import Design, fold_engine, run_cross_validation
from mekit.pipeline.labelled import (
    CorpusSource,
    LabelledCorpus,
    check_composite,
    corpus_sources,
    load_labelled,
)
from mekit.pipeline.pretrain import PRETRAINED_STEM, run_synthetic_pretrain
from mekit.train import write_report
from mekit.train.averaging import (
    averaged_model_name,
    calibration,
    train_average_and_save,
)
from mekit.train.checkpoint import model_paths
from mekit.train.classical import CLASSICAL_MODELS
from mekit.train.device import check_hardware
from mekit.train.export import train_and_save
from mekit.train.inputs import feature_config_for, to_model_layout
from mekit.train.metrics import ClassificationMetrics
from mekit.train.report import ORACLE_WARNING, describe_protocol
from mekit.train.runs import seed_spread, write_seed_summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    metrics: ClassificationMetrics
    n_samples: int
    skipped: tuple[Skipped, ...]
    timings: dict[str, float] = field(default_factory=dict)
    per_seed: tuple[ClassificationMetrics, ...] = ()
    model_path: Path | None = None  # the sidecar of the model trained on all samples, if any
    title: str = ""  # the reports' title, e.g. "ststnet on casme2 (megc2019, loso)"


def run_experiment(
    corpus: Path | CorpusSource | Sequence[CorpusSource],
    out: Path,
    config: ExperimentConfig = ExperimentConfig(),
    sheet: Path | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    corrections: Corrections | None = None,
    seeds: Sequence[int] | None = None,
    export: Path | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> RunOutcome:
    """Evaluate `config.model` under `config.protocol`; writes a full report to `out`.

    With several `seeds`, each seed's run goes to `out/seed-N/` and `out/` gets the mean and
    standard deviation over seeds. Finished folds are checkpointed under each run folder, so an
    interrupted run resumes where it stopped and gives the same report.

    `export`: also train the model once on all samples (`mekit.train.export`, the first seed)
    and write it there (stem of the .safetensors + .json pair, e.g. `out / "model"`), with
    the cross-validation metrics and `provenance` (e.g. `{"demo": True}`) in its sidecar; the
    model file `mekit analyze --model` takes. Classical models (lbptop_svm) are not exported.
    """
    sources = corpus_sources(corpus, sheet)
    timings: dict[str, float] = {}
    spec, feature_config = _model_input(config)
    if spec is not None:  # a device or precision this machine lacks: said before any loading
        check_hardware(config.train.device, config.train.precision)
    t0 = time.perf_counter()
    data = load_labelled(sources, config, corrections)
    timings["load_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    features = extract_features(
        data.samples, feature_config, config.face, cache_dir, config.workers, progress
    )
    timings["features_s"] = time.perf_counter() - t0
    skipped = list(data.skipped) + list(features.skipped)
    if data.composite is not None:  # samples whose features failed are missing too
        data.notes["composite_coverage"] = check_composite(
            data.composite, set(features.ids), skipped, config.allow_missing
        )
    design = _design(data, features, spec, feature_config, sources)
    pretrain = config.pretrain
    if pretrain.synthetic:
        t0 = time.perf_counter()
        config = _pretrained(config, out)
        timings["pretrain_s"] = time.perf_counter() - t0
    resolved = _resolved_config(config, sources, data, corrections, feature_config, spec)
    resolved["pretrain"] = to_dict(pretrain)  # as asked, with the init it made above
    seed_list = list(seeds) if seeds else [config.train.seed]
    t0 = time.perf_counter()
    extra = {"timings": timings, "feature_cache_hits": features.cache_hits}
    results = _run_seeds(design, data, config, seed_list, out, resolved, skipped, extra, progress)
    timings["evaluate_s"] = time.perf_counter() - t0
    if len(seed_list) > 1:
        write_seed_summary(
            out, _title(config, data), seed_list, [out / f"seed-{s}" for s in seed_list]
        )
    model_path = None
    if export is not None and spec is None:
        log.warning("%s is a classical model: no model file is exported", config.model)
    elif export is not None:
        t0 = time.perf_counter()
        model_path = _export(
            export, design, data, config, seed_list, results, resolved, feature_config, sources,
            provenance,
        )  # fmt: skip
        timings["export_s"] = time.perf_counter() - t0
    return RunOutcome(
        run_dir=out,
        metrics=results[0],
        n_samples=len(design.ids),
        skipped=tuple(skipped),
        timings=timings,
        per_seed=tuple(results),
        model_path=model_path,
        title=_title(config, data),
    )


def _pretrained(config: ExperimentConfig, out: Path) -> ExperimentConfig:
    """`config` starting from its model pretrained on synthetic AU flows (`out/pretrained`,
    made now unless an interrupted run left it there, on the run's `train.device` under its
    `train.precision`): `train.init_from` names it, and `pretrain.synthetic` is off, the
    pretraining being done."""
    weights, _ = model_paths(out / PRETRAINED_STEM)
    if not weights.is_file():
        norm = str(config.average.input_norm)
        train = config.train
        run_synthetic_pretrain(
            config.model,
            out / PRETRAINED_STEM,
            config.pretrain,
            norm,
            train.device,
            train.precision,
        )
    return replace(
        config,
        train=replace(config.train, init_from=str(weights)),
        pretrain=replace(config.pretrain, synthetic=False),
    )


def _model_input(config: ExperimentConfig) -> tuple[ModelSpec | None, FeatureConfig]:
    """(the network's spec, None for a classical model; the features it takes). Checks the
    averaging settings before any feature work."""
    spec = None if config.model in CLASSICAL_MODELS else get_spec(config.model)
    if config.average.active:
        if spec is None:
            raise MekitError(f"average.* settings apply to networks, not {config.model}")
        averaged_model_name(config.model)  # fails before any feature work
    if spec is None:
        return None, replace(config.features, kind=FeatureKind.LBPTOP)
    features = feature_config_for(spec, config.features)
    if config.input_from:
        if spec.input_kind != "flow" or config.input_from < spec.size:
            raise MekitError(
                f"input_from = {config.input_from} resamples one flow image down to the "
                f"model's side; {config.model} takes {spec.input_kind} at {spec.size} px"
            )
        features = replace(features, size=config.input_from)
    return spec, features


def _resolved_config(
    config: ExperimentConfig,
    sources: Sequence[CorpusSource],
    data: LabelledCorpus,
    corrections: Corrections | None,
    feature_config: FeatureConfig,
    spec: ModelSpec | None,
) -> dict[str, Any]:
    """config.json's content: the version, the corpora read, the settings as resolved."""
    return {
        "mekit_version": __version__,
        "corpora": [
            {
                "path": str(s.path.resolve()),
                "layout": lay,
                "sheet": str(s.sheet) if s.sheet else None,
            }
            for s, lay in zip(sources, data.layouts, strict=True)
        ],
        "corrections": corrections.source if corrections else None,
        **to_dict(config),
        "features": to_dict(feature_config),  # as the model's input spec resolved them
        "engine_used": "classical" if spec is None else fold_engine(config, explain=True),
    }


def _design(
    data: LabelledCorpus,
    features: FeatureSet,
    spec: ModelSpec | None,
    feature_config: FeatureConfig,
    sources: Sequence[CorpusSource],
) -> Design:
    """The samples whose features were computed, as the cross-validation's input. Raises
    `MekitError` when they hold fewer than 2 subjects or 2 classes."""
    by_id = {s.id: s for s in data.samples}
    ids = list(features.ids)
    datasets = [by_id[i].dataset for i in ids]
    several = len(set(datasets)) > 1
    subjects = [
        f"{by_id[i].dataset}/{by_id[i].subject}" if several else by_id[i].subject for i in ids
    ]
    present = sorted({data.label_of[i] for i in ids})
    labels = [lab for lab in data.scheme.labels if lab in present]
    if len(set(subjects)) < 2 or len(labels) < 2:
        where = ", ".join(str(s.path) for s in sources)
        raise MekitError(
            f"cross-validation needs at least 2 subjects and 2 classes; {where} gave "
            f"{len(ids)} usable samples from {len(set(subjects))} subject(s) in classes {labels}"
        )
    y = np.array([labels.index(data.label_of[i]) for i in ids])
    if spec is None:
        X = features.features
    else:
        X = to_model_layout(features.features, spec, feature_config.kind)
        if feature_config.size != spec.size:  # input_from: the blend's resampling
            X = resize_flow(torch.from_numpy(X), spec.size).numpy()
    return Design(X, y, ids, datasets, subjects, labels)


def _run_seeds(
    design: Design,
    data: LabelledCorpus,
    config: ExperimentConfig,
    seed_list: list[int],
    out: Path,
    resolved: dict[str, Any],
    skipped: list[Skipped],
    extra: dict[str, Any],
    progress: bool,
) -> list[ClassificationMetrics]:
    """Cross-validate once per seed, each seed's report in its run folder (`out` for one seed,
    `out/seed-N` for several); the first seed's calibration goes to `data.notes` for the model
    file."""
    results = []
    for seed in seed_list:
        run_config = replace(config, train=replace(config.train, seed=seed))
        run_dir = out if len(seed_list) == 1 else out / f"seed-{seed}"
        result = run_cross_validation(design, run_config, run_dir, progress)
        result.predictions.insert(1, "dataset", design.datasets)
        if seed == seed_list[0] and config.average.calibrate:  # for the model file
            data.notes["calibration"] = calibration(result)
        write_report(
            run_dir,
            title=_title(run_config, data),
            config={**resolved, "train": to_dict(run_config.train), "seed": seed},
            result=result,
            labels=design.labels,
            skipped=[(s.id, s.reason) for s in skipped],
            extra={**extra, **data.notes},
            protocol=describe_protocol(run_config.protocol, result, run_config.k),
        )
        results.append(result.metrics())
    return results


def _export(
    export: Path,
    design: Design,
    data: LabelledCorpus,
    config: ExperimentConfig,
    seed_list: list[int],
    results: list[ClassificationMetrics],
    resolved: dict[str, Any],
    feature_config: FeatureConfig,
    sources: Sequence[CorpusSource],
    provenance: Mapping[str, Any] | None,
) -> Path:
    """Train the network once on all samples (the first seed) and write its model file, with
    the cross-validation figures and where it was trained in its sidecar."""
    temperature = data.notes.get("calibration", {}).get("temperature", 1.0)
    save = (
        partial(
            train_average_and_save,
            average=config.average,
            temperature=temperature,
            ensemble=fold_engine(config) == "kernel",
        )
        if config.average.active
        else train_and_save
    )
    _, model_path = save(
        export,
        design.X,
        design.y,
        design.labels,
        config.model,
        replace(config.train, seed=seed_list[0]),
        input={
            "features": to_dict(replace(feature_config, size=design.X.shape[-1])),
            "face": to_dict(config.face),
        },
        config=resolved,
        metrics=model_metrics(config, seed_list, results, data.notes),
        training={
            "trained_on": f"{'+'.join(dict.fromkeys(data.layouts))} corpus "
            f"({', '.join(str(s.path) for s in sources)})",
            "corpus": list(dict.fromkeys(data.layouts)),
            "subjects": len(set(design.subjects)),
            "label_scheme": data.scheme.name,
            "demo": False,
            **dict(provenance or {}),
        },
    )
    return model_path


def model_metrics(
    config: ExperimentConfig,
    seeds: Sequence[int],
    results: Sequence[ClassificationMetrics],
    notes: Mapping[str, Any],
) -> dict[str, Any]:
    """The cross-validation figures a model file's sidecar carries: accuracy, UF1 and UAR as
    the mean over `seeds` with their standard deviation (0 for one seed), each seed's figures,
    the first seed's per-class scores and confusion, and how they were obtained: protocol,
    selection, the test-oracle flag and warning, and the composite coverage ("333 of 442")."""
    first = results[0].to_dict()
    out: dict[str, Any] = {"protocol": config.protocol, **first}
    for key in ("accuracy", "uf1", "uar"):
        out[key], out[f"{key}_std"] = seed_spread([getattr(r, key) for r in results])
    out["seeds"] = list(seeds)
    out["per_seed"] = {
        str(seed): {k: getattr(r, k) for k in ("accuracy", "uf1", "uar")}
        for seed, r in zip(seeds, results, strict=True)
    }
    out["selection"] = config.train.selection
    out["oracle"] = config.train.selection == "test-oracle"
    if out["oracle"]:
        out["warning"] = ORACLE_WARNING
    if "composite_coverage" in notes:
        out["coverage"] = notes["composite_coverage"]
    if "calibration" in notes:
        out["calibration"] = dict(notes["calibration"])
    return out


def _title(config: ExperimentConfig, data: LabelledCorpus) -> str:
    corpora = "+".join(dict.fromkeys(data.layouts))
    protocol = config.protocol
    if "composite_coverage" in data.notes:  # e.g. "composite, 333 of 442 samples"
        protocol = f"{protocol}, {data.notes['composite_coverage']} samples"
    model = config.model
    if config.average.active:
        model = (
            f"{model} x{config.average.members} averaged (input_norm {config.average.input_norm})"
        )
    return f"{model} on {corpora} ({data.scheme.name}, {protocol})"
