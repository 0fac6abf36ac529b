from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mekit.data import casme2, casme_sq
from mekit.data.casme_sq import SHEET_NAMES, load_casme_sq, looks_like
from mekit.data.corrections import load_corrections
from mekit.data.labels import load_scheme
from mekit.errors import MekitError

from .fixtures import write_casme2

# naming rule1: (folder number, subject folder, participant number); rule2: (video code, name)
RULE1 = [[15, "s15", 1], [16, "s16", 2]]
RULE2 = [["0101", "disgust1"], [401, "anger1"], ["0502", "happy1"]]
VIDEOS = {
    ("s15", "15_0101disgustingteeth"): range(1, 41),
    ("s15", "15_0502funnyerrors"): range(1, 31),
    ("s16", "16_0401girlcrashing"): range(1, 31),
}


def frames(folder: Path, numbers: range) -> None:
    folder.mkdir(parents=True)
    image = np.zeros((8, 8, 3), np.uint8)
    for n in numbers:
        cv2.imwrite(str(folder / f"img{n}.jpg"), image)


def write_workbook(path: Path, sheets: dict[str, list[list]]) -> Path:
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, rows in sheets.items():
            pd.DataFrame(rows).to_excel(writer, sheet_name=name, header=False, index=False)
    return path


def write_corpus(root: Path, events: list[list], videos=VIDEOS, sheets=None) -> Path:
    for (subject, video), numbers in videos.items():
        frames(root / "rawpic" / subject / video, numbers)
    names = dict(zip(SHEET_NAMES, (events, RULE1, RULE2), strict=True))
    return write_workbook(root / "CAS(ME)^2code_final.xlsx", sheets or names)


def micro(participant, name, onset, apex, offset, cls="negative", kind="micro-expression"):
    return [participant, name, onset, apex, offset, "4+10", cls, kind, "disgust"]


def test_reads_long_videos_events_and_micro_samples(tmp_path):
    write_corpus(
        tmp_path,
        [
            micro(1, "disgust1_2", 20, 25, 35, kind="macro-expression"),
            micro(1, "disgust1_1", 5, 10, 15),
            micro(1, "happy1_1", 3, 0, 9, cls="positive"),  # apex 0: not annotated
        ],
    )
    result = load_casme_sq(tmp_path)
    assert [v.id for v in result.videos] == [
        "casme_sq/s15/15_0101disgustingteeth",
        "casme_sq/s15/15_0502funnyerrors",
        "casme_sq/s16/16_0401girlcrashing",  # no events: still a video for spotting
    ]
    disgust, happy, anger = result.videos
    assert disgust.fps == 30.0 and disgust.subject == "s15" and disgust.video is None
    assert disgust.frame_numbers == tuple(range(1, 41)) and anger.events == ()
    assert [(e.onset, e.apex, e.offset, e.kind) for e in disgust.events] == [
        (5, 10, 15, "micro"),
        (20, 25, 35, "macro"),
    ]
    assert disgust.events[0].emotion == "negative" and disgust.events[0].aus == "4+10"
    assert happy.events[0].apex is None
    assert [s.id for s in result.samples] == ["casme_sq/s15/disgust1_1", "casme_sq/s15/happy1_1"]
    first, second = result.samples
    assert (first.onset, first.apex, first.offset) == (5, 10, 15)
    assert first.frame_numbers == tuple(range(5, 16)) and first.frame_path(10).name == "img10.jpg"
    assert first.clip == "disgust1_1" and first.subject == "s15" and first.kind == "micro"
    assert first.emotion == "negative" and first.fps == 30.0 and first.apex_source == "annotated"
    assert first.video == tmp_path / "rawpic" / "s15" / "15_0101disgustingteeth"
    assert (second.apex, second.apex_source) == (6, "midpoint")
    assert result.skipped == () and result.corrections == ()


def test_macro_samples_on_request_and_self_report_labels(tmp_path):
    write_corpus(tmp_path, [micro(1, "disgust1_2", 20, 25, 35, kind="macro-expression")])
    result = load_casme_sq(tmp_path, kinds=("micro", "macro"), label="self_report")
    (sample,) = result.samples
    assert sample.kind == "macro" and sample.emotion == "disgust"


