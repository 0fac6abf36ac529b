"""Train the packaged action-unit model on mekit's synthetic AU flows only.

    python -m mekit.app.au_training --out src/mekit/models/weights/au-motion --seed 0

retrains the shipped model bit-for-bit (same weights file, same SHA-256) on a CPU (`--workers 2`
makes the samples in two processes, the same bytes: about 37 minutes): the samples come from
`mekit.synth.au_flows` (seeded per sample; half of them, PACKAGED_RENDERED, measured by
OpenCV's TV-L1 on rendered faces, so the bytes hold for one OpenCV build), the weights, batch
order, flips and dropout from `--seed`, and the thread count is fixed (1) because another
count may sum floats in another order. No real face, and nothing derived from one, is used:
the decision threshold too is the one of `THRESHOLDS` with the best macro F1 on held-out
synthetic samples. (It lives in `app` because it needs both the generator, `mekit.synth`, and
training, `mekit.train`.)

A run stopped part way (Ctrl-C, a closed terminal, kill -9) continues where it stopped when
run again with the same options: each member's training saves its progress beside `--out`
(`OUT.memberI.progress.pt`), and a trained member is kept (`OUT.memberI.done.pt`), so a rerun
neither makes its samples nor trains it again. The model file is the same, bit for bit, as
that of an uninterrupted run; the files go once it is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mekit.config import Config, check_range
from mekit.models.au_net import AU_LABELS, AUEnsemble
from mekit.synth.au_flows import AUS, AUFlowConfig, au_flow_dataset
from mekit.train.au_model import MODEL_NAME, RETRAIN_COMMAND
from mekit.train.checkpoint import model_paths, save_model
from mekit.train.group_state import GroupState
from mekit.train.metrics import AUMetrics, au_metrics, present_aus
from mekit.train.multilabel import MultiLabelConfig, fit_multilabel, sigmoid_probabilities

log = logging.getLogger(__name__)

# The packaged model's share of samples whose flow is measured on rendered faces
# (`AUFlowConfig.rendered`): half, spread evenly over the samples.
PACKAGED_RENDERED = 0.5
RENDERED_HELP = (
    "share of the samples whose flow TV-L1 measures on rendered faces, about 50 ms each "
    "(default 0.5, the packaged model's; 0: all written; see mekit.synth.au_flows)"
)
WORKERS_HELP = "processes making the samples (the same samples for any number)"

# Thresholds tried on the synthetic validation samples; the file records the best.
THRESHOLDS: tuple[float, ...] = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


@dataclass(frozen=True)
class AUTrainConfig(Config, section="au_train"):
    """How the AU model is trained; the defaults made the packaged model."""

    seed: int = 0
    n_train: int = 32000
    n_val: int = 3000
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 32
    dropout: float = 0.2
    threads: int = 1
    # Models averaged (`mekit.models.au_net.AUEnsemble`); member i is trained with seed + i on
    # the samples of data seed + i, so members differ in data as well as in initial weights.
    # Two: one model's real-data figure moves by about 0.04 from seed to seed.
    members: int = 2

    def check(self) -> None:
        for name in ("n_train", "n_val", "epochs", "batch_size", "width", "threads", "members"):
            check_range(self, name, 1)
        check_range(self, "lr", 0, lo_open=True)
        check_range(self, "dropout", 0, 1, hi_open=True)


def train_au_model(
    out: Path,
    config: AUTrainConfig = AUTrainConfig(),  # noqa: B008
    data: AUFlowConfig | None = None,
    workers: int = 1,
) -> dict[str, object]:
    """Train AUNet on synthetic AU flows (`data`, default the packaged model's: `config.seed`,
    PACKAGED_RENDERED of them measured),
    score it on held-out synthetic samples, save it to `out` (stem); returns the synthetic
    validation metrics. `workers` processes make the samples (the same bytes for any number).
    Continues a stopped run of the same settings from the files it left beside `out` (see the
    module docstring)."""
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        data = data or AUFlowConfig(seed=config.seed, rendered=PACKAGED_RENDERED)
        files = [_MemberFiles.of(out, i, config, data) for i in range(config.members)]
        members = [_train_member(i, config, data, workers, saved) for i, saved in enumerate(files)]
        model = members[0] if len(members) == 1 else AUEnsemble(members)
        seconds = time.perf_counter() - started
        summary = save_au_model(out, model, config, data, seconds, workers)
        for saved in files:  # only now: a run stopped before the save keeps its members
            saved.clear()
        return summary
    finally:
        torch.set_num_threads(threads)


def save_au_model(
    out: Path,
    model: nn.Module,
    config: AUTrainConfig,
    data: AUFlowConfig,
    seconds: float,
    workers: int = 1,
) -> dict[str, object]:
    """Pick `model`'s threshold on the held-out synthetic samples of `data` (n_val from
    n_train on), save it with its sidecar to `out`; returns the validation metrics."""
    xv, yv = au_flow_dataset(config.n_val, data, start=config.n_train, workers=workers)
    probs = sigmoid_probabilities(model, xv)
    threshold, metrics = _best_threshold(probs, present_aus(yv, AUS))
    summary = {
        "synthetic_macro_f1": metrics.macro_f1,
        "threshold": threshold,
        "synthetic_per_au_f1": {f"AU{a}": metrics.per_au[a]["f1"] for a in AUS},
        "synthetic_validation_samples": config.n_val,
    }
    save_model(
        out,
        model,
        model_name=MODEL_NAME,
        labels=AU_LABELS,
        model_kwargs={"width": config.width, "dropout": config.dropout, "members": config.members},
        input={
            "normalisation": "minmax_per_sample",
            "features": {"kind": "onset_apex", "size": 28},
            "threshold": threshold,
        },
        config={"train": asdict(config), "data": asdict(data)},
        metrics=summary,
        training={
            "trained_on": "mekit synthetic AU flows (mekit.synth.au_flows); no real data",
            "retrain": retrain_command(config, data),
            "seconds": round(seconds, 1),
        },
    )
    return summary


def retrain_command(config: AUTrainConfig, data: AUFlowConfig) -> str:
    """The command that trains this model again: the packaged one's with the options that
    differ from it."""
    defaults = AUTrainConfig()
    options = [f"--seed {config.seed}"]
    if config.n_train != defaults.n_train:
        options.append(f"--n-train {config.n_train}")
    if config.n_val != defaults.n_val:
        options.append(f"--n-val {config.n_val}")
    if config.epochs != defaults.epochs:
        options.append(f"--epochs {config.epochs}")
    if data.rendered != PACKAGED_RENDERED:
        options.append(f"--rendered {data.rendered:g}")
    return " ".join([RETRAIN_COMMAND, *options])


@dataclass(frozen=True)
class _MemberFiles:
    """Where one ensemble member's training is kept while the model is made: its progress
    (`OUT.memberI.progress.pt`) and, once trained, its weights (`OUT.memberI.done.pt`), both
    stamped with a hash of the member's settings, which fix its samples and its training."""

    progress: GroupState
    done: GroupState

    @classmethod
    def of(cls, out: Path, index: int, config: AUTrainConfig, data: AUFlowConfig) -> _MemberFiles:
        config, data = _member_settings(index, config, data)
        setup = {"member": index, "train": asdict(config), "data": asdict(data)}
        stamp = hashlib.sha256(json.dumps(setup, sort_keys=True, default=str).encode())
        weights, _ = model_paths(out)
        return cls(
            GroupState(weights.with_suffix(f".member{index}.progress.pt"), stamp.hexdigest()),
            GroupState(weights.with_suffix(f".member{index}.done.pt"), stamp.hexdigest()),
        )

    def clear(self) -> None:
        self.progress.clear()
        self.done.clear()


