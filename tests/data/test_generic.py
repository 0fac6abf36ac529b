"""The generic folder format: samples.csv + frames folders, videos and precomputed inputs."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mekit.data import casme2, generic
from mekit.data.corrections import Correction, Corrections
from mekit.data.generic import load_generic
from mekit.data.labels import load_scheme
from mekit.errors import MekitError

from .fixtures import write_casme2

COLUMNS = [
    "subject",
    "clip",
    "label",
    "dataset",
    "onset",
    "apex",
    "offset",
    "aus",
    "fps",
    "frames",
    "video",
    "apex_image",
    "onset_image",
    "flow",
]


def write_frames(folder: Path, numbers) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        cv2.imwrite(str(folder / f"frame_{n:03d}.png"), np.full((8, 8), n % 256, np.uint8))
    return folder


def write_image(path: Path, value=128, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (8, 8) if channels == 1 else (8, 8, channels)
    cv2.imwrite(str(path), np.full(shape, value, np.uint8))
    return path


def write_npy(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array.astype(np.float32))
    return path


def write_csv(root: Path, rows: list[dict], columns=COLUMNS, name="samples.csv") -> Path:
    path = root / name
    pd.DataFrame([{c: r.get(c, "") for c in columns} for r in rows], columns=columns).to_csv(
        path, index=False
    )
    return path


def row(subject, clip, label, **cells) -> dict:
    return {"subject": subject, "clip": clip, "label": label, **cells}


def write_mixed(root: Path) -> Path:
    """Good rows of every kind, then one bad row per failure (rows 2.. of samples.csv)."""
    write_frames(root / "s01" / "c1", range(10))
    write_npy(root / "flows" / "s01_c2.npy", np.zeros((2, 16, 16)))
    write_image(root / "flows" / "s02_c1.png", channels=3)
    write_image(root / "apex" / "s02_c1.png")
    write_image(root / "apex" / "s02_c2.jpg")
    (root / "videos").mkdir()
    (root / "videos" / "s03_c1.mp4").write_bytes(b"not decoded by the loader")
    write_frames(root / "s04" / "c2", range(10))
    write_frames(root / "s04" / "c3", range(5))
    write_npy(root / "flows" / "bad.npy", np.zeros((4, 8, 8)))
    rows = [
        row("s01", "c1", "Happiness", onset=2, offset=8, aus="6+12", frames="s01/c1"),
        row(
            "s01", "c2", "negative", onset=10, apex=14, offset=20, fps=200, flow="flows/s01_c2.npy"
        ),
        row(
            "s02",
            "c1",
            "surprise",
            flow="flows/s02_c1.png",
            apex_image=str(root / "apex" / "s02_c1.png"),  # absolute paths are fine
        ),
        row("s02", "c2", "anger", dataset="SAMM", apex_image="apex/s02_c2.jpg"),
        row("s03", "c1", "disgust", onset=1, offset=9, video="videos/s03_c1.mp4"),
        # bad rows from here (row 7 on)
        row("s04", "c1", "happiness", frames="s04/c1"),  # folder missing
        row("s04", "c2", "happiness", onset=5, apex=3, offset=9, frames="s04/c2"),
        row("s04", "c3", "happiness", onset=0, apex=7, offset=7, frames="s04/c3"),  # 0..4 only
        row("s04", "c4", "happiness"),  # no input at all
        row("s04", "c5", "happiness", flow="flows/missing.npy"),
        row("s04", "c6", "happiness", onset=8, apex=3, flow="flows/s01_c2.npy"),
        row("s04", "c7", "happiness", flow="flows/bad.npy"),
        row("s01", "c1", "happiness", frames="s01/c1"),  # repeats row 2's id
    ]
    return write_csv(root, rows)


def test_mixed_rows_become_samples(tmp_path):
    write_mixed(tmp_path)
    result = load_generic(tmp_path)
    by_id = {s.id: s for s in result.samples}
    assert list(by_id) == [
        "generic/s01/c1",
        "generic/s01/c2",
        "generic/s02/c1",
        "samm/s02/c2",
        "generic/s03/c1",
    ]
    frames = by_id["generic/s01/c1"]
    assert frames.frame_numbers == tuple(range(10)) and frames.frame_path(5).name == "frame_005.png"
    assert (frames.onset, frames.apex, frames.offset, frames.apex_source) == (2, 5, 8, "midpoint")
    assert frames.emotion == "happiness" and frames.aus == "6+12" and frames.fps == 30.0
    assert frames.inputs == () and frames.video is None and frames.kind == "micro"
    assert (frames.dataset, frames.subject, frames.clip) == ("generic", "s01", "c1")

    npy = by_id["generic/s01/c2"]
    assert npy.frames == () and npy.frame_numbers == ()
    assert npy.inputs == (("flow", tmp_path / "flows" / "s01_c2.npy"),)
    assert (npy.onset, npy.apex, npy.offset, npy.apex_source) == (10, 14, 20, "annotated")
    assert npy.fps == 200.0 and npy.emotion == "negative"

    image = by_id["generic/s02/c1"]
    assert dict(image.inputs) == {
        "apex_image": tmp_path / "apex" / "s02_c1.png",
        "flow": tmp_path / "flows" / "s02_c1.png",
    }
    assert image.input_path("flow") == tmp_path / "flows" / "s02_c1.png"
    assert (image.onset, image.apex, image.offset, image.apex_source) == (0, 0, 0, "none")

    apex = by_id["samm/s02/c2"]
    assert apex.dataset == "samm" and apex.emotion == "anger"
    assert apex.input_path("apex_image").name == "s02_c2.jpg" and apex.input_path("flow") is None

    video = by_id["generic/s03/c1"]
    assert video.video == tmp_path / "videos" / "s03_c1.mp4" and video.frames == ()
    assert (video.onset, video.apex, video.offset, video.apex_source) == (1, 5, 9, "midpoint")


def test_bad_rows_are_skipped_with_reasons_and_row_numbers(tmp_path):
    write_mixed(tmp_path)
    result = load_generic(tmp_path)
    reasons = {s.id: s.reason for s in result.skipped}
    assert len(result.skipped) == 8
    assert "s04/c1 does not exist" in reasons["generic/s04/c1"]
    assert "(samples.csv row 7)" in reasons["generic/s04/c1"]
    assert "apex 3 is outside onset..offset 5..9" in reasons["generic/s04/c2"]
    assert "apex frame 7 not in" in reasons["generic/s04/c3"]
    assert "(frames 0..4)" in reasons["generic/s04/c3"]
    assert "no input" in reasons["generic/s04/c4"] and "row 10" in reasons["generic/s04/c4"]
    assert "flows/missing.npy does not exist" in reasons["generic/s04/c5"]
    assert "onset 8 is after apex 3" in reasons["generic/s04/c6"]
    assert "(4, 8, 8)" in reasons["generic/s04/c7"]
    assert "repeats the id of row 2" in reasons["generic/s01/c1"]


def test_a_missing_or_renamed_column_is_named_with_the_expected_header(tmp_path):
    columns = ["subject", "clip", "emotion", "flow"]  # 'label' renamed
    write_csv(tmp_path, [{"subject": "s1", "clip": "c1", "emotion": "x", "flow": "f.npy"}], columns)
    with pytest.raises(MekitError) as info:
        load_generic(tmp_path)
    message = str(info.value)
    assert "samples.csv" in message and "label" in message
    assert "found subject, clip, emotion, flow" in message
    assert generic.HEADER in message

    write_csv(
        tmp_path, [{"subject": "s1", "clip": "c1", "label": "x"}], ["subject", "clip", "label"]
    )
    with pytest.raises(MekitError, match="no input column.*frames, video, apex_image"):
        load_generic(tmp_path)


def test_wrong_root_names_samples_csv(tmp_path):
    with pytest.raises(MekitError, match="does not exist"):
        load_generic(tmp_path / "nope")
    with pytest.raises(MekitError, match="samples.csv"):
        load_generic(tmp_path)


def test_unknown_columns_are_ignored_with_a_warning(tmp_path, caplog):
    write_npy(tmp_path / "f.npy", np.zeros((3, 4, 4)))
    columns = ["Subject", "Clip", "Label", "Flow", "notes", "quality"]  # header case is free
    write_csv(
        tmp_path,
        [{"Subject": "s1", "Clip": "c1", "Label": "Surprise", "Flow": "f.npy", "notes": "x"}],
        columns,
    )
    with caplog.at_level(logging.WARNING, logger="mekit.data.generic"):
        result = load_generic(tmp_path)
    assert "ignoring unknown column(s) notes, quality" in caplog.text
    assert [s.id for s in result.samples] == ["generic/s1/c1"]
    assert result.samples[0].emotion == "surprise"


def test_excel_csv_quirks_and_row_numbers(tmp_path):
    # a UTF-8 BOM (Excel's "CSV UTF-8"), blank and comma-only lines, spaces after commas
    write_npy(tmp_path / "f.npy", np.zeros((2, 4, 4)))
    text = "subject,clip,label,flow\n\ns1, c1, Positive, f.npy\n,,,\ns1,c2,positive,g.npy\n"
    (tmp_path / "samples.csv").write_text(text, encoding="utf-8-sig")
    result = load_generic(tmp_path)
    assert [s.id for s in result.samples] == ["generic/s1/c1"]
    assert result.samples[0].input_path("flow") == tmp_path / "f.npy"
    assert "g.npy does not exist (samples.csv row 5)" in result.skipped[0].reason


def test_dataset_argument_sheet_path_and_fps(tmp_path):
    write_npy(tmp_path / "data" / "f.npy", np.zeros((2, 4, 4)))
    sheet = write_csv(
        tmp_path,
        [row("01", "a", "positive", flow="f.npy"), row("02", "b", "negative", flow="f.npy")],
        ["subject", "clip", "label", "flow"],
        name="other.csv",
    )
    result = load_generic(tmp_path / "data", sheet, dataset="MyData", fps=100)
    assert [s.id for s in result.samples] == ["mydata/01/a", "mydata/02/b"]
    assert all(s.fps == 100.0 for s in result.samples)
    assert result.samples[0].subject == "01"  # as written, leading zero kept
    # the CSV itself may be given as the corpus
    write_csv(tmp_path / "data", [row("01", "a", "positive", flow="f.npy")], COLUMNS)
    assert load_generic(tmp_path / "data" / "samples.csv").samples[0].id == "generic/01/a"


def test_corrections_apply_by_id_to_every_kind_of_row(tmp_path):
    write_mixed(tmp_path)
    corrections = Corrections(
        (
            Correction("generic/s01/c1", "apex", "3", "apex checked by eye"),
            Correction("generic/s01/c2", "apex", "12", "apex checked by eye"),
            Correction("samm/s02/c2", "exclude", "", "occluded face"),
            Correction("generic/s04/c1", "exclude", "", "frames lost"),  # folder missing
        ),
        source="fixes.csv",
    )
    result = load_generic(tmp_path, corrections=corrections)
    by_id = {s.id: s for s in result.samples}
    assert (by_id["generic/s01/c1"].apex, by_id["generic/s01/c1"].apex_source) == (3, "corrected")
    assert (by_id["generic/s01/c2"].apex, by_id["generic/s01/c2"].apex_source) == (12, "corrected")
    assert "samm/s02/c2" not in by_id
    reasons = {s.id: s.reason for s in result.skipped}
    assert "excluded by correction (fixes.csv): occluded face" in reasons["samm/s02/c2"]
    assert "excluded by correction (fixes.csv): frames lost" in reasons["generic/s04/c1"]
    assert {c[0] for c in result.corrections} == {
        "generic/s01/c1",
        "generic/s01/c2",
        "samm/s02/c2",
        "generic/s04/c1",
    }
    assert corrections.unmatched() == []


def test_looks_like_tells_the_layouts_apart(tmp_path):
    write_mixed(tmp_path / "generic")
    write_casme2(tmp_path / "casme2")
    assert generic.looks_like(tmp_path / "generic")
    assert not generic.looks_like(tmp_path / "casme2")
    assert not casme2.looks_like(tmp_path / "generic")
    assert casme2.looks_like(tmp_path / "casme2")


def test_megc2019_labels(tmp_path):
    write_mixed(tmp_path)
    scheme = load_scheme("megc2019")
    labels = {s.id: scheme.label_of(s) for s in load_generic(tmp_path).samples}
    assert labels == {
        "generic/s01/c1": "positive",  # happiness, through the '*' rows
        "generic/s01/c2": "negative",  # already a composite class
        "generic/s02/c1": "surprise",
        "samm/s02/c2": "negative",  # the row's dataset picks SAMM's mapping
        "generic/s03/c1": "negative",
    }


def _truncate(path: Path, keep: float = 1 / 3) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def test_truncated_or_corrupt_images_are_problems_naming_file_and_row(tmp_path, capsys):
    # A JPEG cut to a third of its bytes was trained on without a word ("0 skipped"):
    # OpenCV decodes it, filling the lost part with grey.
    from mekit.cli.main import main

    rng = np.random.default_rng(0)
    for name in ("good", "cut", "junk"):
        path = tmp_path / "apex" / f"{name}.jpg"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 255, (64, 64), dtype=np.uint8))
    _truncate(tmp_path / "apex" / "cut.jpg")
    assert cv2.imread(str(tmp_path / "apex" / "cut.jpg")) is not None  # why a check is needed
    (tmp_path / "apex" / "junk.jpg").write_bytes(b"not an image at all")
    flow = write_image(tmp_path / "flow" / "cut.png", channels=3)
    _truncate(flow, 0.5)
    write_csv(
        tmp_path,
        [
            row("s01", "a", "negative", apex_image="apex/good.jpg"),
            row("s01", "b", "negative", apex_image="apex/cut.jpg"),
            row("s02", "a", "positive", apex_image="apex/junk.jpg"),
            row("s02", "b", "positive", flow="flow/cut.png"),
        ],
    )
    result = load_generic(tmp_path)
    assert [s.id for s in result.samples] == ["generic/s01/a"]
    reasons = {s.id: s.reason for s in result.skipped}
    assert (
        "cut.jpg is truncated" in reasons["generic/s01/b"] and "row 3" in reasons["generic/s01/b"]
    )
    assert (
        "junk.jpg is not an image" in reasons["generic/s02/a"]
        and "row 4" in reasons["generic/s02/a"]
    )
    assert "cut.png" in reasons["generic/s02/b"] and "row 5" in reasons["generic/s02/b"]
    assert main(["data", "info", str(tmp_path), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "4 read, 1 usable" in out and "cut.jpg is truncated" in out