def test_offset_zero_is_filled_and_recorded(tmp_path):
    write_corpus(
        tmp_path,
        [
            micro(1, "disgust1_3", 20, 24, 0),  # mirror: 2*24-20 = 28
            micro(1, "disgust1_4", 30, 38, 0),  # mirror 46, capped at the last frame 40
            micro(1, "disgust1_5", 30, 0, 0),  # neither apex nor offset
        ],
    )
    result = load_casme_sq(tmp_path)
    offsets = {s.clip: s.offset for s in result.samples}
    assert offsets == {"disgust1_3": 28, "disgust1_4": 40}
    filled = {c[0]: c for c in result.corrections}
    assert filled["casme_sq/s15/disgust1_3"][1:4] == ("offset", "0", "28")
    assert "2*apex-onset" in filled["casme_sq/s15/disgust1_3"][4]
    assert "capped" in filled["casme_sq/s15/disgust1_4"][4]
    (skip,) = result.skipped
    assert skip.id == "casme_sq/s15/disgust1_5" and "both 0" in skip.reason

    by_apex = load_casme_sq(tmp_path, missing_offset="apex")
    assert {s.clip: s.offset for s in by_apex.samples} == {"disgust1_3": 24, "disgust1_4": 38}
    skipping = load_casme_sq(tmp_path, missing_offset="skip")
    assert skipping.samples == () and len(skipping.skipped) == 3
    assert all(e.offset for v in skipping.videos for e in v.events)  # no event without offset
    with pytest.raises(MekitError, match="missing_offset"):
        load_casme_sq(tmp_path, missing_offset="guess")


def test_bad_rows_are_skipped_with_reasons(tmp_path):
    write_corpus(
        tmp_path,
        [
            micro(1, "disgust1_1", 20, 10, 25),  # onset after apex
            micro(1, "disgust1_2", 30, 45, 50),  # apex beyond the video's last frame (40)
            micro(2, "happy1_1", 1, 2, 3),  # s16 has no 0502 video folder
            micro(9, "disgust1_3", 1, 2, 3),  # participant 9 is not in naming rule1
            micro(1, "sad1_1", 1, 2, 3),  # 'sad1' is not in naming rule2
            micro(1, "disgust1_4", 1, 2, 3, kind="blink"),
            micro(1, "disgust1_5", 5, 6, 8),
        ],
    )
    result = load_casme_sq(tmp_path)
    assert [s.id for s in result.samples] == ["casme_sq/s15/disgust1_5"]
    reasons = {s.id.split("/")[-1]: s.reason for s in result.skipped}
    assert "apex 10 is outside onset..offset 20..25" in reasons["disgust1_1"]
    assert "row 1)" in reasons["disgust1_1"] and "CAS(ME)^2code_final.xlsx" in reasons["disgust1_1"]
    assert "apex frame 45 not in" in reasons["disgust1_2"]
    assert "kept for spotting" in reasons["disgust1_2"]
    assert "no video s16/*_0502*" in reasons["happy1_1"]
    assert "participant '9'" in reasons["disgust1_3"]
    assert "naming rule2" in reasons["sad1_1"]
    assert "neither micro nor macro" in reasons["disgust1_4"]
    video = result.videos[0]
    # the event past the video's end stays for spotting; the rejected rows are left out
    assert [(e.onset, e.offset) for e in video.events] == [(5, 8), (30, 50)]


def test_corrections_apply_to_events_and_samples(tmp_path):
    write_corpus(tmp_path, [micro(1, "disgust1_1", 5, 10, 0), micro(1, "disgust1_2", 20, 40, 30)])
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(
        "id,field,value,reason\n"
        "casme_sq/s15/disgust1_1,offset,12,checked by eye\n"
        "casme_sq/s15/disgust1_2,apex,25,apex after offset in the sheet\n"
    )
    corrections = load_corrections(fixes)
    result = load_casme_sq(tmp_path, corrections=corrections)
    first, second = result.samples
    assert first.offset == 12 and result.corrections == ()  # the correction, not a fill
    assert (second.apex, second.apex_source) == (25, "corrected")
    assert len(corrections.applied) == 2 and corrections.unmatched() == []


