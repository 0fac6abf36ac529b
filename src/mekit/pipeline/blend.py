"""A blend run: train several recipes on the same data and average their probabilities.

Networks of different kinds err differently, so averaging them can beat each (on
composite-dev, five STSTNets reach .72 UF1 and their 3:1 average with a MobileViTv3 .72-.75,
depending on the MobileViT run; see the README). `run_blend` runs each part (a recipe,
`BlendConfig.parts`) as an ordinary experiment in its own folder (`RUN/part-N-NAME/`: its
report, pretraining, fold checkpoints and model file; its input computed at the blend's side
and area-resampled to its own, `input_from`, exactly as the blend's model file resamples it),
then joins the parts' out-of-fold probabilities by sample id, weights them
(`BlendConfig.weights`) and writes the blend's report in `RUN/`. Every part gets the same
folds (the same protocol and seed) and fixed schedules, so the blend's figures are as honest
as its parts'. The model file (`mekit.models.blend.flow_blend`) holds every part's model
trained on all samples.

Parts take their model, training, averaging and pretraining settings from their own recipes
and the data, protocol and hardware settings from the run (`PASSED_TO_PARTS`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mekit import __version__
from mekit.config import merge, to_dict
from mekit.data.corrections import Corrections
from mekit.errors import MekitError
from mekit.models import create_model, get_spec
from mekit.models.blend import BLEND_SIZE, check_part
from mekit.pipeline.config import ExperimentConfig
from mekit.pipeline.experiment import RunOutcome, model_metrics, run_experiment
from mekit.pipeline.labelled import CorpusSource
from mekit.train import write_report
from mekit.train.averaging import average_results, calibration
from mekit.train.checkpoint import load_model, save_model
from mekit.train.inputs import feature_config_for
from mekit.train.loop import TrainConfig
from mekit.train.loso import LosoResult
from mekit.train.recipes import load_recipe
from mekit.train.report import describe_protocol
from mekit.train.runs import read_json

log = logging.getLogger(__name__)

BLEND_MODEL = "flow_blend"
# The run's settings every part takes (the data, the protocol, the hardware); a part's recipe
# gives the rest. `train.*` keys are the train section's.
PASSED_TO_PARTS = (
    "dataset", "labels", "protocol", "k", "workers", "executor", "ray_address", "apex",
    "allow_missing", "folds_at_once", "face", "features",
)  # fmt: skip
PASSED_TRAIN = ("device", "precision", "seed")
_OWN = ("blend", "abstain_below", "input_from")


def part_configs(config: ExperimentConfig) -> list[tuple[str, ExperimentConfig]]:
    """(recipe name, its settings for this run) of each part of `config.blend`. `MekitError`
    when the run sets what belongs to its parts, or a part cannot be blended."""
    values = to_dict(config)
    default = to_dict(ExperimentConfig())
    passed = set(PASSED_TO_PARTS) | set(_OWN)
    stray = sorted(
        k for k in values if k not in passed and k != "train" and values[k] != default[k]
    )
    stray += sorted(
        f"train.{k}"
        for k, v in values["train"].items()
        if k not in PASSED_TRAIN and v != default["train"][k]
    )
    if stray:
        raise MekitError(
            f"a blend takes its model and training settings from its parts' recipes; "
            f"{', '.join(stray)} would not reach them: set them in the part recipes "
            f"({', '.join(config.blend.parts)})"
        )
    shared = {k: values[k] for k in PASSED_TO_PARTS}
    shared["train"] = {k: values["train"][k] for k in PASSED_TRAIN}
    parts = []
    for name in config.blend.parts:
        settings = load_recipe(name).settings
        for key in ("blend", "face", "features"):
            if key in settings:
                raise MekitError(
                    f"recipe {name!r} sets [{key}]; a blend's parts cannot ({key} is the "
                    "run's: set it on the blend)"
                )
        part = ExperimentConfig.from_dict(merge(settings, {**shared, "input_from": BLEND_SIZE}))
        if part.train.selection == "test-oracle":
            raise MekitError(
                f"recipe {name!r} selects epochs on the test subject; a blend takes only "
                "honest parts (train.selection fixed or val-split)"
            )
        check_part(part.model)
        parts.append((name, part))
    return parts


def part_folder(out: Path, index: int, name: str) -> Path:
    """Where part `index` (0-based) of a blend run writes: RUN/part-1-composite-best."""
    return out / f"part-{index + 1}-{Path(name).stem}"


def run_blend(
    corpus: CorpusSource | Sequence[CorpusSource] | Path,
    out: Path,
    config: ExperimentConfig,
    sheet: Path | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    corrections: Corrections | None = None,
    seeds: Sequence[int] | None = None,
    export: Path | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> RunOutcome:
    """Run every part of `config.blend` (`run_experiment`, each in `part_folder`), then the
    blend's report in `out` and, with `export`, its model file. One seed (the run's)."""
    if seeds and len(seeds) > 1:
        raise MekitError("a blend runs one seed (--set train.seed=N), not --seeds")
    parts = part_configs(config)
    weights = _weights(config)
    t0 = time.perf_counter()
    outcomes = []
    for k, (name, part) in enumerate(parts):
        folder = part_folder(out, k, name)
        log.info("blend part %d of %d: recipe %s -> %s", k + 1, len(parts), name, folder)
        outcomes.append(
            run_experiment(
                corpus, folder, part, sheet, cache_dir, progress, corrections,
                export=folder / "model" if export is not None else None, provenance=provenance,
            )
        )  # fmt: skip
    timings = {"parts_s": time.perf_counter() - t0}
    result = blend_predictions([o.run_dir / "predictions.csv" for o in outcomes], weights)
    result = replace(result, selection=f"each part's own ({_schedules(parts)})")
    notes: dict[str, Any] = {
        "parts": [
            {"recipe": name, "weight": round(w, 4), "run": str(o.run_dir),
             "uf1": round(o.metrics.uf1, 4), "uar": round(o.metrics.uar, 4), "model": part.model}
            for (name, part), w, o in zip(parts, weights, outcomes, strict=True)
        ],
        "timings": timings,
    }  # fmt: skip
    coverage = read_json(outcomes[0].run_dir / "metrics.json")["extra"].get("composite_coverage")
    if coverage:
        notes["composite_coverage"] = coverage
    if config.blend.calibrate:
        notes["calibration"] = calibration(result)
    title = _title(parts, weights, outcomes[0].title)
    resolved = {
        "mekit_version": __version__,
        **to_dict(config),
        "parts": [read_json(o.run_dir / "config.json") for o in outcomes],
    }
    write_report(
        out,
        title=title,
        config=resolved,
        result=result,
        labels=result.labels,
        skipped=[(s.id, s.reason) for s in outcomes[0].skipped],
        extra=notes,
        protocol=describe_protocol(config.protocol, result, config.k),
    )
    metrics = result.metrics()
    model_path = None
    if export is not None:
        model_path = _export(export, outcomes, weights, config, metrics, notes, resolved)
    return replace(
        outcomes[0], run_dir=out, metrics=metrics, timings=timings, per_seed=(metrics,),
        model_path=model_path, title=title,
    )  # fmt: skip


def _schedules(parts: Sequence[tuple[str, ExperimentConfig]]) -> str:
    """e.g. "composite-best the last epoch of 60, mine early stopping within 50 epochs"."""
    return ", ".join(
        f"{Path(name).stem} the last epoch of {part.train.epochs}"
        if part.train.selection == "fixed"
        else f"{Path(name).stem} early stopping on training subjects within "
        f"{part.train.epochs} epochs"
        for name, part in parts
    )


def _weights(config: ExperimentConfig) -> list[float]:
    raw = list(config.blend.weights) or [1.0] * len(config.blend.parts)
    total = sum(raw)
    return [w / total for w in raw]


def blend_predictions(paths: Sequence[Path], weights: Sequence[float]) -> LosoResult:
    """The parts' out-of-fold predictions (their predictions.csv) as one `LosoResult`: the
    `weights`-weighted mean probability per sample, joined by id (`average_results`).
    `MekitError` when the parts predicted other samples, classes or truths."""
    parts = []
    for path in paths:
        frame = pd.read_csv(path, dtype={"id": str})
        labels = tuple(c.removeprefix("prob_") for c in frame.columns if c.startswith("prob_"))
        parts.append(LosoResult(frame, {}, {}, labels, BLEND_MODEL, TrainConfig(), False))
    return average_results(parts, weights, sources=[str(p) for p in paths])


def _title(
    parts: Sequence[tuple[str, ExperimentConfig]], weights: Sequence[float], part_title: str
) -> str:
    """e.g. "blend of composite-best (0.75) + mobilevit-synthetic (0.25) on casme2+... (...)"."""
    names = " + ".join(
        f"{Path(name).stem} ({w:.2f})" for (name, _), w in zip(parts, weights, strict=True)
    )
    where = part_title.split(" on ", 1)[1] if " on " in part_title else part_title
    return f"blend of {names} on {where}"


def _export(
    export: Path,
    outcomes: Sequence[RunOutcome],
    weights: Sequence[float],
    config: ExperimentConfig,
    metrics: Any,
    notes: Mapping[str, Any],
    resolved: Mapping[str, Any],
) -> Path:
    """One `flow_blend` model file from the parts' model files (each trained on all samples);
    the parts' own temperatures are dropped, the blend's (if calibrated) applies to the mix."""
    loaded = []
    for o in outcomes:
        if o.model_path is None:
            raise MekitError(f"part {o.run_dir} wrote no model file; cannot export the blend")
        loaded.append(load_model(o.model_path))
    labels = loaded[0].labels
    for part, o in zip(loaded, outcomes, strict=True):
        if part.labels != labels:
            raise MekitError(f"{o.model_path} has labels {part.labels}, the first part {labels}")
    parts = [
        {"model": p.name, "options": {k: v for k, v in p.meta["model_kwargs"].items()
                                      if k != "temperature"}}
        for p in loaded
    ]  # fmt: skip
    kwargs: dict[str, Any] = {"parts": parts, "weights": list(weights)}
    temperature = notes.get("calibration", {}).get("temperature", 1.0)
    if temperature != 1.0:
        kwargs["temperature"] = float(temperature)
    with torch.random.fork_rng(devices=[]):
        model = create_model(BLEND_MODEL, len(labels), **kwargs)
    for slot, part in zip(model.parts, loaded, strict=True):
        slot.load_state_dict(part.model.state_dict())
    model.eval()
    features = feature_config_for(get_spec(BLEND_MODEL), config.features)
    first = loaded[0].meta
    training = {
        **dict(first.get("training", {})),
        "parts": [
            {"recipe": n["recipe"], "weight": n["weight"], "model": p.name,
             "file": str(o.model_path), "training": p.meta.get("training", {})}
            for n, p, o in zip(notes["parts"], loaded, outcomes, strict=True)
        ],
    }  # fmt: skip
    for key in ("epochs", "members", "member_seeds", "input_norm"):
        training.pop(key, None)  # each part's, listed under "parts"
    # the parts' selection: "val-split" where any part stopped early, else "fixed"
    chosen = {str(p.meta.get("metrics", {}).get("selection", "fixed")) for p in loaded}
    selection = "val-split" if "val-split" in chosen else "fixed"
    selection_config = replace(config, train=replace(config.train, selection=selection))
    _, sidecar = save_model(
        export,
        model,
        model_name=BLEND_MODEL,
        labels=labels,
        model_kwargs=kwargs,
        input={"features": to_dict(features), "face": first["input"].get("face", {})},
        config=resolved,
        metrics=model_metrics(selection_config, [config.train.seed], [metrics], notes),
        training=training,
    )
    log.info("blend of %d parts written: %s", len(loaded), sidecar)
    return sidecar
