"""Pretraining, saved as a model file that a micro-expression run can start from: on
macro-expression images (FER2013, CK+ or a label/*.png folder) for apex-image models, or on
mekit's synthetic AU flows for flow models."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from mekit.config import to_dict
from mekit.data.images import ImageSet
from mekit.errors import MekitError
from mekit.models import create_model, get_spec
from mekit.models.au_net import AU_LABELS
from mekit.models.averaging import INPUT_NORMS
from mekit.models.registry import UV_STRAIN, uv_strain_channels
from mekit.motion.extract import resize_channels
from mekit.pipeline.config import SyntheticPretrainConfig
from mekit.pipeline.face_crop import face_crop
from mekit.synth.au_flows import AUS, AUFlowConfig, au_flow_dataset
from mekit.train import TrainConfig
from mekit.train.averaging import normalise_inputs
from mekit.train.checkpoint import save_model
from mekit.train.device import check_hardware
from mekit.train.export import model_progress
from mekit.train.metrics import au_metrics, present_aus
from mekit.train.multilabel import fit_multilabel, sigmoid_probabilities
from mekit.train.transfer import PretrainOutcome, pretrain

log = logging.getLogger(__name__)

PRETRAINED_STEM = "pretrained"  # a run's synthetic-pretrained model file, in its folder


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
        return ckplus.ckplus_peak_images(path, size=size, crop=face_crop())
    return images.load_image_folder(path, size=size)


def run_pretrain(
    source: Path, out: Path, model: str, train: TrainConfig = TrainConfig()
) -> PretrainOutcome:
    """Pretrain `model` on a macro-expression image source and save it as a model file."""
    check_hardware(train.device, train.precision)  # before any loading
    spec = get_spec(model)
    images = load_image_source(source, size=spec.input_shape[-1])
    for s in images.skipped:
        log.warning("skipped %s: %s", s.id, s.reason)
    return pretrain(images, model, train, out)


def synthetic_au_inputs(
    n: int,
    size: int,
    input_norm: str,
    seed: int,
    start: int = 0,
    channels: tuple[str, ...] = UV_STRAIN,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic flows start..start+n-1 as a model of input side `size` and `channels` (of u,
    v, strain) takes them (28 px flows resized as `read_flow` resizes a 28 px flow image),
    with their (n, AUs) targets."""
    x, y = au_flow_dataset(n, AUFlowConfig(seed=seed), start=start)
    x = x[:, [UV_STRAIN.index(c) for c in channels]]
    if size != x.shape[-1]:
        x = np.stack([resize_channels(flow, size) for flow in x])
    return normalise_inputs(x, input_norm), y


def run_synthetic_pretrain(
    model: str,
    out: Path,
    config: SyntheticPretrainConfig = SyntheticPretrainConfig(),  # noqa: B008
    input_norm: str = "none",
    device: str = "auto",
    precision: str = "auto",
) -> PretrainOutcome:
    """Pretrain `model` (a u/v/strain flow network) to predict the AUs of synthetic flows, each
    normalised per sample by `input_norm` as the fine-tuning run will normalise its input, on
    `device` under `precision` (as `train.device` and `train.precision`), and save it at `out`
    as a model file that `train.init_from` (or `--init`) starts a run from."""
    if input_norm not in INPUT_NORMS:
        raise MekitError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, not {input_norm!r}")
    check_hardware(device, precision)  # before the flows are made
    spec = get_spec(model)
    if uv_strain_channels(spec) is None:
        raise MekitError(
            f"synthetic pretraining makes u/v/strain flows; {model} takes {spec.input_kind} "
            f"{'/'.join(spec.channel_names)}. Flow models: see `mekit models`"
        )
    size = spec.input_shape[-1]
    n_val = max(1, config.samples // 10)
    channels = spec.channel_names
    x, y = synthetic_au_inputs(config.samples, size, input_norm, config.seed, 0, channels)
    xv, yv = synthetic_au_inputs(n_val, size, input_norm, config.seed, config.samples, channels)
    log.info("pretraining %s on %d synthetic AU flows (%d px)", model, len(x), size)
    # an interrupted pretraining continues from here (config: the schedule too)
    progress = model_progress(out, x, y, AU_LABELS, model, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = create_model(model, len(AU_LABELS))
        fit_multilabel(network, x, y, config, device, precision, progress_file=progress)
    found = present_aus(sigmoid_probabilities(network, xv), AUS)
    macro_f1 = au_metrics(present_aus(yv, AUS), found, AUS).macro_f1
    paths = save_model(
        Path(out),
        network,
        model_name=model,
        labels=AU_LABELS,
        model_kwargs={},
        input={"kind": spec.input_kind, "size": size, "normalisation": input_norm},
        config={"pretrain": to_dict(config)},
        metrics={"synthetic_au_macro_f1": macro_f1, "n_held_out": n_val},
        training={
            "task": "pretrain",
            "trained_on": "mekit synthetic AU flows (mekit.synth.au_flows); no real data",
            "samples": len(x),
            "device": device,
            "precision": precision,
        },
    )
    progress.clear()  # only now: a run stopped before the save continues the training
    log.info("pretrained %s: synthetic AU macro F1 %.3f; %s", model, macro_f1, paths[0])
    # held-out: synthetic AUs never trained on, present from probability 0.5
    return PretrainOutcome(paths[0], AU_LABELS, len(x), n_val, macro_f1, "AU macro F1")
