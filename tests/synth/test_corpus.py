import json
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from mekit.errors import MekitError
from mekit.synth import (
    EMOTION_AUS,
    GROUND_TRUTH_COLUMNS,
    SHEET_HEADER,
    SynthConfig,
    generate_corpus,
)

from .conftest import SMALL, tree_bytes

TINY = SynthConfig(subjects=1, clips_per_subject=2, duration_ms=(40.0, 60.0), long_videos=False)


def test_layout_and_counts(small_corpus):
    out = small_corpus.out
    assert sorted(p.name for p in out.iterdir()) == [
        "CASME2-coding-synthetic.xlsx",
        "ground_truth.csv",
        "sub01",
        "sub02",
        "synth.json",
    ]
    clips = sorted(out.glob("sub*/*"))
    assert len(clips) == small_corpus.n_clips == 8
    assert all(re.fullmatch(r"EP\d\d_\d\d", c.name) for c in clips)
    frames = list(out.glob("sub*/*/img*.jpg"))
    assert len(frames) == small_corpus.n_frames
    assert all(re.fullmatch(r"img\d+\.jpg", f.name) for f in frames)


def test_sheet_header_is_exactly_the_casme2_one(small_corpus):
    sheet = load_workbook(small_corpus.sheet).active
    header = [c.value for c in next(sheet.iter_rows(max_row=1))]
    assert header == list(SHEET_HEADER)
    assert header == [
        "Subject",
        "Filename",
        None,
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        None,
        "Action Units",
        "Estimated Emotion",
    ]
    first = [c.value for c in next(sheet.iter_rows(min_row=2, max_row=2))]
    assert first[0] == "01" and isinstance(first[0], str)
    assert all(isinstance(v, int) for v in first[3:6])
    # what corpus readers see through pandas
    df = pd.read_excel(small_corpus.sheet, engine="openpyxl", dtype={"Subject": str})
    assert list(df.columns)[:3] == ["Subject", "Filename", "Unnamed: 2"]
    assert set(df["Subject"]) == {"01", "02"}


def test_sheet_frames_exist_and_are_ordered(small_corpus):
    df = pd.read_excel(small_corpus.sheet, engine="openpyxl", dtype={"Subject": str})
    assert len(df) == 8
    for _, row in df.iterrows():
        folder = small_corpus.out / f"sub{row.Subject}" / row.Filename
        numbers = sorted(int(p.stem[3:]) for p in folder.glob("img*.jpg"))
        assert numbers == list(range(numbers[0], numbers[-1] + 1))  # no gaps
        assert numbers[0] < row.OnsetFrame <= row.ApexFrame <= row.OffsetFrame < numbers[-1]
        assert row.OnsetFrame < row.ApexFrame  # something happens before apex
        aus = tuple(int(a) for a in row["Action Units"].split("+"))
        assert aus in EMOTION_AUS[row["Estimated Emotion"]]
    assert df.OnsetFrame.min() > 1  # numbering starts part-way, like CASME II


def test_emotions_are_balanced_per_subject(small_corpus):
    df = pd.read_excel(small_corpus.sheet, engine="openpyxl", dtype={"Subject": str})
    for _, group in df.groupby("Subject"):
        assert Counter(group["Estimated Emotion"]) == {e: 1 for e in SMALL.emotions}


def test_ground_truth_matches_the_sheet_and_keeps_blinks_off_the_rise(small_corpus):
    truth = pd.read_csv(small_corpus.ground_truth, dtype={"subject": str, "blink_frames": str})
    assert tuple(truth.columns) == GROUND_TRUTH_COLUMNS
    sheet = pd.read_excel(small_corpus.sheet, engine="openpyxl", dtype={"Subject": str})
    assert (truth.onset.values == sheet.OnsetFrame.values).all()
    assert (truth.apex.values == sheet.ApexFrame.values).all()
    assert (truth["clip"].values == sheet.Filename.values).all()
    lo, hi = SMALL.amplitude_px
    assert truth.apex_displacement_px.between(lo, hi).all()
    assert truth.duration_ms.between(0, SMALL.duration_ms[1] + 1000 / SMALL.fps).all()
    assert set(truth.base_face) == {"astronaut", "grace_hopper"}
    blinked = truth.blink_frames.fillna("")
    assert (blinked != "").all()  # blink_prob=1 in SMALL
    for frames, row in zip(blinked, truth.itertuples(), strict=True):
        numbers = [int(n) for n in frames.split(";")]
        assert all(n < row.onset or n > row.apex for n in numbers)
        assert all(row.first_frame <= n <= row.last_frame for n in numbers)


