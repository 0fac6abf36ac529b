from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mekit.data import casme2, mmew
from mekit.data.labels import load_scheme
from mekit.data.mmew import SHEET_HEADER, load_mmew, looks_like
from mekit.errors import MekitError

from .fixtures import write_casme2

CLIPS = {
    ("happiness", "S01_1"): range(1, 21),
    ("surprise", "S02_3"): range(1, 11),
    ("repression", "S01_4"): range(1, 9),  # the sheet says 'others' for this one
}


def frames(folder: Path, numbers: range) -> None:
    folder.mkdir(parents=True)
    image = np.zeros((8, 8, 3), np.uint8)
    for n in numbers:
        cv2.imwrite(str(folder / f"{n}.jpg"), image)


def write_corpus(root: Path, rows: list[list], header=SHEET_HEADER, clips=CLIPS, base=None):
    base = base or root / "Micro_Expression"
    for (emotion, clip), numbers in clips.items():
        frames(base / emotion / clip, numbers)
    sheet = root / "MMEW_Micro_Exp.xlsx"
    pd.DataFrame(rows, columns=list(header)).to_excel(sheet, index=False)
    return sheet


def row(subject, filename, onset, apex, offset, emotion, aus="AU12"):
    return [subject, filename, onset, apex, offset, aus, emotion, ""]


def test_reads_micro_clips(tmp_path):
    write_corpus(
        tmp_path,
        [
            row("S01", "S01_1", 2, 8, 15, "Happiness"),
            row(2, "S02_3", 1, "/", 10, "surprise"),  # no apex: the midpoint
            row("S01", "S01_4", 1, 4, 8, "others"),  # found by name in repression/
        ],
    )
    result = load_mmew(tmp_path)
    assert [s.id for s in result.samples] == ["mmew/S01/S01_1", "mmew/2/S02_3", "mmew/S01/S01_4"]
    first, second, third = result.samples
    assert (first.onset, first.apex, first.offset) == (2, 8, 15)
    assert first.frame_path(8) == tmp_path / "Micro_Expression" / "happiness" / "S01_1" / "8.jpg"
    assert first.frame_numbers == tuple(range(1, 21))
    assert first.emotion == "happiness" and first.aus == "AU12" and first.fps == 90.0
    assert first.subject == "S01" and first.clip == "S01_1" and first.kind == "micro"
    assert (second.apex, second.apex_source) == (5, "midpoint") and second.subject == "2"
    assert third.emotion == "others" and third.frames[0].parent.parent.name == "repression"
    assert result.skipped == ()


def test_bad_rows_are_skipped_with_reasons(tmp_path):
    write_corpus(
        tmp_path,
        [
            row("S01", "S01_1", 9, 5, 15, "happiness"),  # onset after apex
            row("S02", "S02_3", 1, 12, 14, "surprise"),  # apex beyond the last frame (10)
            row("S03", "S03_1", 1, 2, 3, "fear"),  # no clip folder
            row("S01", "S01_4", 1, 2, 8, "others"),
            row("S01", "S01_4", 1, 2, 8, "others"),  # the same clip twice
        ],
    )
    result = load_mmew(tmp_path)
    assert [s.id for s in result.samples] == ["mmew/S01/S01_4"]
    reasons = {s.id: s.reason for s in result.skipped[:3]}
    assert "apex 5 is outside onset..offset 9..15" in reasons["mmew/S01/S01_1"]
    assert "(MMEW_Micro_Exp.xlsx row 2)" in reasons["mmew/S01/S01_1"]
    assert "apex frame 12 not in" in reasons["mmew/S02/S02_3"]
    assert "fear/S03_1 is missing" in reasons["mmew/S03/S03_1"]
    assert "same Subject and Filename as row 5" in result.skipped[3].reason


def test_renamed_column_and_missing_sheet_name_the_fix(tmp_path):
    with pytest.raises(MekitError, match="does not exist"):
        load_mmew(tmp_path / "nope")
    header = list(SHEET_HEADER)
    header[6] = "Emotion"
    write_corpus(tmp_path, [row("S01", "S01_1", 2, 8, 15, "happiness")], header=header)
    with pytest.raises(MekitError, match=r"lacks column\(s\) Estimated Emotion; found .*Emotion"):
        load_mmew(tmp_path)
    (tmp_path / "MMEW_Micro_Exp.xlsx").unlink()
    with pytest.raises(MekitError, match="--sheet"):
        load_mmew(tmp_path)


def test_release_folder_below_root(tmp_path):
    base = tmp_path / "MMEW_Final" / "Micro_Expression"
    write_corpus(tmp_path, [row("S01", "S01_1", 2, 8, 15, "happiness")], base=base)
    assert mmew.frames_dir(tmp_path) == base
    assert [s.id for s in load_mmew(tmp_path).samples] == ["mmew/S01/S01_1"]


def test_layout_detection(tmp_path):
    ours, theirs = tmp_path / "mmew", tmp_path / "casme2"
    write_corpus(ours, [row("S01", "S01_1", 2, 8, 15, "happiness")])
    write_casme2(theirs)
    assert looks_like(ours) and not looks_like(theirs)
    assert not casme2.looks_like(ours)
    assert looks_like(ours / "Micro_Expression")  # the sheet in the parent folder


def test_megc2019_labels(tmp_path):
    emotions = ["happiness", "surprise", "anger", "disgust", "fear", "sadness", "others"]
    clips = {(e, f"S01_{i}"): range(1, 6) for i, e in enumerate(emotions)}
    rows = [row("S01", f"S01_{i}", 1, 3, 5, e) for i, e in enumerate(emotions)]
    write_corpus(tmp_path, rows, clips=clips)
    scheme = load_scheme("megc2019")
    labels = [scheme.label_of(s) for s in load_mmew(tmp_path).samples]
    assert labels == ["positive", "surprise", "negative", "negative", "negative", "negative", None]
