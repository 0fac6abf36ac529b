from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mekit.data import casme2, fer2013
from mekit.data.fer2013 import COLUMNS, EMOTIONS, load_fer2013
from mekit.data.labels import load_scheme
from mekit.errors import MekitError


def pixels(seed: int, count: int = 48 * 48) -> str:
    values = np.random.default_rng(seed).integers(0, 256, count)
    return " ".join(map(str, values))


def write_fer(root: Path, rows: list[tuple], columns=COLUMNS, name="fer2013.csv") -> Path:
    """fer2013.csv as released: header emotion,pixels,Usage; one face per row."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


GOOD = [
    (0, pixels(0), "Training"),
    (3, pixels(1), "Training"),
    (6, pixels(2), "PublicTest"),
    (4, pixels(3), "PrivateTest"),
]


def write_casme2(root: Path) -> None:
    (root / "sub01" / "EP01").mkdir(parents=True)
    cv2.imwrite(str(root / "sub01" / "EP01" / "img1.jpg"), np.zeros((8, 8), np.uint8))
    header = [h or "" for h in casme2.SHEET_HEADER]
    pd.DataFrame([["01", "EP01", "", 1, 1, 1, "", "4", "disgust"]], columns=header).to_excel(
        root / "CASME2-coding-x.xlsx", index=False
    )


def test_reads_the_official_csv(tmp_path):
    write_fer(tmp_path / "fer2013", GOOD)
    data = load_fer2013(tmp_path)  # found in the fer2013/ subfolder
    assert len(data) == 4 and data.images.shape == (4, 48, 48) and data.images.dtype == np.uint8
    assert data.ids == ("fer2013/00000", "fer2013/00001", "fer2013/00002", "fer2013/00003")
    assert data.labels == ("anger", "happiness", "neutral", "sadness")
    assert data.split == ("Training", "Training", "PublicTest", "PrivateTest")
    assert data.subjects == ("",) * 4 and data.dataset == "fer2013" and data.skipped == ()
    expected = np.array(pixels(1).split(), dtype=np.uint8).reshape(48, 48)
    assert np.array_equal(data.images[1], expected)  # row-major 48x48
    assert data.label_names() == ("anger", "happiness", "neutral", "sadness")


def test_code_names_match_the_micro_corpora():
    assert EMOTIONS == ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")


def test_usage_filter_keeps_row_ids(tmp_path):
    path = write_fer(tmp_path, GOOD)
    test = load_fer2013(path, usage=["PublicTest", "privatetest"])
    assert test.ids == ("fer2013/00002", "fer2013/00003")
    assert load_fer2013(path, usage="Training").labels == ("anger", "happiness")
    with pytest.raises(MekitError, match="usage test not in .*PrivateTest, PublicTest, Training"):
        load_fer2013(path, usage="Test")


def test_bad_rows_are_skipped_with_their_line(tmp_path):
    path = write_fer(
        tmp_path,
        [
            (3, pixels(0), "Training"),
            (7, pixels(1), "Training"),  # emotion out of range
            (2, pixels(2, count=2303), "Training"),  # one pixel short
            (1, pixels(3) + " x", "Training"),  # not a number
            (5, pixels(4), "Training"),
            ("", pixels(5), "Training"),  # no emotion
            (4, "300 " + pixels(6, count=2303), "Training"),  # out of 0..255
        ],
    )
    data = load_fer2013(path)
    assert data.ids == ("fer2013/00000", "fer2013/00004")
    reasons = {s.id: s.reason for s in data.skipped}
    assert "emotion '7' is not a code 0..6 (fer2013.csv line 3)" == reasons["fer2013/00001"]
    assert "2303 values, expected 2304" in reasons["fer2013/00002"]
    assert "line 4" in reasons["fer2013/00002"]
    assert "not all whole numbers" in reasons["fer2013/00003"]
    assert "emotion ''" in reasons["fer2013/00005"]
    assert "outside 0..255" in reasons["fer2013/00006"]


def test_renamed_column_is_named_with_the_columns_found(tmp_path):
    path = write_fer(tmp_path, GOOD, columns=("emotion", "pixel", "Usage"))
    with pytest.raises(MekitError, match=r"lacks column\(s\) pixels.*found emotion, pixel, Usage"):
        load_fer2013(path)


def test_kaggle_icml_csv_and_csv_without_usage(tmp_path):
    # icml_face_data.csv: header "emotion, Usage, pixels" (spaces before the names)
    icml = [(e, u, p) for e, p, u in GOOD]
    write_fer(
        tmp_path / "k", icml, columns=("emotion", " Usage", " pixels"), name="icml_face_data.csv"
    )
    data = load_fer2013(tmp_path / "k")
    assert data.labels == ("anger", "happiness", "neutral", "sadness")
    assert data.split[2] == "PublicTest"
    train = write_fer(
        tmp_path / "c",
        [(e, p) for e, p, _ in GOOD],
        columns=("emotion", "pixels"),
        name="train.csv",
    )
    assert load_fer2013(train).split == ("",) * 4
    with pytest.raises(MekitError, match="no Usage column"):
        load_fer2013(train, usage="Training")


def test_resizes_when_asked(tmp_path):
    data = load_fer2013(write_fer(tmp_path, GOOD[:1]), size=24)
    assert data.images.shape == (1, 24, 24)


def write_folders(root: Path) -> None:
    """The image-folder re-release: train/{angry,...}/*.jpg and test/..."""
    for split, names in {
        "train": ["angry", "happy", "sad", "neutral"],
        "test": ["angry", "happy", "sad", "surprise"],
    }.items():
        for i, name in enumerate(names):
            (root / split / name).mkdir(parents=True)
            cv2.imwrite(
                str(root / split / name / f"im{i}.jpg"), np.full((48, 48), 10 * i, np.uint8)
            )


def test_reads_the_image_folder_release(tmp_path):
    write_folders(tmp_path)
    data = load_fer2013(tmp_path)
    assert len(data) == 8 and data.images.shape == (8, 48, 48)
    assert data.ids[0] == "fer2013/test/anger/im0"
    assert set(data.labels) == {"anger", "happiness", "sadness", "neutral", "surprise"}
    assert data.split.count("train") == 4 and data.split.count("test") == 4
    assert load_fer2013(tmp_path, usage="train").split == ("train",) * 4
    with pytest.raises(MekitError, match="its split folders are test, train"):
        load_fer2013(tmp_path, usage="PublicTest")


def test_wrong_path_names_what_was_expected(tmp_path):
    with pytest.raises(MekitError, match="does not exist"):
        load_fer2013(tmp_path / "missing.csv")
    with pytest.raises(MekitError, match="expected fer2013.csv"):
        load_fer2013(tmp_path)


def test_looks_like_is_not_confused_with_casme2(tmp_path):
    write_fer(tmp_path / "fer", GOOD)
    write_folders(tmp_path / "folders")
    write_casme2(tmp_path / "casme")
    assert fer2013.looks_like(tmp_path / "fer") and fer2013.looks_like(tmp_path / "folders")
    assert not fer2013.looks_like(tmp_path / "casme")
    assert not casme2.looks_like(tmp_path / "fer") and not casme2.looks_like(tmp_path / "folders")
    assert not fer2013.looks_like(tmp_path / "fer" / "fer2013.csv")  # a file is not a corpus root


def test_megc2019_labels(tmp_path):
    data = load_fer2013(write_fer(tmp_path, GOOD)).relabel(load_scheme("megc2019"))
    assert data.labels == ("negative", "positive", "negative")  # neutral is left out
    assert [s.id for s in data.skipped] == ["fer2013/00002"]
