from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mekit.data import casme2, casme3
from mekit.data.casme3 import SHEET_HEADER, load_casme3, looks_like
from mekit.data.corrections import load_corrections
from mekit.data.labels import load_scheme
from mekit.errors import MekitError

from .fixtures import write_casme2

SHEET = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
# Folder names as on disk: one copy writes spNo where the sheet says spNO.
RECORDINGS = {("spNO.1", "a"): range(1, 61), ("spNO.1", "b"): range(1, 41), ("spNo.2", "c"): 30}


def frames(folder: Path, numbers: range) -> None:
    folder.mkdir(parents=True)
    image = np.zeros((8, 8, 3), np.uint8)
    for n in numbers:
        cv2.imwrite(str(folder / f"{n}.jpg"), image)


def write_corpus(root: Path, rows: list[list], header=SHEET_HEADER, recordings=None) -> Path:
    base = root / "part_A" / "data" / "part_A"
    for (subject, clip), numbers in (recordings or RECORDINGS).items():
        numbers = range(1, numbers + 1) if isinstance(numbers, int) else numbers
        frames(base / subject / clip / "color", numbers)
        (base / subject / clip / "depth").mkdir()
    sheet = root / "part_A" / "annotation" / SHEET
    sheet.parent.mkdir(parents=True)
    pd.DataFrame(rows, columns=list(header)).to_excel(sheet, sheet_name="label", index=False)
    return sheet


def row(subject, filename, onset, apex, offset, emotion="disgust", au="AU4+AU10"):
    return [subject, filename, onset, apex, offset, au, "negative", emotion]


def test_reads_part_a_cutting_samples_from_recordings(tmp_path):
    write_corpus(
        tmp_path,
        [
            row("spNO.1", "a", 10, 15, 20),
            row("spNO.1", "a", 30, 33, 40, emotion="Happy", au="12"),  # a second ME of 'a'
            row("spNO.2", "C", 5, "", 9, emotion="surprise"),  # folder spNo.2/c, no apex
        ],
    )
    result = load_casme3(tmp_path)
    assert [s.id for s in result.samples] == [
        "casme3/spNO.1/a_10",
        "casme3/spNO.1/a_30",
        "casme3/spNO.2/c_5",
    ]
    first, second, third = result.samples
    color = tmp_path / "part_A" / "data" / "part_A" / "spNO.1" / "a" / "color"
    assert (first.onset, first.apex, first.offset) == (10, 15, 20)
    assert first.frame_numbers == tuple(range(10, 21)) and first.frame_path(15) == color / "15.jpg"
    assert first.subject == "spNO.1" and first.clip == "a_10" and first.video == color
    assert first.emotion == "disgust" and first.aus == "AU4+AU10" and first.fps == 30.0
    assert first.kind == "micro" and first.apex_source == "annotated"
    assert second.emotion == "happy" and second.aus == "12"
    assert (third.apex, third.apex_source) == (7, "midpoint")
    assert third.frames[0].parent.parent.parent.name == "spNo.2"
    assert result.skipped == () and result.videos == ()


def test_bad_rows_are_skipped_with_reasons(tmp_path):
    write_corpus(
        tmp_path,
        [
            row("spNO.1", "a", 20, 25, 18),  # offset before onset
            row("spNO.1", "a", 10, 25, 20),  # apex after offset
            row("spNO.1", "b", 30, 45, 50),  # apex beyond the last frame (40)
            row("spNO.1", "d", 1, 2, 3),  # no recording folder d
            row("spNO.9", "a", 1, 2, 3),  # no subject folder
            row("spNO.1", "a", 5, 6, ""),  # offset empty
            row("spNO.1", "b", 1, 2, 3),
            row("spNO.1", "b", 1, 2, 4),  # same subject, Filename and Onset as the row above
        ],
    )
    result = load_casme3(tmp_path)
    assert [s.id for s in result.samples] == ["casme3/spNO.1/b_1"]
    reasons = [(s.id, s.reason) for s in result.skipped]
    assert reasons[0][0] == "casme3/spNO.1/a_20" and "offset 18 is before onset 20" in reasons[0][1]
    assert f"({SHEET} sheet 'label' row 2)" in reasons[0][1]
    assert "apex 25 is outside onset..offset 10..20" in reasons[1][1]
    assert "apex frame 45 not in" in reasons[2][1]
    assert "recording folder" in reasons[3][1] and "missing" in reasons[3][1]
    assert "subject folder" in reasons[4][1]
    assert "Offset is empty" in reasons[5][1]
    assert "same subject, Filename and Onset as row 8" in reasons[6][1]


def test_renamed_column_and_missing_sheet_name_the_fix(tmp_path):
    with pytest.raises(MekitError, match="does not exist"):
        load_casme3(tmp_path / "nope")
    header = list(SHEET_HEADER)
    header[2] = "OnsetFrame"
    write_corpus(tmp_path, [row("spNO.1", "a", 10, 15, 20)], header=header)
    with pytest.raises(MekitError, match=r"lacks column\(s\) Onset; found .*OnsetFrame"):
        load_casme3(tmp_path)
    (tmp_path / "part_A" / "annotation" / SHEET).unlink()
    with pytest.raises(MekitError, match="--sheet"):
        load_casme3(tmp_path)


def test_corrections_keep_the_sheet_id(tmp_path):
    write_corpus(tmp_path, [row("spNO.1", "a", 20, 25, 18), row("spNO.1", "b", 1, 2, 3)])
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(
        "id,field,value,reason\n"
        "casme3/spNO.1/a_20,offset,28,offset before onset in the sheet\n"
        "casme3/spNO.1/b_1,exclude,,face occluded\n"
    )
    result = load_casme3(tmp_path, corrections=load_corrections(fixes))
    (sample,) = result.samples
    assert sample.id == "casme3/spNO.1/a_20" and sample.offset == 28
    assert sample.frame_numbers == tuple(range(20, 29))
    (skip,) = result.skipped
    assert "excluded by correction" in skip.reason and "face occluded" in skip.reason


def test_layout_detection(tmp_path):
    ours, theirs = tmp_path / "casme3", tmp_path / "casme2"
    write_corpus(ours, [row("spNO.1", "a", 10, 15, 20)])
    write_casme2(theirs)
    assert looks_like(ours) and not looks_like(theirs)
    assert not casme2.looks_like(ours)
    assert casme3.frames_dir(ours) == ours / "part_A" / "data" / "part_A"
    assert looks_like(ours / "part_A")


def test_megc2019_labels(tmp_path):
    emotions = ["happy", "surprise", "disgust", "fear", "anger", "sad", "others"]
    rows = [row("spNO.1", "a", 1 + 5 * i, 2 + 5 * i, 3 + 5 * i, e) for i, e in enumerate(emotions)]
    write_corpus(tmp_path, rows)
    scheme = load_scheme("megc2019")
    labels = [scheme.label_of(s) for s in load_casme3(tmp_path).samples]
    assert labels == ["positive", "surprise", "negative", "negative", "negative", "negative", None]
