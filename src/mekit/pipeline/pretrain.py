"""Pretraining on macro-expression images (FER2013, CK+ or a label/*.png folder), saved as a
model file that a micro-expression run can start from."""

from __future__ import annotations

import logging
from pathlib import Path

from mekit.data.images import ImageSet
from mekit.errors import MekitError
from mekit.models import get_spec
from mekit.pipeline.face_crop import face_crop
from mekit.train import TrainConfig
from mekit.train.transfer import PretrainOutcome, pretrain

log = logging.getLogger(__name__)


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
    spec = get_spec(model)
    images = load_image_source(source, size=spec.input_shape[-1])
    for s in images.skipped:
        log.warning("skipped %s: %s", s.id, s.reason)
    return pretrain(images, model, train, out)
