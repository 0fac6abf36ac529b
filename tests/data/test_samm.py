from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mekit.data import casme2, samm, samm_lv
from mekit.data.corrections import Correction, Corrections
from mekit.data.labels import load_scheme
from mekit.data.samm import SHEET_HEADER, load_samm
from mekit.errors import MekitError

from .fixtures import write_casme2

JPEG = cv2.imencode(".jpg", np.full((8, 8), 128, np.uint8))[1].tobytes()
NOTES = 13  # rows of notes above the header in the released sheet (header on row 14)
FIRST_ROW = NOTES + 2  # the sheet row of the first annotation


def write_samm(
    root: Path,
    rows: list[list],
    clips: dict[tuple[str, str], range],
    *,
    digits: int = 5,
    notes: int = NOTES,
    header: tuple[str, ...] = SHEET_HEADER,
    sheet_dir: Path | None = None,
) -> Path:
    """SAMM's layout: ROOT/006/006_1_2/006_05562.jpg and SAMM_Micro_FACS_Codes_v2.xlsx with a
    block of notes (some rows blank) above the header row."""
    for (subject, clip), numbers in clips.items():
        folder = root / subject / clip
        folder.mkdir(parents=True)
        for n in numbers:
            (folder / f"{subject}_{n:0{digits}d}.jpg").write_bytes(JPEG)
    preamble = [["SAMM micro-movement FACS codes (release v2)"]]
    preamble += [[f"note {i}: terms of use"] if i % 3 else [None] for i in range(1, notes)]
    width = len(header)
    table = pd.DataFrame([r + [None] * (width - len(r)) for r in preamble + [list(header)] + rows])
    sheet = (sheet_dir or root) / "SAMM_Micro_FACS_Codes_v2.xlsx"
    table.to_excel(sheet, index=False, header=False, sheet_name="MICRO_ONLY")
    return sheet


def row(subject, clip, onset, apex, offset, aus="12", emotion="Happiness"):
    return [
        subject,
        clip,
        1,
        onset,
        apex,
        offset,
        offset - onset,
        "Micro - 1/2",
        aus,
        emotion,
        1,
        "",
    ]


def test_reads_official_layout(tmp_path):
    write_samm(
        tmp_path,
        [
            row(6, "006_1_2", 5562, 5566, 5570, "4+7", "Anger"),
            row(7, "007_3_1", 120, -1, 130, "R12", "Happiness"),
        ],
        {("006", "006_1_2"): range(5562, 5571), ("007", "007_3_1"): range(120, 131)},
    )
    result = load_samm(tmp_path)
    assert [s.id for s in result.samples] == ["samm/006/006_1_2", "samm/007/007_3_1"]
    first, second = result.samples
    assert (first.subject, first.clip, first.dataset) == ("006", "006_1_2", "samm")
    assert (first.onset, first.apex, first.offset) == (5562, 5566, 5570)
    assert first.frame_path(5566).name == "006_05566.jpg"
    assert first.frame_numbers == tuple(range(5562, 5571))
    assert first.emotion == "anger" and first.aus == "4+7" and first.fps == 200.0
    assert first.apex_source == "annotated" and first.kind == "micro" and first.video is None
    # apex -1 -> midpoint, and the sample says so
    assert second.apex == 125 and second.apex_source == "midpoint"
    assert result.skipped == () and result.videos == ()


def test_four_digit_frame_names_and_fewer_notes_rows(tmp_path):
    write_samm(
        tmp_path,
        [row("006", "006_1_2", 10, 12, 14)],
        {("006", "006_1_2"): range(10, 15)},
        digits=4,
        notes=12,
    )
    sample = load_samm(tmp_path).samples[0]
    assert sample.frame_path(12).name == "006_0012.jpg"


def test_sheet_in_parent_folder(tmp_path):
    root = tmp_path / "SAMM"
    root.mkdir()
    write_samm(root, [row(6, "006_1_2", 1, 2, 3)], {("006", "006_1_2"): range(1, 4)},
               sheet_dir=tmp_path)  # fmt: skip
    assert [s.id for s in load_samm(root).samples] == ["samm/006/006_1_2"]


