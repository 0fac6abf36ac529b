from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mekit.data import casme2, samm, samm_lv
from mekit.data.corrections import Correction, Corrections
from mekit.data.labels import load_scheme
from mekit.data.samm_lv import SHEET_HEADER, load_samm_lv
from mekit.errors import MekitError

from .fixtures import write_casme2

JPEG = cv2.imencode(".jpg", np.full((8, 8), 128, np.uint8))[1].tobytes()
NOTES = 9  # rows of notes above the header in the released sheets (header on row 10)
FIRST_ROW = NOTES + 2  # the sheet row of the first annotation
SHEET = "SAMM_LongVideos_V3_Release.xlsx"


def write_samm_lv(
    root: Path,
    rows: list[list],
    videos: dict[str, range],
    *,
    digits: dict[str, int] | None = None,
    header: tuple[str, ...] = SHEET_HEADER,
) -> Path:
    """The Long Videos layout: ROOT/SAMM_longvideos/006_1/006_1_0001.jpg (4 or 5 digits,
    per video) and ROOT/SAMM_LongVideos_V3_Release.xlsx, whose 'FACS_Movement_Only' sheet has
    notes above the header row; another sheet comes first."""
    for video, numbers in videos.items():
        folder = root / "SAMM_longvideos" / video
        folder.mkdir(parents=True)
        width = (digits or {}).get(video, 4)
        for n in numbers:
            (folder / f"{video}_{n:0{width}d}.jpg").write_bytes(JPEG)
    width = len(header)
    preamble = [["SAMM Long Videos - FACS coded movements"]]
    preamble += [[f"note {i}"] if i % 2 else [None] for i in range(1, NOTES)]
    lines = [r + [None] * (width - len(r)) for r in preamble + [list(header)] + rows]
    sheet = root / SHEET
    with pd.ExcelWriter(sheet) as writer:
        pd.DataFrame([["About this release"], ["see the paper"]]).to_excel(
            writer, sheet_name="Read_Me", index=False, header=False
        )
        pd.DataFrame(lines).to_excel(
            writer, sheet_name="FACS_Movement_Only", index=False, header=False
        )
    return sheet


def row(subject, name, onset, apex, offset, kind="Micro - 1/2", aus="12"):
    return [subject, name, 1, onset, apex, offset, offset - onset, kind, aus, ""]


def write_micro_sheet(folder: Path, rows: list[list]) -> None:
    """SAMM's micro sheet (to borrow emotions from), same shape as in test_samm."""
    header = list(samm.SHEET_HEADER)
    notes = [["SAMM micro-movement FACS codes"] + [None] * 11] + [[None] * 12] * 12
    pd.DataFrame(notes + [header] + rows).to_excel(
        folder / "SAMM_Micro_FACS_Codes_v2.xlsx", index=False, header=False
    )


VIDEOS = {"006_1": range(1, 61), "006_2": range(1, 41), "007_1": range(1, 31)}