def test_synth_json_holds_the_resolved_config(small_corpus):
    meta = json.loads((small_corpus.out / "synth.json").read_text())
    assert meta["config"]["subjects"] == 2 and meta["config"]["blink_prob"] == 1.0
    assert meta["config"]["emotions"] == list(SMALL.emotions)
    assert meta["mekit_version"]


def test_same_seed_same_bytes_other_seed_other_frames(tmp_path):
    a = generate_corpus(tmp_path / "a", TINY, progress=False, workers=1)
    b = generate_corpus(tmp_path / "b", TINY, progress=False, workers=2)
    c = generate_corpus(tmp_path / "c", SynthConfig(**{**TINY.__dict__, "seed": 1}), False)
    bytes_a, bytes_b, bytes_c = tree_bytes(a.out), tree_bytes(b.out), tree_bytes(c.out)
    assert bytes_a == bytes_b
    frames_a = {k: v for k, v in bytes_a.items() if k.endswith(".jpg")}
    frames_c = {k: v for k, v in bytes_c.items() if k.endswith(".jpg")}
    assert frames_a and set(frames_a.values()).isdisjoint(frames_c.values())
    assert bytes_a["CASME2-coding-synthetic.xlsx"] != bytes_c["CASME2-coding-synthetic.xlsx"]


def test_clean_mode_has_no_noise_drift_or_blinks(clean_corpus):
    truth = pd.read_csv(clean_corpus.ground_truth, dtype={"subject": str, "blink_frames": str})
    assert truth.blink_frames.isna().all()
    row = truth.iloc[0]
    folder = clean_corpus.out / f"sub{row.subject}" / row["clip"]
    import cv2

    lead = [
        cv2.imread(str(folder / f"img{n}.jpg")).astype(int) for n in (row.first_frame, row.onset)
    ]
    assert np.abs(lead[0] - lead[1]).max() == 0  # nothing moves before onset


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"emotions": ("happiness", "contempt")}, "valid: happiness, surprise"),
        ({"amplitude_px": (3.0, 0.5)}, "amplitude_px is reversed"),
        ({"duration_ms": (500.0, 40.0)}, "duration_ms is reversed"),
        ({"subjects": 0}, "subjects"),
        ({"face_width": 190.0}, "face_width"),
        ({"jpeg_quality": (85, 120)}, "jpeg_quality"),
        ({"amplitude_px": (0.0, 1.0)}, "amplitude_px"),
        ({"blink_prob": 2.0}, "blink_prob"),
    ],
)
def test_bad_config_raises_mekit_error(tmp_path, change, message):
    with pytest.raises(MekitError, match=message):  # when the config is made
        config = SynthConfig(**{**TINY.__dict__, **change})
        generate_corpus(tmp_path / "out", config, progress=False)
    assert not (tmp_path / "out").exists()  # nothing written before validation


def test_non_empty_output_needs_overwrite_and_only_replaces_a_corpus(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(MekitError, match="not empty"):
        generate_corpus(out, TINY, progress=False)
    with pytest.raises(MekitError, match="synth.json"):
        generate_corpus(out, TINY, progress=False, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    generate_corpus(out, TINY, progress=False)
    (out / "stale.txt").write_text("old")
    summary = generate_corpus(out, TINY, progress=False, overwrite=True)
    assert summary.n_clips == 2 and not (out / "stale.txt").exists()
