"""How the folds of a run are trained: the engine (one model per fold, the fused STSTNet fold
ensemble, or all folds vmapped at once), and the cross-validation of one run on its input
(`Design`), averaged over members when `config.average` is active."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mekit.errors import MekitError
from mekit.pipeline.config import ExperimentConfig
from mekit.train import LosoResult
from mekit.train.averaging import average_results, member_seed, normalise_inputs
from mekit.train.classical import CLASSICAL_MODELS, SVMTrainer
from mekit.train.device import resolve_device
from mekit.train.estimators import NetworkTrainer, Trainer
from mekit.train.executors import make_executor
from mekit.train.loso import cross_validate
from mekit.train.splits import protocol_folds

log = logging.getLogger(__name__)


def fold_engine(config: ExperimentConfig, explain: bool = False) -> str:
    """How the folds of a network are trained: "plain" (one model per fold), "kernel" (the fused
    STSTNet fold ensemble, CPU) or "batched" (any model, all folds vmapped at once).

    engine "ensemble" asks for all folds at once: the fused kernel where it implements every
    setting, else fold-batched training, else an error naming what neither implements; "auto"
    takes the same order and falls back to the plain loop, and on the CPU takes the plain loop
    where the fused kernel does not apply (see `_batching_loses_on_cpu`). `explain` logs why
    auto chose the plain loop (a run asks once, not at every member and export)."""
    if config.engine == "plain":
        return "plain"
    from mekit.train.batched import batched_unsupported
    from mekit.train.ensemble import ENSEMBLE_MODELS, unsupported_settings

    kernel = unsupported_settings(config.train)
    if config.model not in ENSEMBLE_MODELS:
        kernel.insert(0, f"model {config.model} (it trains {', '.join(ENSEMBLE_MODELS)})")
    if not kernel:
        return "kernel"
    say = log.info if explain else log.debug
    batched = batched_unsupported(config.train)
    if not batched and config.engine == "auto" and _batching_loses_on_cpu(config):
        say(
            "engine auto: the plain loop (fold-batched %s on the CPU is slower than one model "
            "per fold; --engine ensemble forces it)",
            config.model,
        )
        return "plain"
    if not batched:
        return "batched"
    if config.engine == "ensemble":
        raise MekitError(
            f"the ensemble engine cannot train with {', '.join(batched)}; use --engine plain "
            "(one model per fold), which implements every setting"
        )
    say("engine auto: the plain loop (all folds at once lacks %s)", ", ".join(batched))
    return "plain"


# On the CPU, fold-batching loses to one model per fold for every model measured: with the
# fused Adam and both timed after a warm-up epoch, `benchmarks/fold_batched.py` on 2 cores gave
# STSTNet 0.69x (its kernel is another matter), Off-ApexNet 0.79x (0.82x on one thread, what
# each of 2 workers gets), its strain variant 0.90x (0.77x), MobileViTv3-XXS about 0.25x; on an
# AVX-512 machine later, Off-ApexNet 0.65x and MobileViTv3-XXS 0.43x (0.87x and 0.61x in bf16).
# Stacking folds only pays where one model's step leaves the device idle: a GPU.
def _batching_loses_on_cpu(config: ExperimentConfig) -> bool:
    """Whether `config` trains on the CPU, where the per-fold loop is the faster engine."""
    return resolve_device(config.train.device).type == "cpu"


@dataclass(frozen=True)
class Design:
    """The cross-validation's input, row i = sample `ids[i]`: X in the model's layout, y the
    class index into `labels`, each sample's dataset and subject ("dataset/subject" when the
    run reads several corpora, so that subjects of different corpora stay apart)."""

    X: np.ndarray
    y: np.ndarray
    ids: list[str]
    datasets: list[str]
    subjects: list[str]
    labels: list[str]


def run_cross_validation(
    design: Design, config: ExperimentConfig, run_dir: Path, progress: bool
) -> LosoResult:
    """One cross-validation (`_train_folds`), or with `config.average` active, each member's
    on normalised input (member m with its member seed, folds under run_dir/member-m) and the
    members' probabilities averaged. Every member gets the folds of the run's own seed."""
    if not config.average.active:
        return _train_folds(design, config, run_dir, progress)
    normalised = replace(design, X=normalise_inputs(design.X, config.average.input_norm))
    results = []
    for m in range(config.average.members):
        seed = member_seed(config.train.seed, m)
        member = replace(config, train=replace(config.train, seed=seed))
        results.append(
            _train_folds(
                normalised, member, run_dir / f"member-{m}", progress, fold_seed=config.train.seed
            )
        )
    return replace(average_results(results), config=config.train)


def _train_folds(
    design: Design,
    config: ExperimentConfig,
    run_dir: Path,
    progress: bool,
    fold_seed: int | None = None,
) -> LosoResult:
    """The folds of `config.protocol`, trained by the engine the settings choose."""
    seed = config.train.seed if fold_seed is None else fold_seed  # seeds kfold's draw
    X, y, labels = design.X, design.y, design.labels
    folds = protocol_folds(config.protocol, design.subjects, design.datasets, y, config.k, seed)
    return cross_validate(
        X,
        y,
        design.subjects,
        design.ids,
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
    engine = fold_engine(config)
    if engine == "batched":
        from mekit.train.batched import BatchedTrainer

        return BatchedTrainer(
            config.model, num_classes, config.train, folds_at_once=config.folds_at_once
        )
    if engine == "kernel":
        from mekit.train.ensemble import KernelTrainer

        return KernelTrainer(config.model, num_classes, config.train)
    return NetworkTrainer(config.model, num_classes, config.train)