def _member_settings(
    index: int, config: AUTrainConfig, data: AUFlowConfig
) -> tuple[AUTrainConfig, AUFlowConfig]:
    """Member `index`'s settings: seed + index for its training and its data (member 0's
    are `config` and `data` as given)."""
    return replace(config, seed=config.seed + index), replace(data, seed=data.seed + index)


def _train_member(
    index: int,
    config: AUTrainConfig,
    data: AUFlowConfig,
    workers: int,
    saved: _MemberFiles,
) -> nn.Module:
    """Ensemble member `index`, trained on its own samples (`_member_settings`): the one a
    stopped run kept in `saved`, or trained, continuing from the progress saved there."""
    config, data = _member_settings(index, config, data)
    kept = saved.done.load()
    if kept is not None:
        log.info("member %d: trained by an earlier run (%s)", index, saved.done.path.name)
        model = _new_model(config)
        model.load_state_dict(kept["weights"])
        return model.eval()
    x, y = au_flow_dataset(config.n_train, data, workers=workers)
    log.info("member %d: %d training samples", index, len(x))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = _fit(x, y, config, saved.progress)
    saved.done.save(lambda: {"weights": model.state_dict()})
    return model


def _best_threshold(probs: np.ndarray, truth: list[frozenset[int]]) -> tuple[float, AUMetrics]:
    """The threshold of THRESHOLDS with the best macro F1 on the synthetic validation samples
    (the first of equals), and those metrics."""
    best: tuple[float, AUMetrics] | None = None
    for threshold in THRESHOLDS:
        metrics = au_metrics(truth, present_aus(probs, AUS, threshold), AUS)
        if best is None or metrics.macro_f1 > best[1].macro_f1:
            best = (threshold, metrics)
    assert best is not None
    return best


def _new_model(config: AUTrainConfig) -> nn.Module:
    from mekit.models import create_model

    return create_model(MODEL_NAME, len(AU_LABELS), width=config.width, dropout=config.dropout)


def _fit(x: np.ndarray, y: np.ndarray, config: AUTrainConfig, progress: GroupState) -> nn.Module:
    model = _new_model(config)
    schedule = MultiLabelConfig(
        seed=config.seed,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    return fit_multilabel(model, x, y, schedule, progress_file=progress)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mekit.app.au_training", description=__doc__.split("\n\n")[0]
    )
    defaults = AUTrainConfig()
    parser.add_argument("--out", type=Path, required=True, help="model stem to write")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--n-train", type=int, default=defaults.n_train)
    parser.add_argument("--n-val", type=int, default=defaults.n_val)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--rendered", type=float, default=PACKAGED_RENDERED, help=RENDERED_HELP)
    parser.add_argument("--workers", type=int, default=1, help=WORKERS_HELP)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = AUTrainConfig(
        seed=args.seed, n_train=args.n_train, n_val=args.n_val, epochs=args.epochs
    )
    data = AUFlowConfig(seed=args.seed, rendered=args.rendered)
    summary = train_au_model(args.out, config, data, args.workers)
    weights, _ = model_paths(args.out)
    print(f"synthetic macro F1 {summary['synthetic_macro_f1']:.3f}; wrote {weights}")


if __name__ == "__main__":
    main()
