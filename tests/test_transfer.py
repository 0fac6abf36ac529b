"""Transfer learning end to end: pretrain an image model on a labelled folder, fine-tune on
micro-expressions from its model file."""

import json

import cv2
import numpy as np
import pytest
import torch

from mekit.cli.main import main
from mekit.models import create_model
from mekit.synth import SynthConfig, generate_corpus
from mekit.train.checkpoint import load_model
from mekit.train.transfer import transfer_weights


def image_folder(root, n=6):
    rng = np.random.default_rng(0)
    for label, level in (("happy", 200), ("sad", 60)):
        (root / label).mkdir(parents=True)
        for i in range(n):
            image = np.clip(level + rng.normal(0, 20, (48, 48)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / label / f"{i}.png"), image)
    return root


def test_transfer_copies_all_but_the_head(tmp_path):
    from mekit.train.checkpoint import save_model

    source = create_model("ststnet", num_classes=5)
    save_model(
        tmp_path / "src",
        source,
        model_name="ststnet",
        labels=list("abcde"),
        model_kwargs={},
        input={},
        config={},
    )
    target = create_model("ststnet", num_classes=3)
    report = transfer_weights(target, tmp_path / "src")
    assert report.fresh and all("fc" in n or "classifier" in n or "head" in n for n in report.fresh)
    for name in report.loaded:
        assert torch.equal(target.state_dict()[name], source.state_dict()[name])


@pytest.mark.slow
def test_pretrain_then_fine_tune(tmp_path, capsys):
    images = image_folder(tmp_path / "faces")
    model = tmp_path / "models" / "pre"
    settings = ["--set", "train.epochs=1", "--set", "train.batch_size=4"]
    assert (
        main(
            ["pretrain", "--images", str(images), "--model", "resnet18", "--out", str(model)]
            + settings
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2 classes: happy, sad" in out and "--init" in out
    loaded = load_model(model)
    assert loaded.labels == ("happy", "sad") and loaded.meta["training"]["task"] == "pretrain"
    corpus = tmp_path / "corpus"
    generate_corpus(
        corpus, SynthConfig(subjects=2, clips_per_subject=3, long_videos=False), progress=False
    )
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--corpus",
            str(corpus),
            "--model",
            "resnet18",
            "--init",
            str(model),
            "--out",
            str(run),
            "--workers",
            "1",
            "--no-cache",
            "--quiet",
        ]
        + settings
    )
    assert code == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["init_from"] == str(model)


def test_image_sources_are_recognised(tmp_path):
    from mekit.pipeline import load_image_source

    rows = ["emotion,pixels,Usage"]
    for code, usage in ((3, "Training"), (4, "Training"), (3, "PublicTest")):
        rows.append(f"{code},{' '.join(['128'] * 2304)},{usage}")
    (tmp_path / "fer2013.csv").write_text("\n".join(rows) + "\n")
    fer = load_image_source(tmp_path / "fer2013.csv", size=112)
    assert fer.dataset == "fer2013" and fer.labels == ("happiness", "sadness", "happiness")
    assert load_image_source(tmp_path, size=112).split[2] == "PublicTest"
    folder = load_image_source(image_folder(tmp_path / "faces", n=2), size=64)
    assert len(folder) == 4 and folder.size == (64, 64)


def test_an_interrupted_pretraining_continues_from_its_progress(tmp_path, epochs):
    from mekit.data.images import load_image_folder
    from mekit.train.loop import TrainConfig
    from mekit.train.transfer import pretrain

    images = load_image_folder(image_folder(tmp_path / "faces"), size=112)
    config = TrainConfig(epochs=2, batch_size=4)
    reference = pretrain(images, "resnet18", config, tmp_path / "reference").model_path

    epochs.stop_at(2)
    with pytest.raises(epochs.Interrupted):
        pretrain(images, "resnet18", config, tmp_path / "pre")
    assert (tmp_path / "pre.progress.pt").exists()

    epochs.reset()
    weights = pretrain(images, "resnet18", config, tmp_path / "pre").model_path
    assert epochs.trained == 1  # only the second epoch again
    assert weights.read_bytes() == reference.read_bytes()
    assert not (tmp_path / "pre.progress.pt").exists()
