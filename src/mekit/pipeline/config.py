"""The settings of an experiment run (`ExperimentConfig`), written to config.json: their own
module so the run's stages (labelled corpora, cross-validation) can read them without
importing the run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mekit.config import Choice, Config, check_range, choice_enum, from_mapping
from mekit.errors import MekitError
from mekit.faces import FaceConfig
from mekit.motion import FeatureConfig
from mekit.spot.apex import APEX_MODES
from mekit.train import TrainConfig
from mekit.train.averaging import AverageConfig
from mekit.train.multilabel import MultiLabelConfig
from mekit.train.splits import PROTOCOLS

# The protocols and apex modes are listed where they are implemented.
EvalProtocol = choice_enum("EvalProtocol", PROTOCOLS, __name__)
ApexMode = choice_enum("ApexMode", APEX_MODES, __name__)


class Engine(Choice):
    AUTO = "auto"
    PLAIN = "plain"
    ENSEMBLE = "ensemble"


class ExecutorKind(Choice):
    LOCAL = "local"
    RAY = "ray"


@dataclass(frozen=True)
class SyntheticPretrainConfig(MultiLabelConfig, section="pretrain"):
    """Pretraining on mekit's synthetic AU flows (`mekit.synth.au_flows`): `samples` flows
    (seeded by `seed`, a tenth more held out to report the AU F1), the model predicting the AUs
    of each (multi-label), on input normalised per sample as the run's `average.input_norm`
    says. `synthetic = true` (a recipe's [pretrain]) makes a run pretrain its model first (into
    the run folder, reused on resume) and start every network from it (`train.init_from`).
    `mekit pretrain --synthetic` makes the same model file on its own. The schedule (seed,
    epochs, batch_size, lr, weight_decay) and the memory layout (memory_format, as
    `train.memory_format`) are `fit_multilabel`'s."""

    epochs: int = 8
    synthetic: bool = False
    samples: int = 20000

    def check(self) -> None:
        super().check()
        check_range(self, "samples", 1)


@dataclass(frozen=True)
class BlendConfig(Config, section="blend"):
    """A run that trains other recipes and averages them (`mekit.pipeline.blend`).

    parts: the recipes (shipped names or .toml paths) the run trains, each LOSO in its own
      folder with its own model, training, averaging and pretraining settings, and the run's
      data, protocol and hardware settings (`PASSED_TO_PARTS`);
    weights: one per part (empty: equal), the share of its class probabilities in the blend;
    calibrate: fit a temperature on the blend's out-of-fold probabilities for its model file.
    """

    parts: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    calibrate: bool = False

    def check(self) -> None:
        if self.weights and len(self.weights) != len(self.parts):
            raise MekitError(
                f"blend.weights has {len(self.weights)} values for {len(self.parts)} parts; "
                "give one weight per part, or none for equal weights"
            )
        if any(w < 0 for w in self.weights) or (self.weights and not sum(self.weights) > 0):
            raise MekitError(f"blend.weights must be >= 0 with a positive sum: {self.weights}")
        if len(self.parts) == 1:
            raise MekitError("a blend needs at least 2 parts (blend.parts)")

    @property
    def active(self) -> bool:
        return bool(self.parts)


@dataclass(frozen=True)
class ExperimentConfig(Config):
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
    pretrain: synthetic AU pretraining before the run (`SyntheticPretrainConfig`).
    blend: train other recipes and average their probabilities (`BlendConfig`).
    input_from: compute a flow model's input at this side and area-resample it to the model's
      (`mekit.models.blend.resize_flow`), as a blend's model file does for its parts; 0: at
      the model's side.
    abstain_below: recorded in the model file; `mekit analyze` and `serve` call an event
      "uncertain" when no class reaches this probability (0: never).
    """

    dataset: str = "auto"
    labels: str = "megc2019"  # built-in scheme name or a CSV path (dataset,emotion,label)
    model: str = "ststnet"  # a registered network (`mekit models`) or "lbptop_svm"
    protocol: EvalProtocol = EvalProtocol("loso")
    k: int = 5  # folds of the kfold protocol
    workers: int = 2  # processes for faces/flow and for folds
    engine: Engine = Engine.PLAIN
    executor: ExecutorKind = ExecutorKind.LOCAL
    ray_address: str = ""
    apex: ApexMode = ApexMode("given")
    allow_missing: bool = False
    folds_at_once: int = 0  # fold-batched training: folds per program (0: auto; bounds memory)
    face: FaceConfig = FaceConfig()
    features: FeatureConfig = FeatureConfig()  # kind, size and frames come from the model
    train: TrainConfig = TrainConfig()
    average: AverageConfig = AverageConfig()
    pretrain: SyntheticPretrainConfig = SyntheticPretrainConfig()
    blend: BlendConfig = BlendConfig()
    input_from: int = 0
    abstain_below: float = 0.0

    def check(self) -> None:
        check_range(self, "abstain_below", 0, 1, hi_open=True)
        check_range(self, "input_from", 0)
        if self.pretrain.synthetic and self.train.init_from:
            raise MekitError(
                "pretrain.synthetic makes the run's starting weights; drop train.init_from "
                f"({self.train.init_from}) or set pretrain.synthetic = false"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        return from_mapping(cls, values)
