import warnings

import pandas as pd
import pytest

from mekit.data.corpus_spec import Gathered, collect
from mekit.data.records import check_interval
from mekit.data.schema import RowError, Sample
from mekit.data.sheets import (
    cell,
    excel_engine,
    find_workbook,
    open_workbook,
    read_book,
    read_excel,
    select_columns,
)
from mekit.errors import MekitError


def test_read_book_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(MekitError, match=r"coding sheet .*nope\.xlsx not found; check --sheet"):
        read_book(tmp_path / "nope.xlsx", "coding sheet")
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"not a workbook")
    with pytest.raises(MekitError, match=r"cannot read coding sheet .*broken\.xlsx: "):
        read_book(broken, "coding sheet")


def test_find_workbook_picks_by_name_and_says_what_is_missing(tmp_path):
    for name in ("a_v1.xlsx", "a_v2.xlsx", "~$a_v3.xlsx", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert find_workbook([tmp_path], lambda n: "a_v" in n, missing="-").name == "a_v1.xlsx"
    newest = find_workbook([tmp_path], lambda n: "a_v" in n, missing="-", newest=True)
    assert newest.name == "a_v2.xlsx"  # never Excel's ~$ lock file
    with pytest.raises(MekitError, match="no sheet here; pass --sheet"):
        find_workbook(
            [tmp_path, tmp_path / "absent"],
            lambda n: "b" in n,
            missing="no sheet here; pass --sheet",
        )


def test_select_columns_matches_spellings_and_names_what_is_missing():
    df = pd.DataFrame({"onset frame": ["3"], "SUBJECT": ["1"], "action units": ["4"]})
    out = select_columns(df, ("Subject", "Onset Frame", "AU"), "sheet x", {"actionunits": "AU"})
    assert list(out.columns) == ["Subject", "Onset Frame", "AU"]
    with pytest.raises(MekitError, match=r"sheet x lacks column\(s\) Apex; found onset frame"):
        select_columns(df, ("Subject", "Apex"), "sheet x")


def test_cell_reads_empty_and_float_numbers_as_the_sheet_means_them():
    assert [cell(v) for v in (None, float("nan"), " nan ", "NaT", "12.0", " 4+10 ")] == [
        "",
        "",
        "",
        "",
        "12",
        "4+10",
    ]


def _sample(id_: str) -> Sample:
    return Sample(id_, "d", "s", "c", 1, 2, 3, "e", "", 30.0, (), ())


def test_collect_skips_bad_and_repeated_rows_with_their_row():
    def build(line, record):
        if record["bad"]:
            raise RowError(record["id"], "broken")
        return _sample(record["id"])

    rows = [(2, {"id": "a", "bad": ""}), (3, {"id": "b", "bad": "x"}), (4, {"id": "a", "bad": ""})]
    samples, skipped = collect(rows, build, lambda line: f"s.xlsx row {line}", "repeats row {row}")
    assert [s.id for s in samples] == ["a"]
    assert [(s.id, s.reason) for s in skipped] == [
        ("b", "broken (s.xlsx row 3)"),
        ("a", "repeats row 2 (s.xlsx row 4)"),
    ]


def test_an_event_sample_that_fails_keeps_the_event_and_says_so():
    out = Gathered()

    def fail():
        raise RowError("v/e1", "no image frames in v")

    out.add_event_sample(5, "v/e1", fail, corrected=False, repeat="-", where="s row 5")
    out.add_event_sample(6, "v/e2", lambda: _sample("v/e2"), corrected=True, repeat="-", where="")
    assert out.skipped[0].reason == "no image frames in v; the event is kept for spotting (s row 5)"
    assert [(s.id, s.apex_source) for s in out.samples] == [("v/e2", "corrected")]


def test_check_interval_reasons():
    check_interval("x", 1, None, 5)
    with pytest.raises(RowError, match="offset 1 is before onset 5"):
        check_interval("x", 5, None, 1)
    with pytest.raises(RowError, match=r"apex 9 is outside onset..offset 1..5; fix the sheet"):
        check_interval("x", 1, 9, 5)


def test_an_old_xls_workbook_is_read_with_calamine_not_the_deprecated_xlrd(tmp_path):
    xlwt = pytest.importorskip("xlwt")
    pytest.importorskip("python_calamine")
    book = xlwt.Workbook()
    for name in ("notes", "label"):
        sheet = book.add_sheet(name)
        for c, value in enumerate(["Subject", "Onset", name]):
            sheet.write(0, c, value)
        for c, value in enumerate(["spNO.1", 46, 2.5]):
            sheet.write(1, c, value)
    path = tmp_path / "old.xls"
    book.save(str(path))
    assert excel_engine(path) == "calamine"
    assert excel_engine(tmp_path / "missing.xlsx") is None  # pandas says it is missing
    with open_workbook(path) as book:
        assert book.sheet_names == ["notes", "label"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' xlrd deprecation would fail here
        tables = read_book(path, "label sheet")
        label = read_excel(path, sheet_name="label", dtype=str)
    notes = [["Subject", "Onset", "notes"], ["spNO.1", "46", "2.5"]]
    assert tables["notes"].values.tolist() == notes
    assert label.to_dict("records") == [{"Subject": "spNO.1", "Onset": "46", "label": "2.5"}]


def test_a_workbook_saved_under_the_other_suffix_still_reads(tmp_path):
    xlwt = pytest.importorskip("xlwt")
    pytest.importorskip("python_calamine")
    book = xlwt.Workbook()
    book.add_sheet("old").write(0, 0, "Subject")
    book.save(str(tmp_path / "old_inside.xlsx"))
    new = pd.DataFrame({"Subject": ["01"]})
    new.to_excel(tmp_path / "new_inside.xls", index=False, engine="openpyxl")  # xlsx inside
    assert excel_engine(tmp_path / "old_inside.xlsx") == "calamine"
    assert excel_engine(tmp_path / "new_inside.xls") == "openpyxl"
    with open_workbook(tmp_path / "old_inside.xlsx") as book:
        assert book.sheet_names == ["old"]
    assert read_excel(tmp_path / "new_inside.xls", dtype=str).to_dict("records") == [
        {"Subject": "01"}
    ]