def test_bad_rows_are_skipped_with_reasons(tmp_path):
    write_samm(
        tmp_path,
        [
            row(6, "006_1_1", 1, 2, 5),  # clip folder missing
            row(6, "006_1_2", 5, 3, 9),  # onset after apex
            row(6, "006_1_3", 1, 12, 12),  # apex (and offset) beyond the last frame 9
            row(6, "006_1_4", 1, 2, 9),
        ],
        {
            ("006", "006_1_2"): range(1, 10),
            ("006", "006_1_3"): range(1, 10),
            ("006", "006_1_4"): range(1, 10),
        },
    )
    result = load_samm(tmp_path)
    assert [s.id for s in result.samples] == ["samm/006/006_1_4"]
    reasons = {s.id.split("/")[-1]: s.reason for s in result.skipped}
    assert "clip folder" in reasons["006_1_1"] and "missing" in reasons["006_1_1"]
    assert f"row {FIRST_ROW}" in reasons["006_1_1"]
    assert "apex 3 is outside onset..offset 5..9" in reasons["006_1_2"]
    assert f"row {FIRST_ROW + 1}" in reasons["006_1_2"]
    assert "apex frame 12 not in" in reasons["006_1_3"]
    assert "SAMM_Micro_FACS_Codes_v2.xlsx" in reasons["006_1_3"]


def test_corrections_apply_by_id(tmp_path):
    write_samm(tmp_path, [row(6, "006_1_2", 5, 3, 9)], {("006", "006_1_2"): range(1, 10)})
    fix = Corrections((Correction("samm/006/006_1_2", "apex", "7", "apex typo"),))
    sample = load_samm(tmp_path, corrections=fix).samples[0]
    assert sample.apex == 7 and sample.apex_source == "corrected"
    assert fix.applied == [("samm/006/006_1_2", "apex", "3", "7", "apex typo")]


def test_renamed_column_is_named(tmp_path):
    header = tuple("Apex" if h == "Apex Frame" else h for h in SHEET_HEADER)
    write_samm(tmp_path, [row(6, "006_1_2", 1, 2, 3)], {("006", "006_1_2"): range(1, 4)},
               header=header)  # fmt: skip
    with pytest.raises(MekitError, match="Apex Frame") as err:
        load_samm(tmp_path)
    assert "row 14" in str(err.value) and "Onset Frame" in str(err.value)  # lists what it found


def test_sheet_without_header_row(tmp_path):
    (tmp_path / "006").mkdir()
    sheet = tmp_path / "SAMM_other.xlsx"
    pd.DataFrame([["just"], ["notes"]]).to_excel(sheet, index=False, header=False)
    with pytest.raises(MekitError, match="no header row"):
        load_samm(tmp_path)


def test_missing_corpus_and_sheet_name_the_fix(tmp_path):
    with pytest.raises(MekitError, match="does not exist"):
        load_samm(tmp_path / "nope")
    (tmp_path / "006").mkdir()
    with pytest.raises(MekitError, match="--sheet"):
        load_samm(tmp_path)


def test_looks_like_tells_layouts_apart(tmp_path):
    own, other, long = tmp_path / "samm", tmp_path / "casme2", tmp_path / "lv"
    for folder in (own, other, long):
        folder.mkdir()
    write_samm(own, [row(6, "006_1_2", 1, 2, 3)], {("006", "006_1_2"): range(1, 4)})
    write_casme2(other)
    (long / "006_1").mkdir()
    pd.DataFrame([["x"]]).to_excel(long / "SAMM_LongVideos_V3_Release.xlsx", index=False)
    assert samm.looks_like(own)
    assert not samm.looks_like(other) and not samm.looks_like(long)
    assert not casme2.looks_like(own) and not samm_lv.looks_like(own)


def test_megc2019_labels(tmp_path):
    write_samm(
        tmp_path,
        [
            row(6, "006_1_1", 1, 2, 3, emotion="Happiness"),
            row(6, "006_1_2", 1, 2, 3, emotion="Contempt"),
            row(6, "006_1_3", 1, 2, 3, emotion="Surprise"),
            row(6, "006_1_4", 1, 2, 3, emotion="Other"),
        ],
        {("006", f"006_1_{i}"): range(1, 4) for i in range(1, 5)},
    )
    scheme = load_scheme("megc2019")
    labels = [scheme.label_of(s) for s in load_samm(tmp_path).samples]
    assert labels == ["positive", "negative", "surprise", None]


def test_a_duplicated_sheet_row_is_skipped_naming_both_rows(tmp_path):
    write_samm(tmp_path, [row(6, "006_1_2", 10, 12, 14)] * 2, {("006", "006_1_2"): range(10, 15)})
    result = load_samm(tmp_path)
    assert [s.id for s in result.samples] == ["samm/006/006_1_2"]
    (dup,) = result.skipped
    assert "Filename repeats row" in dup.reason and "delete one" in dup.reason
