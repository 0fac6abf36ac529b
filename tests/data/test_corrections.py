from pathlib import Path

import pytest

from mekit.data.corrections import load_corrections
from mekit.data.records import RowError, make_sample, numbered_frames
from mekit.errors import MekitError


def clip(folder: Path, numbers: range, name: str = "img{}.jpg") -> Path:
    folder.mkdir(parents=True)
    for n in numbers:
        (folder / name.format(n)).write_bytes(b"x")
    return folder


def row(folder: Path, **overrides):
    fields = dict(
        sample_id="c/s1/a",
        dataset="c",
        subject="s1",
        clip="a",
        onset=1,
        apex=5,
        offset=9,
        emotion="Disgust",
        aus="4",
        fps=200.0,
        folder=folder,
    )
    fields.update(overrides)
    return make_sample(**fields)


def test_numbered_frames_sorts_numerically(tmp_path):
    folder = clip(tmp_path / "a", range(8, 12))
    (folder / "notes.txt").write_text("ignored")
    numbers, paths = numbered_frames(folder)
    assert numbers == (8, 9, 10, 11)
    assert [p.name for p in paths] == ["img8.jpg", "img9.jpg", "img10.jpg", "img11.jpg"]


def test_make_sample_fills_missing_apex_and_bounds(tmp_path):
    folder = clip(tmp_path / "a", range(1, 10))
    s = row(folder, apex=None)
    assert (s.apex, s.apex_source) == (5, "midpoint")
    assert s.emotion == "disgust"
    s = row(folder, onset=None, offset=None, apex=3)
    assert (s.onset, s.offset) == (1, 9)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"onset": 6, "apex": 5}, "apex 5 is outside onset..offset 6..9"),
        ({"offset": 12, "apex": 5}, "offset frame 12 not in"),
        ({"offset": 0}, "offset 0 is before onset 1"),
    ],
)
def test_make_sample_rejects_bad_rows(tmp_path, overrides, message):
    folder = clip(tmp_path / "a", range(1, 10))
    with pytest.raises(RowError, match=message):
        row(folder, **overrides)


def test_missing_folder_named(tmp_path):
    with pytest.raises(RowError, match="clip folder .*missing"):
        row(tmp_path / "nope")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "corrections.csv"
    path.write_text(text)
    return path


def test_corrections_apply_by_id_and_are_recorded(tmp_path):
    folder = clip(tmp_path / "a", range(1, 10))
    corrections = load_corrections(
        write(
            tmp_path,
            "# fixes\nid,field,value,reason\n"
            "c/s1/a,apex,7,apex annotated outside the clip in v1 of the sheet\n"
            "c/s1/a,emotion,others,relabelled by the authors\n"
            "c/s9/zz,apex,3,typo in id\n",
        )
    )
    s = row(folder, apex=20, corrections=corrections)  # 20 would be outside 1..9
    assert (s.apex, s.apex_source, s.emotion) == (7, "corrected", "others")
    assert corrections.applied[0] == (
        "c/s1/a",
        "apex",
        "20",
        "7",
        "apex annotated outside the clip in v1 of the sheet",
    )
    assert [c.id for c in corrections.unmatched()] == ["c/s9/zz"]


def test_exclude_correction_skips_with_reason(tmp_path):
    folder = clip(tmp_path / "a", range(1, 10))
    corrections = load_corrections(
        write(tmp_path, "id,field,value,reason\nc/s1/a,exclude,,duplicate of c/s1/b\n")
    )
    with pytest.raises(RowError, match="excluded by correction.*duplicate of c/s1/b"):
        row(folder, corrections=corrections)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,field,value\n", "header must be id,field,value,reason"),
        ("id,field,value,reason\nx,colour,1,r\n", "line 2: field 'colour'"),
        ("id,field,value,reason\nx,apex,7,\n", "needs a reason"),
        ("id,field,value,reason\nx,apex,seven,r\n", "apex 'seven' is not a frame number"),
    ],
)
def test_bad_corrections_file(tmp_path, text, message):
    with pytest.raises(MekitError, match=message):
        load_corrections(write(tmp_path, text))


def test_corrections_match_ids_spelled_another_way(tmp_path):
    # a corrections file written against one public copy applies to another's spelling
    folder = clip(tmp_path / "a", range(1, 10))
    corrections = load_corrections(
        write(tmp_path, "id,field,value,reason\nsmic/s01/s01_ne_01,apex,4,re-coded apex\n")
    )
    s = row(folder, sample_id="smic/s1/s1_ne_01", apex=2, corrections=corrections)
    assert (s.apex, s.apex_source) == (4, "corrected")
    assert corrections.unmatched() == []
    assert corrections.excludes("smic/s1/s1_ne_01") is False
