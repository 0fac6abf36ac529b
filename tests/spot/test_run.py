"""`mekit spot` end to end on synthetic long videos: files written, events found and scored."""

import csv
import json

import numpy as np
import pytest

from mekit.cli.main import main
from mekit.synth import SynthConfig
from mekit.synth.long_video import write_long_video, write_long_video_tables

LONG = SynthConfig(
    subjects=1,
    long_video_fps=(30.0,),
    long_video_seconds=6.0,
    micro_per_video=2,
    macro_per_video=1,
    amplitude_px=(2.0, 3.0),
    duration_ms=(250.0, 450.0),
    macro_duration_ms=(800.0, 1200.0),
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    result = write_long_video(folder, 0, LONG, progress=False)
    write_long_video_tables(folder, [result])
    return folder, result[0]


def test_spot_cli_writes_every_output_and_scores(videos, tmp_path, capsys):
    folder, path = videos
    out = tmp_path / "spots"
    assert main(["spot", str(folder), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "MEGC spotting (IoU >= 0.5)" in printed
    name = path.stem
    for suffix in (".intervals.csv", ".vetoed.csv", ".png", ".signals.npz"):
        assert (out / f"{name}{suffix}").is_file(), suffix
    report = json.loads((out / "spots.json").read_text())
    scores = report["scores"]
    assert scores["overall"]["n_truth"] == 3
    # the spotter finds the planted events on this clean video (the benchmark measures more)
    assert scores["overall"]["tp"] >= 2 and scores["overall"]["fp"] <= 1
    with open(out / f"{name}.intervals.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(float(r["onset_s"]) <= float(r["offset_s"]) for r in rows)
    assert {r["kind"] for r in rows} <= {"micro", "macro"}
    assert "| overall |" in (out / "summary.md").read_text()


def test_a_video_without_a_face_is_reported_not_silent(tmp_path, capsys):
    import av

    path = tmp_path / "wall.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(
                np.full((64, 64, 3), 40 + i, np.uint8), format="rgb24"
            )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert main(["spot", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "wall" in err and "face" in err


def test_a_long_video_corpus_is_spotted_with_its_own_annotations(videos, tmp_path, capsys):
    """The synthetic long video laid out as SAMM Long Videos (frames + sheet): `mekit spot`
    reads the corpus through its loader and scores against the sheet's events."""
    import cv2
    import pandas as pd

    from mekit.data.samm_lv import SHEET_HEADER, SHEET_NAME
    from mekit.spot.input.video import iter_frames

    folder, path = videos
    root = tmp_path / "SAMM_LV"
    frames = root / "SAMM_longvideos" / "006_1"
    frames.mkdir(parents=True)
    for i, image in iter_frames(path):
        cv2.imwrite(str(frames / f"006_1_{i + 1:04d}.jpg"), image)
    truth = list(csv.DictReader((folder / "intervals.csv").read_text().splitlines()))
    rows = [
        [
            6,
            f"006_1_{n}",
            1,
            int(r["onset"]) + 1,
            int(r["apex"]) + 1,
            int(r["offset"]) + 1,
            int(r["offset"]) - int(r["onset"]),
            "Micro - 1/2" if r["type"] == "micro" else "Macro",
            r["aus"],
            "",
        ]
        for n, r in enumerate(truth, start=1)
    ]
    width = len(SHEET_HEADER)
    notes = [["notes", *[None] * (width - 1)]] + [[None] * width] * 8
    sheet = pd.DataFrame([*notes, list(SHEET_HEADER), *rows])
    with pd.ExcelWriter(root / "SAMM_LongVideos_V3_Release.xlsx") as writer:
        sheet.to_excel(writer, sheet_name=SHEET_NAME, index=False, header=False)
    out = tmp_path / "spots"
    # the copy is at 30 fps, not SAMM's 200: --fps says so
    assert main(["spot", str(root), "--out", str(out), "--fps", "30", "--quiet"]) == 0
    scores = json.loads((out / "spots.json").read_text())["scores"]
    assert scores["overall"]["n_truth"] == len(truth) == 3
    assert scores["overall"]["tp"] >= 2
    assert (out / "samm_lv_006_006_1.png").is_file()
