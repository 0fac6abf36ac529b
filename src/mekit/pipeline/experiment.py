"""The pipeline: corpora -> labels -> faces -> features -> model -> cross-validation -> report.

Each stage lives in its own package; this module only wires them, joined by sample id.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mekit import __version__
from mekit.config import from_mapping, to_dict
from mekit.data.composite import (
    CompositeSelection,
    composite_shortfall,
    composite_size,
    select_composite,
)
from mekit.data.corpora import NAMES as LAYOUT_NAMES
from mekit.data.corpora import load_corpus
from mekit.data.corrections import Corrections
from mekit.data.ids import canonical_id
from mekit.data.images import ImageSet
from mekit.data.labels import LabelScheme, load_scheme
from mekit.data.schema import Sample, Skipped
from mekit.errors import MekitError
from mekit.faces import FaceConfig
from mekit.models import get_spec
from mekit.motion import FeatureConfig, FeatureKind
from mekit.motion.extract import extract_features
from mekit.spot.apex import APEX_MODES, spot_apexes
from mekit.synth import SynthConfig, generate_corpus
from mekit.train import LosoResult, TrainConfig, write_report
from mekit.train.averaging import (
    AverageConfig,
    average_results,
    averaged_model_name,
    calibration,
    member_seed,
    normalise_inputs,
    train_average_and_save,
)
from mekit.train.classical import CLASSICAL_MODELS, SVMTrainer
from mekit.train.estimators import NetworkTrainer, Trainer
from mekit.train.executors import make_executor
from mekit.train.export import train_and_save
from mekit.train.inputs import feature_config_for, to_model_layout
from mekit.train.loso import cross_validate
from mekit.train.metrics import ClassificationMetrics
from mekit.train.report import ORACLE_WARNING, describe_protocol
from mekit.train.runs import seed_spread, write_seed_summary
from mekit.train.splits import PROTOCOLS, protocol_folds
from mekit.train.transfer import PretrainOutcome, pretrain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a run needs besides the data paths; written to config.json.

    dataset: the corpus layout of a single corpus ("auto" detects it; see `mekit data info`).
    protocol: loso | composite (LOSO over the union of corpora, restricted to the MEGC 2019
      composite list, scored overall and per corpus) | cross-dataset (leave one corpus out) |
      kfold (k folds of whole subjects).
    engine: how folds are trained: "plain" (one model per fold), "ensemble" (all folds at once:
      STSTNet on the CPU through a fused kernel, any other model or device by vmapped
      fold-batched training, `mekit.train.batched`) or "auto" (all folds at once when the
      settings allow it, else plain).
    executor: "local" (processes on this machine) or "ray" (`ray_address`, or a local Ray).
    apex: "given" (as the corpus gives it, the midpoint where it has none), "spot-missing"
      (spot the apex of clips without an annotated one, e.g. SMIC) or "spot-all".
    allow_missing: with the composite protocol, score the listed samples that are there instead
      of stopping at the first missing one; every report then says "N of 442" in its title.
    average: train several networks per run (seeds) on per-sample normalised input and average
      their probabilities (`mekit.train.averaging`); the exported model file holds them all.
    abstain_below: recorded in the model file; `mekit analyze` and `serve` call an event
      "uncertain" when no class reaches this probability (0: never).
    """

    dataset: str = "auto"
    labels: str = "megc2019"  # built-in scheme name or a CSV path (dataset,emotion,label)
    model: str = "ststnet"  # a registered network (`mekit models`) or "lbptop_svm"
    protocol: str = "loso"
    k: int = 5  # folds of the kfold protocol
    workers: int = 2  # processes for faces/flow and for folds
    engine: str = "plain"
    executor: str = "local"
    ray_address: str = ""
    apex: str = "given"
    allow_missing: bool = False
    folds_at_once: int = 0  # fold-batched training: folds per program (0: all; bounds memory)
    face: FaceConfig = FaceConfig()
    features: FeatureConfig = FeatureConfig()  # kind, size and frames come from the model
    train: TrainConfig = TrainConfig()
    average: AverageConfig = AverageConfig()
    abstain_below: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.abstain_below < 1.0:
            raise MekitError(f"abstain_below must be in [0, 1), got {self.abstain_below}")
        if self.protocol not in PROTOCOLS:
            raise MekitError(f"protocol '{self.protocol}' is not one of {', '.join(PROTOCOLS)}")
        if self.engine not in ("auto", "plain", "ensemble"):
            raise MekitError(f"engine '{self.engine}' is not one of auto, plain, ensemble")
        if self.executor not in ("local", "ray"):
            raise MekitError(f"executor '{self.executor}' is not one of local, ray")
        if self.apex not in APEX_MODES:
            raise MekitError(f"apex '{self.apex}' is not one of {', '.join(APEX_MODES)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        return from_mapping(cls, values)


@dataclass(frozen=True)
class CorpusSource:
    """One corpus to read: its folder, layout ("auto" to detect), optional sheet, and optional
    dataset name for sample ids (default: the layout's)."""

    path: Path
    layout: str = "auto"
    sheet: Path | None = None
    name: str | None = None

    @classmethod
    def parse(cls, text: str, sheet: str | Path | None = None) -> CorpusSource:
        """`PATH`, `LAYOUT=PATH` (e.g. `casme2=/data/CASME2`) or `NAME=PATH` for a corpus of a
        detected layout named NAME in sample ids (e.g. two synthetic corpora)."""
        sheet_path = Path(sheet) if sheet else None
        prefix, sep, path = text.partition("=")
        if not sep or Path(text).exists():
            return cls(Path(text), "auto", sheet_path)
        if prefix in LAYOUT_NAMES:
            return cls(Path(path), prefix, sheet_path)
        return cls(Path(path), "auto", sheet_path, name=prefix)


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


@dataclass(frozen=True)
class LabelledCorpus:
    """Samples with their class under the run's label scheme, joined by id."""

    samples: tuple[Sample, ...]
    label_of: dict[str, str]
    scheme: LabelScheme
    skipped: tuple[Skipped, ...]
    layouts: tuple[str, ...]
    notes: dict[str, Any]
    composite: CompositeSelection | None = None  # the composite list's selection, if any


def load_labelled(
    sources: Sequence[CorpusSource],
    config: ExperimentConfig,
    corrections: Corrections | None = None,
) -> LabelledCorpus:
    """Read every corpus, apply the label scheme (and the composite list for that protocol)."""
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    layouts = []
    notes: dict[str, Any] = {}
    sources_of: dict[str, int] = {}
    for number, source in enumerate(sources):
        layout = source.layout if source.layout != "auto" else config.dataset
        name, loaded = load_corpus(
            source.path,
            layout,
            sheet=source.sheet,
            corrections=corrections,
            report_unmatched=False,
            dataset=source.name,
        )
        layouts.append(name)
        samples.extend(loaded.samples)
        sources_of.update((s.id, number) for s in loaded.samples if s.id not in sources_of)
        skipped.extend(loaded.skipped)
    if corrections is not None:
        notes["corrections_applied"] = len(corrections.applied)
        skipped.extend(
            Skipped(c.id, f"correction ({corrections.source}) matched no sample: check the id")
            for c in corrections.unmatched()
        )
    if config.apex != "given":
        samples, spotted, failed = spot_apexes(samples, config.apex, config.face, progress=False)
        skipped.extend(failed)  # listed in the report; those samples keep their apex
        notes["apex_spotted"] = len(spotted)
    selection = None
    if config.protocol == "composite":
        selection = select_composite(samples)
        samples = list(selection.samples)
        skipped.extend(selection.skipped)
    scheme = load_scheme(config.labels, raw_labels=tuple({s.emotion for s in samples}))
    labelled, label_of = [], {}
    for s in samples:
        label = scheme.label_of(s)
        if label is None:
            skipped.append(Skipped(s.id, f"emotion '{s.emotion}' is not in scheme {scheme.name}"))
            continue
        labelled.append(s)
        label_of[s.id] = label
    seen: dict[str, Sample] = {}
    for s in labelled:
        key = canonical_id(s.id)
        if key in seen:  # each loader skips its own repeated rows, so: two sources
            where = sorted({sources[sources_of[x.id]].path.name for x in (seen[key], s)})
            raise MekitError(
                f"{seen[key].id} and {s.id} are the same sample, given twice "
                f"(--corpus {' and '.join(where)}); leave one copy out, or name the corpora "
                "apart if they are different data: --corpus a=/path/one --corpus b=/path/two"
            )
        seen[key] = s
    if selection is not None and not config.allow_missing:  # fail before any feature work
        check_composite(selection, set(label_of), skipped, allow_missing=False)
    return LabelledCorpus(
        tuple(labelled), label_of, scheme, tuple(skipped), tuple(layouts), notes, selection
    )


def check_composite(
    selection: CompositeSelection,
    scored: set[str],
    skipped: Sequence[Skipped],
    allow_missing: bool,
) -> str:
    """How much of the composite list the `scored` ids cover, as "N of 442". A shortfall is
    an error listing every missing sample and why, unless `allow_missing` (then a warning)."""
    short = composite_shortfall(selection, scored, skipped)
    total = composite_size()
    coverage = f"{total - len(short)} of {total}"
    if not short:
        return coverage
    per_corpus: dict[str, int] = {}
    for name, _ in short:
        per_corpus[name.split("/")[0]] = per_corpus.get(name.split("/")[0], 0) + 1
    counts = ", ".join(f"{d} {n}" for d, n in sorted(per_corpus.items()))
    head = (
        f"the composite protocol names {total} samples and {len(short)} are missing "
        f"({counts}); only {coverage} could be scored"
    )
    if allow_missing:
        log.warning("%s; scoring those (--allow-missing), every report says %s", head, coverage)
        return coverage
    lines = "\n".join(f"  {name}: {why}" for name, why in short)
    raise MekitError(
        f"{head}:\n{lines}\n{head}. Give every corpus of the composite (--corpus smic=... "
        "--corpus casme2=... --corpus samm=...), or pass --allow-missing to score the "
        f'{total - len(short)} found (reports then say "{coverage}")'
    )


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
    sources = _sources(corpus, sheet)
    timings: dict[str, float] = {}
    spec = None if config.model in CLASSICAL_MODELS else get_spec(config.model)
    if config.average.active:
        if spec is None:
            raise MekitError(f"average.* settings apply to networks, not {config.model}")
        averaged_model_name(config.model)  # fails before any feature work
    if spec is None:
        feature_config = replace(config.features, kind=FeatureKind.LBPTOP)
    else:
        feature_config = feature_config_for(spec, config.features)
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
    X = (
        features.features
        if spec is None
        else to_model_layout(features.features, spec, feature_config.kind)
    )

    resolved = {
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
        "engine_used": "classical" if spec is None else _engine(config),
    }
    seed_list = list(seeds) if seeds else [config.train.seed]
    results = []
    t0 = time.perf_counter()
    for seed in seed_list:
        run_config = replace(config, train=replace(config.train, seed=seed))
        run_dir = out if len(seed_list) == 1 else out / f"seed-{seed}"
        result = _cross_validate_averaged(
            X, y, subjects, datasets, ids, labels, run_config, run_dir, progress
        )
        result.predictions.insert(1, "dataset", datasets)
        if seed == seed_list[0] and config.average.calibrate:  # for the model file
            data.notes["calibration"] = calibration(result)
        extra = {"timings": timings, "feature_cache_hits": features.cache_hits, **data.notes}
        write_report(
            run_dir,
            title=_title(run_config, data),
            config={**resolved, "train": to_dict(run_config.train), "seed": seed},
            result=result,
            labels=labels,
            skipped=[(s.id, s.reason) for s in skipped],
            extra=extra,
            protocol=describe_protocol(run_config.protocol, result, run_config.k),
        )
        results.append(result.metrics())
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
        temperature = data.notes.get("calibration", {}).get("temperature", 1.0)
        save = (
            partial(
                train_average_and_save,
                average=config.average,
                temperature=temperature,
                ensemble=_engine(config) == "kernel",
            )
            if config.average.active
            else train_and_save
        )
        _, model_path = save(
            export,
            X,
            y,
            labels,
            config.model,
            replace(config.train, seed=seed_list[0]),
            input={"features": to_dict(feature_config), "face": to_dict(config.face)},
            config=resolved,
            metrics=model_metrics(config, seed_list, results, data.notes),
            training={
                "trained_on": f"{'+'.join(dict.fromkeys(data.layouts))} corpus "
                f"({', '.join(str(s.path) for s in sources)})",
                "corpus": list(dict.fromkeys(data.layouts)),
                "subjects": len(set(subjects)),
                "label_scheme": data.scheme.name,
                "demo": False,
                **dict(provenance or {}),
            },
        )
        timings["export_s"] = time.perf_counter() - t0
    return RunOutcome(
        run_dir=out,
        metrics=results[0],
        n_samples=len(ids),
        skipped=tuple(skipped),
        timings=timings,
        per_seed=tuple(results),
        model_path=model_path,
        title=_title(config, data),
    )


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


def _sources(
    corpus: Path | CorpusSource | Sequence[CorpusSource], sheet: Path | None
) -> list[CorpusSource]:
    if isinstance(corpus, CorpusSource):
        return [corpus]
    if isinstance(corpus, (str, Path)):
        return [CorpusSource(Path(corpus), "auto", Path(sheet) if sheet else None)]
    return list(corpus)


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


def _engine(config: ExperimentConfig) -> str:
    """How the folds of a network are trained: "plain" (one model per fold), "kernel" (the fused
    STSTNet fold ensemble, CPU) or "batched" (any model, all folds vmapped at once).

    engine "ensemble" asks for all folds at once: the fused kernel where it implements every
    setting, else fold-batched training, else an error naming what neither implements; "auto"
    takes the same order and falls back to the plain loop."""
    if config.engine == "plain":
        return "plain"
    from mekit.train.batched import batched_unsupported
    from mekit.train.ensemble import ENSEMBLE_MODELS, unsupported_settings

    kernel = unsupported_settings(config.train)
    if config.model not in ENSEMBLE_MODELS:
        kernel.insert(0, f"model {config.model} (it trains {', '.join(ENSEMBLE_MODELS)})")
    if not kernel:
        return "kernel"
    batched = batched_unsupported(config.train)
    if not batched:
        return "batched"
    if config.engine == "ensemble":
        raise MekitError(
            f"the ensemble engine cannot train with {', '.join(batched)}; use --engine plain "
            "(one model per fold), which implements every setting"
        )
    log.info("engine auto: the plain loop (all folds at once lacks %s)", ", ".join(batched))
    return "plain"


def _cross_validate_averaged(
    X: np.ndarray,
    y: np.ndarray,
    subjects: list[str],
    datasets: list[str],
    ids: list[str],
    labels: list[str],
    config: ExperimentConfig,
    run_dir: Path,
    progress: bool,
) -> LosoResult:
    """`_cross_validate`, or with `config.average` active, each member's cross-validation on
    normalised input (member m with its member seed, folds under run_dir/member-m) and the
    members' probabilities averaged. Every member gets the folds of the run's own seed."""
    if not config.average.active:
        return _cross_validate(X, y, subjects, datasets, ids, labels, config, run_dir, progress)
    Xn = normalise_inputs(X, config.average.input_norm)
    results = []
    for m in range(config.average.members):
        seed = member_seed(config.train.seed, m)
        member = replace(config, train=replace(config.train, seed=seed))
        results.append(
            _cross_validate(
                Xn,
                y,
                subjects,
                datasets,
                ids,
                labels,
                member,
                run_dir / f"member-{m}",
                progress,
                fold_seed=config.train.seed,
            )
        )
    return replace(average_results(results), config=config.train)


def _cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    subjects: list[str],
    datasets: list[str],
    ids: list[str],
    labels: list[str],
    config: ExperimentConfig,
    run_dir: Path,
    progress: bool,
    fold_seed: int | None = None,
) -> LosoResult:
    seed = config.train.seed if fold_seed is None else fold_seed  # seeds kfold's draw
    folds = protocol_folds(config.protocol, subjects, datasets, y, config.k, seed)
    return cross_validate(
        X,
        y,
        subjects,
        ids,
        labels,
        _trainer(config, len(labels)),
        folds,
        executor=make_executor(config.executor, config.workers, config.ray_address or None),
        checkpoint_dir=run_dir / "folds",
        progress=progress,
        desc=f"{config.protocol} {config.model}",
    )


