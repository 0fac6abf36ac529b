from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mekit.data import smic
from mekit.data.corrections import load_corrections
from mekit.data.labels import load_scheme
from mekit.data.smic_e import SHEET_HEADER, load_smic_e, looks_like
from mekit.errors import MekitError

from .fixtures import write_casme2

IMAGE = np.full((8, 8, 3), 128, np.uint8)
RAW = "SMIC-E_raw image"


def row(subject, filename, onset, offset, emotion="", first="", *, second=("", ""), **more):
    values = {
        "Subject": subject,
        "Filename": filename,
        "OnsetF": onset,
        "OffsetF": offset,
        "Onset2F": second[0],
        "Offset2F": second[1],
        "FirstF": first,
        "Emotion": emotion,
    }
    values.update(more)
    return values


def write_sheet(path: Path, rows: list[dict], header=SHEET_HEADER, sheet_name="Sheet1") -> Path:
    """The annotation sheet as released: header on row 1, blank-headed separator columns."""
    names = [h or "" for h in header]
    extra = [k for r in rows for k in r if k not in names]
    table = [[r.get(h, "") if h else "" for h in names + extra] for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(table, columns=names + extra).to_excel(path, index=False, sheet_name=sheet_name)
    return path


def write_clips(base: Path, clips: dict[tuple[str, str], range | list[int]]) -> None:
    for (subject, clip), numbers in clips.items():
        folder = base / subject / clip
        folder.mkdir(parents=True)
        for n in numbers:
            cv2.imwrite(str(folder / f"image{n:06d}.jpg"), IMAGE)


def write_smic_e(
    top: Path,
    rows: list[dict],
    clips: dict[tuple[str, str], range | list[int]],
    *,
    layout: str = "official",
    subset: str = "HS",
    **sheet_options,
) -> Path:
    """SMIC-E under `top`; returns the `SMIC-E_raw image` folder.

    official: {subset}_long/SMIC-{subset}-E/s01/s1_ne_01/image308866.jpg with the sheet
    {subset}_long/SMIC-{subset}-E_annotation.xlsx; nested: SMIC-{subset}-E/{subset}/s01/...
    with the sheet inside SMIC-{subset}-E/.
    """
    raw = top / RAW
    e_dir = raw / f"{subset}_long" / f"SMIC-{subset}-E"
    if layout == "official":
        write_clips(e_dir, clips)
        sheet = e_dir.parent / f"SMIC-{subset}-E_annotation.xlsx"
    else:
        write_clips(e_dir / subset, clips)
        sheet = e_dir / f"SMIC-{subset}-E_annotation.xlsx"
    write_sheet(sheet, rows, **sheet_options)
    return raw


def standard(top: Path, **options) -> Path:
    return write_smic_e(
        top,
        [
            row(1, "s1_ne_01", 308866, 308880, "negative", 308850, second=(308890, 308899)),
            row(3, "s3_sur_01", 120, 130, "surprise", 100),
        ],
        {("s01", "s1_ne_01"): range(308850, 308901), ("s03", "s3_sur_01"): range(100, 161)},
        **options,
    )


def test_reads_the_official_layout(tmp_path):
    result = load_smic_e(standard(tmp_path))
    assert [v.id for v in result.videos] == ["smic_e/s01/s1_ne_01", "smic_e/s03/s3_sur_01"]
    video = result.videos[0]
    assert video.dataset == "smic_e" and video.subject == "s01" and video.fps == 100.0
    assert video.frame_numbers == tuple(range(308850, 308901))
    assert video.frames[0].name == "image308850.jpg"
    assert [(e.onset, e.apex, e.offset, e.kind, e.emotion) for e in video.events] == [
        (308866, None, 308880, "micro", "negative"),
        (308890, None, 308899, "micro", "negative"),
    ]
    assert [s.id for s in result.samples] == [
        "smic_e/s01/s1_ne_01/308866",
        "smic_e/s01/s1_ne_01/308890",
        "smic_e/s03/s3_sur_01/120",
    ]
    sample = result.samples[0]
    assert (sample.dataset, sample.subject, sample.clip) == ("smic_e", "s01", "s1_ne_01/308866")
    assert (sample.onset, sample.apex, sample.offset) == (308866, 308873, 308880)
    assert sample.apex_source == "midpoint" and sample.kind == "micro"
    assert sample.frame_numbers == tuple(range(308866, 308881))
    assert sample.video == video.frames[0].parent and sample.fps == 100.0
    assert sample.emotion == "negative" and sample.aus == ""
    assert result.samples[2].emotion == "surprise"
    assert result.skipped == ()


@pytest.mark.parametrize("below", ["", "HS_long", "HS_long/SMIC-HS-E"])
def test_root_at_any_level(tmp_path, below):
    raw = standard(tmp_path)
    assert len(load_smic_e(raw / below).samples) == 3
    assert looks_like(raw / below)


def test_nested_layout_with_the_sheet_beside_the_subject_folders(tmp_path):
    raw = standard(tmp_path, layout="nested")
    for root in (raw, raw / "HS_long" / "SMIC-HS-E", raw / "HS_long" / "SMIC-HS-E" / "HS"):
        result = load_smic_e(root)
        assert len(result.videos) == 2 and len(result.samples) == 3
    assert result.samples[0].frames[0].parts[-4:-2] == ("HS", "s01")


def test_bad_rows_are_skipped_with_reasons(tmp_path):
    raw = write_smic_e(
        tmp_path,
        [
            row(1, "s1_ne_01", 10, 20, "negative"),
            row(2, "s2_po_01", 10, 20, "positive"),  # no clip folder
            row(1, "s1_ne_02", 50, 40, "negative", second=(5, 9)),  # offset before onset
            row(1, "s1_po_01", 20, 35, "positive"),  # runs past the last frame
            row(3, "s3_sur_02", 3, 9, "surprise", 500),  # outside the clip's frames
            row(3, "s3_sur_04", "", "", "surprise"),  # no event on the row
        ],
        {
            ("s01", "s1_ne_01"): range(1, 31),
            ("s01", "s1_ne_02"): range(1, 31),
            ("s01", "s1_po_01"): range(1, 31),
            ("s03", "s3_sur_02"): range(500, 521),
            ("s03", "s3_sur_03"): range(1, 5),  # a folder without a row
        },
    )
    result = load_smic_e(raw)
    assert [s.id for s in result.samples] == ["smic_e/s01/s1_ne_01/10", "smic_e/s01/s1_ne_02/5"]
    videos = {v.id: v for v in result.videos}
    assert sorted(videos) == [
        "smic_e/s01/s1_ne_01",
        "smic_e/s01/s1_ne_02",
        "smic_e/s01/s1_po_01",
    ]
    assert [(e.onset, e.offset) for e in videos["smic_e/s01/s1_ne_02"].events] == [(5, 9)]
    # the event past the end stays for spotting; only its sample is skipped
    assert [(e.onset, e.offset) for e in videos["smic_e/s01/s1_po_01"].events] == [(20, 35)]
    reasons = {s.id: s.reason for s in result.skipped}
    assert "clip folder" in reasons["smic_e/s02/s2_po_01/10"]
    assert "missing" in reasons["smic_e/s02/s2_po_01/10"]
    assert "row 3" in reasons["smic_e/s02/s2_po_01/10"]
    assert "offset 40 is before onset 50" in reasons["smic_e/s01/s1_ne_02/50"]
    assert "offset frame 35 not in" in reasons["smic_e/s01/s1_po_01/20"]
    assert "kept for spotting" in reasons["smic_e/s01/s1_po_01/20"]
    assert "outside the frames 500..520" in reasons["smic_e/s03/s3_sur_02/3"]
    assert "no usable event" in reasons["smic_e/s03/s3_sur_02"]
    assert "no OnsetF/OffsetF" in reasons["smic_e/s03/s3_sur_04"]
    assert "has no row" in reasons["smic_e/s03/s3_sur_03"]


def test_apex_column_of_a_copy_is_used_and_checked(tmp_path):
    raw = write_smic_e(
        tmp_path,
        [
            row(1, "s1_ne_01", 10, 20, "negative", ApexF=14),
            row(1, "s1_ne_02", 10, 20, "negative", ApexF=25),
        ],
        {("s01", "s1_ne_01"): range(1, 31), ("s01", "s1_ne_02"): range(1, 31)},
    )
    result = load_smic_e(raw)
    (sample,) = result.samples
    assert sample.apex == 14 and sample.apex_source == "annotated"
    assert result.videos[0].events[0].apex == 14
    (skip,) = [s for s in result.skipped if s.id.endswith("/10")]
    assert "apex 25 is outside onset..offset 10..20" in skip.reason


def test_corrections_by_event_id(tmp_path):
    raw = standard(tmp_path)
    fix = tmp_path / "fix.csv"
    fix.write_text(
        "id,field,value,reason\n"
        "smic_e/s01/s1_ne_01/308866,apex,308870,checked by hand\n"
        "smic_e/s03/s3_sur_01/120,exclude,,occluded\n"
    )
    result = load_smic_e(raw, corrections=load_corrections(fix))
    assert [s.id for s in result.samples][0] == "smic_e/s01/s1_ne_01/308866"
    assert result.samples[0].apex == 308870 and result.samples[0].apex_source == "corrected"
    assert result.videos[0].events[0].apex == 308870
    assert len(result.samples) == 2
    reasons = {s.id: s.reason for s in result.skipped}
    assert "occluded" in reasons["smic_e/s03/s3_sur_01/120"]
    assert "no usable event" in reasons["smic_e/s03/s3_sur_01"]


def test_frames_renumbered_from_one_are_shifted_by_first_frame(tmp_path):
    raw = write_smic_e(
        tmp_path,
        [row(1, "s1_ne_01", 308866, 308880, "negative", 308850)],
        {("s01", "s1_ne_01"): range(1, 52)},
    )
    result = load_smic_e(raw)
    (sample,) = result.samples
    assert sample.id == "smic_e/s01/s1_ne_01/308866"  # the id keeps the sheet's number
    assert (sample.onset, sample.offset) == (17, 31)
    assert (result.videos[0].events[0].onset, result.videos[0].events[0].offset) == (17, 31)


def test_emotion_from_the_clip_name_when_the_sheet_has_none(tmp_path):
    header = tuple(h for h in SHEET_HEADER if h != "Emotion")
    raw = write_smic_e(
        tmp_path,
        [row(1, "s1_po_01", 2, 4), row(1, "s1_sur_01", 2, 4), row(1, "s1_ne_01", 2, 4)],
        {("s01", c): range(1, 6) for c in ("s1_po_01", "s1_sur_01", "s1_ne_01")},
        header=header,
    )
    emotions = [s.emotion for s in load_smic_e(raw).samples]
    assert emotions == ["positive", "surprise", "negative"]


def test_renamed_column_is_named_with_the_columns_found(tmp_path):
    header = tuple("Onset" if h == "OnsetF" else h for h in SHEET_HEADER)
    raw = write_smic_e(
        tmp_path, [{"Subject": 1, "Filename": "s1_ne_01", "Onset": 2, "OffsetF": 4}],
        {("s01", "s1_ne_01"): range(1, 6)}, header=header,
    )  # fmt: skip
    with pytest.raises(MekitError, match=r"lacks column\(s\) OnsetF; found Subject, Filename"):
        load_smic_e(raw)


def test_sheet_choice(tmp_path):
    raw = standard(tmp_path)
    long = raw / "HS_long"
    # a second annotation sheet beside the first: ambiguous, name one
    write_sheet(long / "SMIC-HS-E_annotation_2019.xlsx", [row(1, "s1_ne_01", 308866, 308870)])
    with pytest.raises(MekitError, match="several SMIC-E annotation sheets.*--sheet"):
        load_smic_e(raw)
    result = load_smic_e(raw, long / "SMIC-HS-E_annotation_2019.xlsx")
    assert [s.id for s in result.samples] == ["smic_e/s01/s1_ne_01/308866"]
    # a CSV copy, and a workbook whose first sheet is something else
    csv = tmp_path / "smic.csv"
    pd.DataFrame([row(3, "s3_sur_01", 120, 130, "surprise")]).to_csv(csv, index=False)
    assert [s.id for s in load_smic_e(raw, csv).samples] == ["smic_e/s03/s3_sur_01/120"]
    book = tmp_path / "book.xlsx"
    with pd.ExcelWriter(book) as writer:
        pd.DataFrame({"note": ["read me"]}).to_excel(writer, sheet_name="Notes", index=False)
        pd.DataFrame([row(3, "s3_sur_01", 121, 130)]).to_excel(writer, sheet_name="HS", index=False)
    assert [s.onset for s in load_smic_e(raw, book).samples] == [121]
    for p in long.glob("*.xlsx"):
        p.unlink()
    with pytest.raises(MekitError, match="no SMIC-HS-E annotation sheet.*--sheet"):
        load_smic_e(raw)
    assert not looks_like(raw)


def test_vis_subset_and_errors(tmp_path):
    raw = write_smic_e(
        tmp_path,
        [row(1, "s1_ne_01", 5, 9, "negative", 1)],
        {("s01", "s1_ne_01"): range(1, 21)},
        subset="VIS",
    )
    (raw / "VIS_long" / "SMIC-VIS-E_annotation.xlsx").rename(
        raw / "VIS_long" / "SMIC_VIS_E_annotation.xlsx"
    )
    (sample,) = load_smic_e(raw, subset="VIS").samples
    assert sample.id == "smic_e_vis/s01/s1_ne_01/5" and sample.fps == 25.0
    with pytest.raises(MekitError, match=r"no SMIC-HS-E clip folders.*holds VIS"):
        load_smic_e(raw)
    with pytest.raises(MekitError, match="not one of"):
        load_smic_e(raw, subset="RGB")
    with pytest.raises(MekitError, match="does not exist"):
        load_smic_e(tmp_path / "nope")


def test_looks_like_tells_the_layouts_apart(tmp_path):
    raw = standard(tmp_path / "e")
    assert looks_like(raw) and not smic.looks_like(raw)
    assert not looks_like(write_casme2(tmp_path / "casme2"))
    hs = tmp_path / "smic" / "HS" / "s1" / "micro" / "negative" / "s1_ne_01"
    hs.mkdir(parents=True)
    cv2.imwrite(str(hs / "image000001.bmp"), IMAGE)
    write_sheet(tmp_path / "smic" / "SMIC-HS-E_annotation.xlsx", [row(1, "s1_ne_01", 1, 1)])
    assert smic.looks_like(tmp_path / "smic") and not looks_like(tmp_path / "smic")
    assert not looks_like(tmp_path / "missing")


def test_megc2019_labels(tmp_path):
    scheme = load_scheme("megc2019")
    samples = load_smic_e(standard(tmp_path)).samples
    assert [scheme.label_of(s) for s in samples] == ["negative", "negative", "surprise"]
