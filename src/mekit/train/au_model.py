"""The action-unit model: train it on mekit's synthetic AU flows only, ship it, run it.

    python -m mekit.train.au_model --out src/mekit/models/weights/au-motion --seed 0

retrains the shipped model bit-for-bit (same weights file, same SHA-256) on a CPU: the samples
come from `mekit.synth.au_flows` (seeded per sample), the weights, batch order, flips and
dropout from `--seed`, and the thread count is fixed (1) because another count may sum floats
in another order. No real face, and nothing derived from one, is used.

`AUDetector` runs it: (3, 28, 28) u, v, strain of an onset -> apex flow (any scale: it is
min-max normalised per sample here, as in training) -> the probability of each AU.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mekit.errors import MekitError
from mekit.models.au_net import AU_LABELS
from mekit.motion.normalise import minmax_flow
from mekit.synth.au_flows import AUS, AUFlowConfig, au_flow_dataset
from mekit.train.checkpoint import LoadedModel, load_model, model_paths, save_model
from mekit.train.metrics import au_metrics

log = logging.getLogger(__name__)

MODEL_NAME = "aunet"
SHIPPED_STEM = "au-motion"  # src/mekit/models/weights/au-motion.{safetensors,json}
AU_INPUT_SIZE = 28  # px of the (u, v, strain) input
THRESHOLD = 0.5  # an AU is reported present from this probability on
RETRAIN_COMMAND = "python -m mekit.train.au_model --out src/mekit/models/weights/au-motion"

# The face region each AU acts on (FACS), for reports.
AU_REGIONS: dict[int, str] = {
    1: "brows",
    2: "brows",
    4: "brows",
    6: "eyes",
    7: "eyes",
    45: "eyes",
    9: "nose",
    10: "mouth",
    12: "mouth",
    14: "mouth",
    15: "mouth",
    20: "mouth",
    25: "mouth",
    17: "chin",
}
# Rows of a face crop (fractions of its height) each region spans, for the side it moved on.
REGION_ROWS: dict[str, tuple[float, float]] = {
    "brows": (0.0, 0.32),
    "eyes": (0.22, 0.45),
    "nose": (0.35, 0.65),
    "mouth": (0.6, 0.88),
    "chin": (0.8, 1.0),
}


@dataclass(frozen=True)
class AUTrainConfig:
    seed: int = 0
    n_train: int = 16000
    n_val: int = 3000
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 16
    dropout: float = 0.2
    threads: int = 1


def _flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror normalised flows left-right: u changes sign (exact for min-max scaled u)."""
    out = torch.flip(x, dims=(-1,))
    out[:, 0] = -out[:, 0]
    return out


def train_au_model(out: Path, config: AUTrainConfig = AUTrainConfig()) -> dict[str, object]:  # noqa: B008
    """Train AUNet on synthetic AU flows, score it on held-out synthetic samples, save it to
    `out` (stem); returns the synthetic validation metrics."""
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        data = AUFlowConfig(seed=config.seed)
        x, y = au_flow_dataset(config.n_train, data)
        xv, yv = au_flow_dataset(config.n_val, data, start=config.n_train)
        log.info("%d training, %d validation samples", len(x), len(xv))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = _fit(x, y, config)
        probs = _predict(model, xv)
        pred = [{a for a, p in zip(AUS, row, strict=True) if p >= THRESHOLD} for row in probs]
        truth = [{a for a, t in zip(AUS, row, strict=True) if t > 0} for row in yv]
        metrics = au_metrics(truth, pred, AUS)
        summary = {
            "synthetic_macro_f1": metrics.macro_f1,
            "synthetic_per_au_f1": {f"AU{a}": metrics.per_au[a]["f1"] for a in AUS},
            "synthetic_validation_samples": config.n_val,
        }
        save_model(
            out,
            model,
            model_name=MODEL_NAME,
            labels=AU_LABELS,
            model_kwargs={"width": config.width, "dropout": config.dropout},
            input={
                "normalisation": "minmax_per_sample",
                "features": {"kind": "onset_apex", "size": 28},
                "threshold": THRESHOLD,
            },
            config={"train": asdict(config), "data": asdict(data)},
            metrics=summary,
            training={
                "trained_on": "mekit synthetic AU flows (mekit.synth.au_flows); no real data",
                "retrain": f"{RETRAIN_COMMAND} --seed {config.seed}",
                "seconds": round(time.perf_counter() - started, 1),
            },
        )
        return summary
    finally:
        torch.set_num_threads(threads)


