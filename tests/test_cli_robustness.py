"""Faults on the command line end in one `mekit: error:` line naming the path and the fix, exit 2:
output folders that cannot be made or written, writes that fail, broken model files, videos that
are empty, not videos or truncated."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import torch
from tests.app.fakes import write_video

from mekit.app import analyze as analyze_module
from mekit.cli import main as cli
from mekit.cli import models as models_command
from mekit.errors import MekitError, describe_os_error, output_folder
from mekit.models import create_model
from mekit.train.checkpoint import save_model

LABELS = ["negative", "positive", "surprise"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    net = create_model("ststnet", len(LABELS)).eval()
    folder = tmp_path_factory.mktemp("model")
    return save_model(
        folder / "m", net, model_name="ststnet", labels=LABELS, model_kwargs={}, input={}, config={}
    )[1]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    return code, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("mekit: error: "), err
    return lines[0]


@pytest.mark.parametrize("layout", ["file/sub", "file"])
def test_analyze_out_blocked_by_a_file(tmp_path, capsys, video, model, layout):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / layout
    code, err = _run(capsys, "analyze", str(video), "--model", str(model), "--out", str(out))
    line = _one_error_line(err)
    assert code == 2
    assert str(out) in line and "give --out a folder path" in line


def test_train_out_blocked_by_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "run"
    code, err = _run(capsys, "train", "--corpus", str(tmp_path), "--out", str(out))
    line = _one_error_line(err)
    assert code == 2 and str(out) in line and "--out" in line


@pytest.mark.parametrize(
    ("option", "words"),
    [
        (("--precision", "fp16", "--device", "cpu"), "fp16 needs a GPU"),
        (("--device", "tpu"), "train.device 'tpu' is not one of"),
    ],
)
def test_train_refuses_a_device_or_precision_before_loading_the_corpus(
    tmp_path, capsys, monkeypatch, option, words
):
    from mekit.pipeline import experiment

    def no_loading(*args, **kwargs):
        raise AssertionError("the corpus was loaded")

    monkeypatch.setattr(experiment, "load_labelled", no_loading)
    argv = ["train", "--corpus", str(tmp_path), "--model", "ststnet", "--out", str(tmp_path / "r")]
    code, err = _run(capsys, *argv, *option)
    assert code == 2 and words in _one_error_line(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_folder(tmp_path, capsys, video, model):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, err = _run(capsys, "analyze", str(video), "--model", str(model), "--out", str(locked))
    finally:
        locked.chmod(0o700)
    assert code == 2 and "not writable" in _one_error_line(err)


def test_output_folder_names_the_fix_for_each_cause(tmp_path, monkeypatch):
    for number, words in (
        (errno.EACCES, "not writable"),
        (errno.EROFS, "not writable"),
        (errno.ENOSPC, "disk is full"),
    ):

        def refuse(self, data, number=number):
            raise OSError(number, os.strerror(number), str(self))

        monkeypatch.setattr("pathlib.Path.write_bytes", refuse)
        with pytest.raises(MekitError, match=words) as info:
            output_folder(tmp_path / "out", "--out")
        assert str(tmp_path / "out") in str(info.value)
    message = describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/x/y.png"))
    assert message.startswith("cannot write /x/y.png (Permission denied)")


def test_an_unchecked_os_error_is_still_one_line(capsys, monkeypatch):
    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/timeline.png")

    monkeypatch.setattr(models_command, "run", full_disk)
    code, err = _run(capsys, "models")
    line = _one_error_line(err)
    assert code == 2 and "/data/out/timeline.png" in line and "disk is full" in line


def test_a_png_that_cannot_be_written_is_an_error_not_a_missing_file(tmp_path, monkeypatch):
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(MekitError, match=r"cannot write .*gone.*event_01_motion\.png"):
        analyze_module._write_png(tmp_path / "gone" / "event_01_motion.png", image)
    monkeypatch.setattr(analyze_module.cv2, "imwrite", lambda path, img: False)
    with pytest.raises(MekitError, match="writable folder with free space"):
        analyze_module._write_png(tmp_path / "event_01_motion.png", image)
    assert not (tmp_path / "event_01_motion.png").exists()


def test_an_edited_model_sidecar_is_refused_by_analyze(tmp_path, capsys, video, model):
    sidecar = tmp_path / "m.json"
    sidecar.write_text(model.read_text())
    (tmp_path / "m.safetensors").write_bytes(model.with_suffix(".safetensors").read_bytes())
    meta = json.loads(sidecar.read_text())
    meta["input"]["flow_method"] = "tvl1"
    sidecar.write_text(json.dumps(meta))
    code, err = _run(capsys, "analyze", str(video), "--model", str(sidecar), "--out", str(tmp_path))
    assert code == 2 and "modified after saving" in _one_error_line(err)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("empty.mp4", b"", "the file is empty"),
        ("notes.mp4", b"these are my notes, not a video\n" * 20, "not a video"),
        ("notes.mkv", b"these are my notes, not a video\n" * 20, "not a video"),
    ],
)
def test_analyze_names_the_real_cause_of_a_bad_video(tmp_path, capsys, model, name, content, words):
    bad = tmp_path / name
    bad.write_bytes(content)
    code, err = _run(capsys, "analyze", str(bad), "--model", str(model), "--out", str(tmp_path))
    line = _one_error_line(err)
    assert code == 2 and name in line and words in line
    assert "truncated" not in line  # the old message blamed a missing MP4 index