def test_reads_videos_events_and_micro_samples(tmp_path):
    write_samm_lv(
        tmp_path,
        [
            row(6, "006_1_1", 10, 14, 20, aus="R12"),
            row(6, "006_1_2", 30, -1, 50, kind="Macro", aus="4+7"),
            row(6, "006_1_3", 0, 45, 48),  # onset 0: not annotated, the apex is used
            row(6, "006_2_1", 5, -1, 15),
        ],
        VIDEOS,
        digits={"006_2": 5},
    )
    result = load_samm_lv(tmp_path)
    assert result.skipped == ()
    assert [v.id for v in result.videos] == ["samm_lv/006/006_1", "samm_lv/006/006_2",
                                             "samm_lv/007/007_1"]  # fmt: skip
    v1, v2, v3 = result.videos
    assert (v1.dataset, v1.subject, v1.fps) == ("samm_lv", "006", 200.0)
    assert v1.frame_numbers == tuple(range(1, 61)) and v1.frames[0].name == "006_1_0001.jpg"
    assert [(e.onset, e.apex, e.offset, e.kind) for e in v1.events] == [
        (10, 14, 20, "micro"),
        (30, None, 50, "macro"),
        (45, 45, 48, "micro"),
    ]
    assert v1.events[0].aus == "R12" and v1.events[0].emotion == ""
    assert v2.frames[0].name == "006_2_00001.jpg" and len(v2.events) == 1
    assert v3.events == ()  # a video without events is still there for spotting

    ids = [s.id for s in result.samples]
    assert ids == ["samm_lv/006/006_1_1", "samm_lv/006/006_1_3", "samm_lv/006/006_2_1"]
    first, _, last = result.samples
    assert (first.subject, first.clip, first.kind) == ("006", "006_1_1", "micro")
    assert first.video == tmp_path / "SAMM_longvideos" / "006_1"
    assert first.frame_numbers == tuple(range(10, 21))
    assert first.frame_path(14).name == "006_1_0014.jpg"
    assert (first.onset, first.apex, first.offset, first.fps) == (10, 14, 20, 200.0)
    assert first.emotion == "" and first.aus == "R12" and first.dataset == "samm_lv"
    assert (last.apex, last.apex_source) == (10, "midpoint")
    assert last.frame_path(5).name == "006_2_00005.jpg"


def test_root_may_be_the_video_folder(tmp_path):
    write_samm_lv(tmp_path, [row(6, "006_1_1", 10, 14, 20)], VIDEOS)
    result = load_samm_lv(tmp_path / "SAMM_longvideos")  # sheet found in the parent
    assert [s.id for s in result.samples] == ["samm_lv/006/006_1_1"]


def test_bad_rows_are_skipped_with_reasons(tmp_path):
    write_samm_lv(
        tmp_path,
        [
            row(8, "008_1_1", 10, 14, 20),  # no video folder 008_1
            row(6, "006_1_1", 30, 25, 40),  # onset after apex
            row(6, "006_1_2", 50, 55, 70),  # offset beyond the last frame 60
            row(6, "006_1_3", 55, 65, 70),  # apex beyond the last frame
            row(6, "006_1_4", 10, 12, 14, kind="Blink"),
            row(6, "006_1_5", 10, 12, 14),
            row(6, "006_1_5", 20, 22, 24),  # the same Filename again
        ],
        VIDEOS,
    )
    result = load_samm_lv(tmp_path)
    assert [s.id for s in result.samples] == ["samm_lv/006/006_1_5"]
    reasons = {s.id.split("/")[-1]: s.reason for s in result.skipped}
    assert set(reasons) == {"008_1_1", "006_1_1", "006_1_2", "006_1_3", "006_1_4", "006_1_5"}
    assert "video folder" in reasons["008_1_1"] and "008_1 is missing" in reasons["008_1_1"]
    assert f"row {FIRST_ROW}" in reasons["008_1_1"] and SHEET in reasons["008_1_1"]
    assert "apex 25 is outside onset..offset 30..40" in reasons["006_1_1"]
    assert f"row {FIRST_ROW + 1}" in reasons["006_1_1"]
    assert "offset frame 70 not in" in reasons["006_1_2"]
    assert "apex frame 65 not in" in reasons["006_1_3"]
    assert "kept for spotting" in reasons["006_1_3"]
    assert "Type 'Blink'" in reasons["006_1_4"]
    assert f"Filename repeats row {FIRST_ROW + 5}" in result.skipped[-1].reason
    # events past the end of the video stay in it; unusable annotations do not
    v1 = result.videos[0]
    assert [(e.onset, e.offset) for e in v1.events] == [(10, 14), (20, 24), (50, 70), (55, 70)]
    assert all(v.id != "samm_lv/008/008_1" for v in result.videos)