def test_video_files_without_frames(tmp_path):
    folder = tmp_path / "rawvideo" / "s15"
    folder.mkdir(parents=True)
    (folder / "15_0101disgustingteeth.avi").write_bytes(b"avi")
    write_workbook(
        tmp_path / "code_final.xlsx",
        dict(zip(SHEET_NAMES, ([micro(1, "disgust1_1", 5, 10, 15)], RULE1, RULE2), strict=True)),
    )
    assert looks_like(tmp_path)
    result = load_casme_sq(tmp_path)
    (video,) = result.videos
    assert video.video == folder / "15_0101disgustingteeth.avi" and video.frames == ()
    assert [(e.onset, e.offset) for e in video.events] == [(5, 15)]
    (skip,) = result.skipped
    assert "only the video file" in skip.reason and result.samples == ()


def test_workbook_problems_name_the_fix(tmp_path):
    with pytest.raises(MekitError, match="does not exist"):
        load_casme_sq(tmp_path / "nope")
    frames(tmp_path / "rawpic" / "s15" / "15_0101disgustingteeth", range(1, 5))
    with pytest.raises(MekitError, match="--sheet"):
        load_casme_sq(tmp_path)
    sheet = tmp_path / "code_final.xlsx"
    short = [row[:7] for row in [micro(1, "disgust1_1", 1, 2, 3)]]
    write_workbook(sheet, dict(zip(SHEET_NAMES, (short, RULE1, RULE2), strict=True)))
    with pytest.raises(MekitError, match="'expression type' is missing"):
        load_casme_sq(tmp_path)
    shifted = [[1, "disgust1_1", 1, 2, 3, "negative", "micro-expression", "disgust"]]  # no AUs
    write_workbook(sheet, dict(zip(SHEET_NAMES, (shifted, RULE1, RULE2), strict=True)))
    with pytest.raises(MekitError, match="expression type"):
        load_casme_sq(tmp_path)
    write_workbook(sheet, {"CASMEcode_final": [micro(1, "disgust1_1", 1, 2, 3)]})
    with pytest.raises(MekitError, match="naming rule1"):
        load_casme_sq(tmp_path)


def test_sheets_found_by_position_when_renamed(tmp_path):
    write_corpus(
        tmp_path,
        [],
        sheets={
            "Sheet1": [micro(2, "anger1_1", 2, 3, 4)],
            "Sheet2": RULE1,
            "Sheet3": RULE2,  # anger1's code is a number there (401): read as 0401
        },
    )
    result = load_casme_sq(tmp_path)
    assert [s.id for s in result.samples] == ["casme_sq/s16/anger1_1"]
    assert result.samples[0].video.name == "16_0401girlcrashing"


def test_layout_detection(tmp_path):
    ours, theirs = tmp_path / "casme_sq", tmp_path / "casme2"
    write_corpus(ours, [micro(1, "disgust1_1", 5, 10, 15)])
    write_casme2(theirs)
    assert looks_like(ours) and not looks_like(theirs)
    assert not casme2.looks_like(ours)
    assert looks_like(ours / "rawpic")  # the sheet in the parent folder
    assert casme_sq.frames_dir(ours) == ours / "rawpic"


def test_megc2019_labels(tmp_path):
    write_corpus(
        tmp_path,
        [
            micro(1, "disgust1_1", 5, 10, 15, cls="negative"),
            micro(1, "happy1_1", 5, 10, 15, cls="positive"),
            micro(1, "disgust1_2", 20, 22, 24, cls="surprise"),
            micro(1, "disgust1_3", 25, 26, 27, cls="others"),
        ],
    )
    scheme = load_scheme("megc2019")
    labels = [scheme.label_of(s) for s in load_casme_sq(tmp_path).samples]
    assert labels == ["negative", "positive", "surprise", None]