def _fit(x: np.ndarray, y: np.ndarray, config: AUTrainConfig) -> nn.Module:
    from mekit.models import create_model

    model = create_model(MODEL_NAME, len(AU_LABELS), width=config.width, dropout=config.dropout)
    gen = torch.Generator().manual_seed(config.seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * ((len(xt) + config.batch_size - 1) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    loss_fn = nn.BCEWithLogitsLoss()
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for batch in torch.split(order, config.batch_size):
            xb, yb = xt[batch], yt[batch]
            flip = torch.rand(len(xb), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], _flip(xb), xb)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(xb)
        log.info("epoch %d/%d loss %.4f", epoch + 1, config.epochs, total / len(xt))
    model.eval()
    return model


def _predict(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    with torch.no_grad():
        chunks = torch.split(torch.from_numpy(np.ascontiguousarray(x, np.float32)), batch_size)
        return torch.cat([torch.sigmoid(model(c)) for c in chunks]).numpy()


def shipped_model_path() -> Path:
    """The sidecar of the AU model inside the package."""
    return Path(str(resources.files("mekit.models").joinpath("weights", SHIPPED_STEM + ".json")))


@dataclass(frozen=True)
class AUFinding:
    """One action unit of an event: its probability and where on the face it was seen
    ("brows", "eyes", ...; side "left" / "right" of the image, or "both")."""

    au: int
    probability: float
    region: str
    side: str

    @property
    def name(self) -> str:
        from mekit.synth.aus import AU_NAMES

        return AU_NAMES.get(self.au, "")

    @property
    def code(self) -> str:
        return f"AU{self.au}"

    def to_json(self) -> dict[str, object]:
        return {
            "au": self.au,
            "name": self.name,
            "probability": round(self.probability, 4),
            "region": self.region,
            "side": self.side,
        }


class AUDetector:
    """The AU model and how to read its output; `AUDetector.shipped()` for the packaged one."""

    def __init__(self, loaded: LoadedModel, threshold: float = THRESHOLD) -> None:
        self.loaded = loaded
        self.threshold = threshold
        self.aus = tuple(int(label.removeprefix("AU")) for label in loaded.labels)

    @classmethod
    def load(cls, path: Path) -> AUDetector:
        loaded = load_model(path)
        if loaded.name != MODEL_NAME:
            raise MekitError(f"{model_paths(path)[1]} is a {loaded.name!r}, not an AU model")
        return cls(loaded, float(loaded.input.get("threshold", THRESHOLD)))

    @classmethod
    def shipped(cls) -> AUDetector:
        return _shipped()

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, n AUs) probabilities for (N, 3, 28, 28) u, v, strain of any scale."""
        return _predict(self.loaded.model, minmax_flow(features))

    def predict(self, features: np.ndarray) -> list[frozenset[int]]:
        """The AUs at or above the threshold, per sample."""
        return [
            frozenset(a for a, p in zip(self.aus, row, strict=True) if p >= self.threshold)
            for row in self.probabilities(features)
        ]

    def findings(self, features: np.ndarray, motion: np.ndarray | None = None) -> list[AUFinding]:
        """The AUs of one event ((3, 28, 28) u, v, strain), most probable first, each with its
        region and side (from `motion`, a flow magnitude over the same face crop, when given;
        else from the u, v given)."""
        probs = self.probabilities(features[None])[0]
        if motion is None:
            motion = np.hypot(features[0], features[1])
        found = [
            AUFinding(a, float(p), AU_REGIONS.get(a, "face"), _side(motion, AU_REGIONS.get(a)))
            for a, p in zip(self.aus, probs, strict=True)
            if p >= self.threshold
        ]
        return sorted(found, key=lambda f: -f.probability)


@cache
def _shipped() -> AUDetector:
    path = shipped_model_path()
    if not path.is_file():
        raise MekitError(f"the packaged AU model {path} is missing; retrain it: {RETRAIN_COMMAND}")
    return AUDetector.load(path)


def _side(motion: np.ndarray, region: str | None, ratio: float = 1.5) -> str:
    """"left" / "right" (of the image) when one half of `region`'s rows moved `ratio` times
    more than the other, else "both"."""
    h, w = motion.shape
    top, bottom = REGION_ROWS.get(region or "", (0.0, 1.0))
    rows = np.abs(np.nan_to_num(motion[int(top * h) : max(int(top * h) + 1, int(bottom * h))]))
    left, right = float(rows[:, : w // 2].sum()), float(rows[:, w - w // 2 :].sum())
    if left > ratio * right:
        return "left"
    if right > ratio * left:
        return "right"
    return "both"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mekit.train.au_model", description=__doc__.split("\n\n")[0]
    )
    defaults = AUTrainConfig()
    parser.add_argument("--out", type=Path, required=True, help="model stem to write")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--n-train", type=int, default=defaults.n_train)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = AUTrainConfig(seed=args.seed, n_train=args.n_train, epochs=args.epochs)
    summary = train_au_model(args.out, config)
    weights, _ = model_paths(args.out)
    print(f"synthetic macro F1 {summary['synthetic_macro_f1']:.3f}; wrote {weights}")


if __name__ == "__main__":
    main()
