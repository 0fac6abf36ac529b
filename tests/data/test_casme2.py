from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mekit.data.casme2 import SHEET_HEADER, load_casme2
from mekit.errors import MekitError

HEADER = list(SHEET_HEADER)


def write_corpus(
    root: Path,
    rows: list[list],
    frames: dict[tuple[str, str], range],
    prefix: str = "img",
    sub_root: Path | None = None,
) -> Path:
    base = sub_root or root
    for (subject, clip), numbers in frames.items():
        folder = base / subject / clip
        folder.mkdir(parents=True)
        for n in numbers:
            (folder / f"{prefix}{n}.jpg").write_bytes(b"jpeg")
    df = pd.DataFrame(rows, columns=[h or f"blank{i}" for i, h in enumerate(HEADER)])
    df.columns = [h or "" for h in HEADER]
    sheet = root / "CASME2-coding-test.xlsx"
    df.to_excel(sheet, index=False)
    return sheet


def test_reads_raw_layout_with_sheet_found_by_name(tmp_path):
    write_corpus(
        tmp_path,
        [
            ["01", "EP02_01f", "", 46, 59, 86, "", "4+10", "disgust"],
            [2, "EP01_11", "", 10, "/", 20, "", "12", "happiness"],
        ],
        {("sub01", "EP02_01f"): range(46, 87), ("sub02", "EP01_11"): range(10, 21)},
    )
    result = load_casme2(tmp_path)
    assert [s.id for s in result.samples] == ["casme2/sub01/EP02_01f", "casme2/sub02/EP01_11"]
    first, second = result.samples
    assert (first.onset, first.apex, first.offset) == (46, 59, 86)
    assert first.frame_path(59).name == "img59.jpg"
    assert first.emotion == "disgust" and first.aus == "4+10" and first.fps == 200.0
    # '/' apex -> midpoint, and the sample says so
    assert second.apex == 15 and second.apex_source == "midpoint"
    assert first.apex_source == "annotated"
    assert result.skipped == ()


def test_reads_cropped_layout(tmp_path):
    write_corpus(
        tmp_path,
        [["1", "EP02_01f", "", 1, 2, 3, "", "4", "others"]],
        {("sub01", "EP02_01f"): range(1, 4)},
        prefix="reg_img",
        sub_root=tmp_path / "Cropped",
    )
    sample = load_casme2(tmp_path).samples[0]
    assert sample.frames[0].name == "reg_img1.jpg"
    assert sample.frames[0].parent.parent.parent.name == "Cropped"


def test_bad_rows_are_skipped_with_reasons(tmp_path):
    write_corpus(
        tmp_path,
        [
            ["01", "EP01", "", 1, 9, 5, "", "1", "surprise"],  # apex outside onset..offset
            ["01", "EP02", "", 1, 2, 5, "", "1", "surprise"],  # offset frame 5 missing on disk
            ["01", "EP03", "", 1, 2, 3, "", "1", "surprise"],  # folder missing
            ["01", "EP04", "", 1, 2, 3, "", "1", "surprise"],
        ],
        {
            ("sub01", "EP01"): range(1, 6),
            ("sub01", "EP02"): range(1, 4),
            ("sub01", "EP04"): range(1, 4),
        },
    )
    result = load_casme2(tmp_path)
    assert [s.id for s in result.samples] == ["casme2/sub01/EP04"]
    reasons = {s.id.split("/")[-1]: s.reason for s in result.skipped}
    assert "apex 9 is outside onset..offset 1..5" in reasons["EP01"]
    assert "row 2" in reasons["EP01"]
    assert "offset frame 5 not in" in reasons["EP02"]
    assert "missing" in reasons["EP03"]


def test_missing_corpus_and_sheet_name_the_fix(tmp_path):
    with pytest.raises(MekitError, match="does not exist"):
        load_casme2(tmp_path / "nope")
    (tmp_path / "sub01").mkdir()
    with pytest.raises(MekitError, match="--sheet"):
        load_casme2(tmp_path)


def test_sheet_without_needed_column_is_named(tmp_path):
    (tmp_path / "sub01").mkdir()
    sheet = tmp_path / "coding.xlsx"
    pd.DataFrame({"Subject": ["01"], "Filename": ["EP01"]}).to_excel(sheet, index=False)
    with pytest.raises(MekitError, match="OnsetFrame"):
        load_casme2(tmp_path, sheet=sheet)


def test_frames_sorted_numerically(tmp_path):
    write_corpus(
        tmp_path,
        [["01", "EP01", "", 8, 9, 10, "", "1", "surprise"]],
        {("sub01", "EP01"): range(8, 11)},
    )
    sample = load_casme2(tmp_path).samples[0]
    assert sample.frame_numbers == (8, 9, 10)
    assert np.all(np.diff(sample.frame_numbers) > 0)


def test_reads_the_older_xls_sheet(tmp_path):
    xlwt = pytest.importorskip("xlwt")
    folder = tmp_path / "sub01" / "EP02_01f"
    folder.mkdir(parents=True)
    for n in range(46, 50):
        (folder / f"img{n}.jpg").write_bytes(b"jpeg")
    book = xlwt.Workbook()
    sheet = book.add_sheet("Sheet1")
    rows = [[h or "" for h in HEADER], ["01", "EP02_01f", "", 46, "/", 49, "", "4", "disgust"]]
    for r, values in enumerate(rows):
        for c, value in enumerate(values):
            sheet.write(r, c, value)
    book.save(str(tmp_path / "CASME2-coding-20120516.xls"))
    (sample,) = load_casme2(tmp_path).samples
    assert (sample.onset, sample.apex, sample.offset) == (46, 47, 49)
    assert sample.apex_source == "midpoint"


def test_a_duplicated_sheet_row_is_a_problem_naming_both_rows(tmp_path, capsys):
    # It passed `data info --strict` and then failed `train` blaming "two corpora".
    from mekit.cli.main import main

    rows = [["01", "EP01", "", 1, 2, 3, "", "1", "surprise"]] * 2
    write_corpus(tmp_path, rows, {("sub01", "EP01"): range(1, 4)})
    result = load_casme2(tmp_path)
    assert [s.id for s in result.samples] == ["casme2/sub01/EP01"]
    (dup,) = result.skipped
    assert "same Subject and Filename as row 2" in dup.reason and "row 3" in dup.reason
    assert main(["data", "info", str(tmp_path), "--labels", "raw", "--strict"]) == 1
    assert "same Subject and Filename as row 2" in capsys.readouterr().out
