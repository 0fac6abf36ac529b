"""The one annotation-sheet reader every corpus loader uses (.xlsx, .xls, .csv).

A corpus describes its sheet as data (`what` it is called in messages, the columns it needs
and their other spellings); this module finds the workbook, reads it, finds the header row
and renames the columns to their official spelling. Every failure is a `MekitError` that
names the file and says what to do (`--sheet PATH`, the official column name).
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mekit.errors import MekitError

log = logging.getLogger(__name__)

WORKBOOK_SUFFIXES = (".xlsx", ".xls", ".xlsm")
SEARCH_ROWS = 30  # how far down a sheet a header row is looked for


def norm(name: object) -> str:
    """A column or file name as compared: lower-case letters only ("Onset Frame" -> onsetframe)."""
    return re.sub(r"[^a-z]", "", str(name).lower())


def cell(value: object) -> str:
    """A sheet cell as stripped text: "" for an empty cell, "12" for a number read as 12.0."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = str(value).strip()
    if text.lower() in ("nan", "none", "nat"):
        return ""
    return re.sub(r"^(\d+)\.0$", r"\1", text)


OLE2_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")  # an old binary .xls workbook


def excel_engine(path: Path) -> str | None:
    """The pandas engine for the workbook `path`, chosen by its content (as pandas does: a
    workbook saved under the other suffix still reads) and named so pandas' changing defaults
    do not change how a sheet reads: openpyxl for an .xlsx/.xlsm workbook; calamine for an old
    binary .xls (pandas deprecates xlrd, its default there) where python-calamine is
    installed; pandas' own choice for anything else (and for a file it cannot open)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(OLE2_MAGIC))
        if head == OLE2_MAGIC:
            import python_calamine  # noqa: F401

            return "calamine"
        with zipfile.ZipFile(path) as book:
            if "xl/workbook.xml" in book.namelist():
                return "openpyxl"
    except (OSError, ImportError, zipfile.BadZipFile):
        pass
    return None


def read_excel(path: Path, **kwargs: Any) -> Any:
    """`pd.read_excel(path, **kwargs)` with the engine of `excel_engine`."""
    return pd.read_excel(path, engine=excel_engine(path), **kwargs)


def open_workbook(path: Path) -> pd.ExcelFile:
    """The workbook `path`, opened once with the engine of `excel_engine`, for reading its
    sheet names and then sheets (`with open_workbook(p) as book: pd.read_excel(book, ...)`)."""
    return pd.ExcelFile(path, engine=excel_engine(path))


def read_book(
    path: Path,
    what: str,
    read: Callable[[Path], Any] | None = None,
    *,
    fix: str = "check --sheet",
) -> Any:
    """`read(path)` (default: every sheet of a workbook, cells as text, no header), with the
    one place that turns a missing, corrupt or wrong file into a MekitError naming it (and,
    for a missing one, the `fix`)."""
    read = read or (lambda p: read_excel(p, sheet_name=None, header=None, dtype=str))
    try:
        return read(path)
    except FileNotFoundError:
        raise MekitError(f"{what} {path} not found; {fix}") from None
    except Exception as e:  # calamine/openpyxl/pandas raise many kinds for corrupt or wrong files
        raise MekitError(f"cannot read {what} {path}: {e}") from None


def workbooks(folder: Path) -> list[Path]:
    """The spreadsheet files of `folder` (not Excel's `~$` lock files)."""
    if not folder.is_dir():
        return []
    return [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in WORKBOOK_SUFFIXES and not p.name.startswith("~$") and p.is_file()
    ]


def find_workbook(
    folders: Iterable[Path], match: Callable[[str], bool], *, missing: str, newest: bool = False
) -> Path:
    """The first folder's workbook whose name `match`es (by sorted name; the last one, e.g. a
    _v2 over a _v1, when `newest`); a warning names the choice when there are several, and
    a MekitError saying `missing` is raised when no folder has one."""
    for folder in folders:
        hits = sorted(p for p in workbooks(folder) if match(p.name))
        if hits:
            pick = hits[-1] if newest else hits[0]
            if len(hits) > 1:
                log.warning("several matching sheets in %s; using %s", folder, pick.name)
            return pick
    raise MekitError(missing)


def renamed_columns(columns: Iterable[object], spellings: Mapping[str, str]) -> dict[object, str]:
    """{column as found: official name} for the columns whose `norm` is in `spellings`
    (normalised spelling -> official name); the first column of each name wins."""
    out: dict[object, str] = {}
    for column in columns:
        name = spellings.get(norm(column))
        if name is not None and name not in out.values():
            out[column] = name
    return out


def select_columns(
    df: pd.DataFrame,
    required: tuple[str, ...],
    where: str,
    aliases: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """`df` cut to the `required` columns in their official spelling (matched by `norm`, or
    by `aliases`: normalised spelling -> official name), empty rows dropped; a MekitError
    names the missing columns and those found."""
    spellings = {norm(c): c for c in required}
    for alias, name in (aliases or {}).items():
        spellings.setdefault(alias, name)
    renamed = renamed_columns(df.columns, spellings)
    missing = [c for c in required if c not in renamed.values()]
    if missing:
        raise MekitError(
            f"{where} lacks column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns))}"
        )
    return df.rename(columns=renamed)[list(required)].dropna(how="all")


def records(df: pd.DataFrame) -> Iterator[tuple[int, dict[str, str]]]:
    """(spreadsheet row, {column: cell text}) of a table read with its header on row 1."""
    for index, row in zip(df.index, df.itertuples(index=False), strict=True):
        yield int(index) + 2, {str(c): cell(v) for c, v in zip(df.columns, row, strict=True)}


@dataclass(frozen=True)
class Table:
    """An annotation table found in a workbook: rows as {column: text} with their sheet row."""

    path: Path
    sheet_name: str
    header_row: int  # 1-based, as a spreadsheet program shows it
    rows: tuple[tuple[int, dict[str, str]], ...]

    def where(self, row: int) -> str:
        return f"{self.path.name} sheet '{self.sheet_name}' row {row}"


def read_table(
    path: Path, required: tuple[str, ...], *, prefer_sheet: str | None = None, what: str
) -> Table:
    """The table whose header row holds every column in `required` (matched ignoring case,
    spaces and punctuation), searched in the first SEARCH_ROWS rows of each sheet of `path`
    (`prefer_sheet` first), for sheets with notes above the table. Cells come back as text."""
    sheets = read_book(path, what)
    names = sorted(sheets, key=lambda n: str(n).lower() != (prefer_sheet or "").lower())
    wanted = {norm(c): c for c in required}
    best: tuple[int, str, int, list[str]] | None = None  # (matches, sheet, row index, cells)
    for name in names:
        df = sheets[name]
        for i in range(min(SEARCH_ROWS, len(df))):
            cells = [cell(c) for c in df.iloc[i].tolist()]
            found = {norm(c) for c in cells} & set(wanted)
            if len(found) == len(wanted):
                return _table(path, str(name), i, cells, df)
            if len(found) >= 2 and (best is None or len(found) > best[0]):
                best = (len(found), str(name), i, cells)
    if best is None:
        raise MekitError(
            f"{path}: no header row with the columns {', '.join(required)} in the first "
            f"{SEARCH_ROWS} rows of its sheet(s) {', '.join(map(str, sheets))}; is this the "
            f"{what}? Pass the right file with --sheet"
        )
    _, name, i, cells = best
    present = {norm(c) for c in cells}
    missing = [c for c in required if norm(c) not in present]
    raise MekitError(
        f"{what} {path} (sheet '{name}', header on row {i + 1}) lacks column(s) "
        f"{', '.join(missing)}; found {', '.join(c for c in cells if c)}. "
        "Rename the column back to its official name"
    )


def _table(path: Path, sheet_name: str, i: int, header: list[str], df: pd.DataFrame) -> Table:
    columns: dict[int, str] = {}
    for j, name in enumerate(header):
        if name and name not in columns.values():
            columns[j] = name
    rows = []
    for k in range(i + 1, len(df)):
        values = df.iloc[k].tolist()
        record = {name: cell(values[j]) for j, name in columns.items()}
        if any(record.values()):
            rows.append((k + 1, record))
    return Table(path, sheet_name, i + 1, tuple(rows))


def canonical(record: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """`record` keyed by the official spelling of `names` (the sheet's own may differ in case)."""
    by_norm = {norm(k): v for k, v in record.items()}
    return {name: by_norm.get(norm(name), "") for name in names}