def test_corrections_apply_to_event_and_sample(tmp_path):
    write_samm_lv(tmp_path, [row(6, "006_1_2", 50, -1, 70)], VIDEOS)
    fix = Corrections(
        (
            Correction("samm_lv/006/006_1_2", "offset", "60", "past the last frame"),
            Correction("samm_lv/006/006_1_2", "apex", "55", "apex from the video"),
        )
    )
    result = load_samm_lv(tmp_path, corrections=fix)
    (sample,) = result.samples
    assert (sample.onset, sample.apex, sample.offset) == (50, 55, 60)
    assert sample.apex_source == "corrected"
    assert [(e.onset, e.apex, e.offset) for e in result.videos[0].events] == [(50, 55, 60)]
    assert [a[1] for a in fix.applied] == ["offset", "apex"]


def test_renamed_column_is_named(tmp_path):
    header = tuple("Kind" if h == "Type" else h for h in SHEET_HEADER)
    write_samm_lv(tmp_path, [row(6, "006_1_1", 10, 14, 20)], VIDEOS, header=header)
    with pytest.raises(MekitError, match="Type") as err:
        load_samm_lv(tmp_path)
    assert "FACS_Movement_Only" in str(err.value) and "row 10" in str(err.value)


def test_missing_corpus_and_sheet_name_the_fix(tmp_path):
    with pytest.raises(MekitError, match="does not exist"):
        load_samm_lv(tmp_path / "nope")
    (tmp_path / "006_1").mkdir()
    with pytest.raises(MekitError, match="--sheet"):
        load_samm_lv(tmp_path)


def test_emotions_from_the_samm_micro_sheet_and_megc2019(tmp_path):
    write_samm_lv(
        tmp_path,
        [row(6, "006_1_1", 10, 14, 20), row(6, "006_1_3", 40, 45, 48), row(6, "006_2_1", 5, 8, 9)],
        VIDEOS,
    )
    scheme = load_scheme("megc2019")
    assert [scheme.label_of(s) for s in load_samm_lv(tmp_path).samples] == [None] * 3

    write_micro_sheet(
        tmp_path,
        [
            [6, "006_1_1", 1, 10, 14, 20, 10, "Micro - 1/2", "R12", "Happiness", 1, ""],
            [6, "006_1_2", 1, 40, 45, 48, 8, "Micro - 1/2", "4", "Anger", 2, ""],  # renumbered
            [6, "006_2_1", 1, 6, 8, 9, 3, "Micro - 1/2", "1", "Surprise", 3, ""],  # other onset
        ],
    )
    result = load_samm_lv(tmp_path)
    assert [s.emotion for s in result.samples] == ["happiness", "anger", ""]
    assert [scheme.label_of(s) for s in result.samples] == ["positive", "negative", None]
    assert result.videos[0].events[0].emotion == "happiness"


def test_looks_like_tells_layouts_apart(tmp_path):
    own, other, micro = tmp_path / "lv", tmp_path / "casme2", tmp_path / "samm"
    for folder in (own, other, micro):
        folder.mkdir()
    write_samm_lv(own, [row(6, "006_1_1", 10, 14, 20)], {"006_1": range(1, 30)})
    write_casme2(other)
    (micro / "006" / "006_1_2").mkdir(parents=True)
    write_micro_sheet(micro, [])
    assert samm_lv.looks_like(own) and samm_lv.looks_like(own / "SAMM_longvideos")
    assert not samm_lv.looks_like(other) and not samm_lv.looks_like(micro)
    assert not casme2.looks_like(own) and not samm.looks_like(own)
    assert samm.looks_like(micro)


def test_a_stray_samm_workbook_is_not_taken_for_the_micro_sheet(tmp_path):
    write_samm_lv(tmp_path, [row(6, "006_1_1", 10, 14, 20)], VIDEOS)
    pd.DataFrame([["notes"]]).to_excel(tmp_path / "SAMM_notes.xlsx", index=False)
    assert [s.emotion for s in load_samm_lv(tmp_path).samples] == [""]