def _trainer(config: ExperimentConfig, num_classes: int) -> Trainer:
    """How this run's model is trained under cross-validation (its engine's trainer)."""
    if config.model in CLASSICAL_MODELS:
        return SVMTrainer(config.train)
    engine = _engine(config)
    if engine == "batched":
        from mekit.train.batched import BatchedTrainer

        return BatchedTrainer(
            config.model, num_classes, config.train, folds_at_once=config.folds_at_once
        )
    if engine == "kernel":
        from mekit.train.ensemble import KernelTrainer

        return KernelTrainer(config.model, num_classes, config.train)
    return NetworkTrainer(config.model, num_classes, config.train)


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
    from mekit.train.export import model_is_oracle
    from mekit.train.loop import predict_proba

    t0 = time.perf_counter()
    loaded = load_model(model_path)
    spec = get_spec(loaded.name)
    meta = loaded.meta
    given = meta.get("input") or {}
    face = from_mapping(FaceConfig, given.get("face") or {})
    feature_config = feature_config_for(
        spec, from_mapping(FeatureConfig, given.get("features") or {})
    )
    sources = _sources(corpus, None)
    config = ExperimentConfig(dataset=dataset, labels=labels, workers=workers, face=face)
    data = load_labelled(sources, config, corrections)
    skipped = list(data.skipped)
    usable = []
    for s in data.samples:
        if data.label_of[s.id] in loaded.labels:
            usable.append(s)
        else:
            skipped.append(
                Skipped(
                    s.id,
                    f"class '{data.label_of[s.id]}' is not one the model outputs "
                    f"({', '.join(loaded.labels)}); pick another --labels scheme",
                )
            )
    features = extract_features(usable, feature_config, face, cache_dir, workers, progress)
    skipped += list(features.skipped)
    if not features.ids:
        where = ", ".join(str(s.path) for s in sources)
        raise MekitError(f"no sample of {where} could be scored (see the skipped reasons above)")
    by_id = {s.id: s for s in usable}
    ids = list(features.ids)
    X = to_model_layout(features.features, spec, feature_config.kind)
    probs = predict_proba(loaded.model, X)
    names = list(loaded.labels)
    predictions = pd.DataFrame(
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
    train_config = from_mapping(TrainConfig, (meta.get("config") or {}).get("train") or {})
    result = LosoResult(
        predictions=predictions,
        histories={},
        best_epochs={},
        labels=tuple(names),
        model_name=loaded.name,
        config=train_config,
        oracle=False,  # nothing is selected here; the model's own figures are noted below
    )
    corpora = "+".join(dict.fromkeys(data.layouts))
    title = f"{loaded.name} ({model_path}) evaluated on {corpora} ({data.scheme.name})"
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
    extra["timings"] = {"total_s": time.perf_counter() - t0}
    write_report(
        out,
        title=title,
        config={
            "mekit_version": __version__,
            "model": str(Path(model_path).resolve()),
            "corpora": [str(s.path.resolve()) for s in sources],
            "labels": labels,
            "face": to_dict(face),
            "features": to_dict(feature_config),
        },
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


DEMO_MODEL_NAME = "demo-ststnet-synthetic"
DEMO_TRAINED_ON = "mekit synthetic corpus (demo)"


def run_demo(
    out: Path,
    subjects: int = 8,
    clips_per_subject: int = 12,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
) -> RunOutcome:
    """Synthesise a small corpus (reused when already there for the same settings), then LOSO,
    then the demo model: STSTNet trained on all the samples, written to
    `out/model/demo-ststnet-synthetic` (.safetensors + .json, marked `"demo": true` in its
    sidecar's training record: it has seen synthetic faces only)."""
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
        corpus,
        out / "run",
        config,
        cache_dir=out / "cache",
        progress=progress,
        export=out / "model" / DEMO_MODEL_NAME,
        provenance={"demo": True, "trained_on": DEMO_TRAINED_ON},
    )
    outcome.timings["synth_s"] = synth_s
    return outcome


def _same_corpus(corpus: Path, synth: SynthConfig) -> bool:
    meta = corpus / "synth.json"
    if not meta.is_file():
        return False
    saved = json.loads(meta.read_text()).get("config", {})
    return saved == to_dict(synth)


def load_image_source(path: Path, size: int) -> ImageSet:
    """A macro-expression image set for pretraining: FER2013 (its CSV or folder), CK+ (the last
    three frames of each labelled sequence, as seed 003 uses) or any `label/*.png` folder."""
    from mekit.data import ckplus, fer2013, images

    path = Path(path)
    if not path.exists():
        raise MekitError(f"{path} does not exist; give fer2013.csv, a CK+ folder or label/*.png")
    if path.suffix.lower() == ".csv" or fer2013.looks_like(path):
        return fer2013.load_fer2013(path)
    if path.is_dir() and ckplus.looks_like(path):
        return ckplus.ckplus_peak_images(path, size=size, crop=_face_crop())
    return images.load_image_folder(path, size=size)


def _face_crop():  # type: ignore[no-untyped-def]
    """A grey frame -> its face (the landmarks' box with a margin), the whole frame if none."""
    from mekit.faces.landmarks import FaceLandmarker

    landmarker = FaceLandmarker()

    def crop(image: np.ndarray) -> np.ndarray:
        points = landmarker(image)
        if points is None:
            return image
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        margin = 0.15 * max(x1 - x0, y1 - y0)
        h, w = image.shape[:2]
        top, left = int(max(0, y0 - margin)), int(max(0, x0 - margin))
        return image[top : int(min(h, y1 + margin)), left : int(min(w, x1 + margin))]

    return crop


def run_pretrain(
    source: Path, out: Path, model: str, train: TrainConfig = TrainConfig()
) -> PretrainOutcome:
    """Pretrain `model` on a macro-expression image source and save it as a model file."""
    spec = get_spec(model)
    images = load_image_source(source, size=spec.input_shape[-1])
    for s in images.skipped:
        log.warning("skipped %s: %s", s.id, s.reason)
    return pretrain(images, model, train, out)
