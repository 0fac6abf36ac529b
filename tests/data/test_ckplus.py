from pathlib import Path

import cv2
import numpy as np
import pytest

from mekit.data import casme2, ckplus, fer2013
from mekit.data.ckplus import ckplus_peak_images, load_ckplus
from mekit.data.corpora import detect_layout, load_corpus
from mekit.data.corrections import Correction, Corrections
from mekit.data.labels import load_scheme
from mekit.errors import MekitError

from .fixtures import write_casme2


def write_ckplus(
    root: Path,
    sequences: dict[tuple[str, str], int],
    labels: dict[tuple[str, str], tuple[int, str]],
    facs: dict[tuple[str, str], list[int]] | None = None,
) -> Path:
    """CK+ as the zips unpack: cohn-kanade-images/S005/001/S005_001_00000001.png.. (frames
    1..n, grey level 10 * frame), Emotion/S005/001/S005_001_{frame:08d}_emotion.txt holding the
    code as the official files write it, FACS/.../*_facs.txt ("AU intensity" lines). Every
    sequence has an Emotion folder, empty when it is unlabelled, as in the release."""
    for (subject, seq), n in sequences.items():
        folder = root / "cohn-kanade-images" / subject / seq
        folder.mkdir(parents=True)
        for frame in range(1, n + 1):
            image = np.full((10, 12), 10 * frame, np.uint8)
            assert cv2.imwrite(str(folder / f"{subject}_{seq}_{frame:08d}.png"), image)
        (folder / ".DS_Store").write_bytes(b"\0")
        (root / "Emotion" / subject / seq).mkdir(parents=True)
    for (subject, seq), (frame, code) in labels.items():
        folder = root / "Emotion" / subject / seq
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{subject}_{seq}_{frame:08d}_emotion.txt").write_text(f"   {code}\n")
    for (subject, seq), aus in (facs or {}).items():
        folder = root / "FACS" / subject / seq
        folder.mkdir(parents=True)
        lines = "".join(f"   {au:.7e}   {0:.7e}\n" for au in aus)
        (folder / f"{subject}_{seq}_{sequences[(subject, seq)]:08d}_facs.txt").write_text(lines)
    return root


def code(n: int) -> str:
    return f"{n:.7e}"  # "3.0000000e+00"


def basic(root: Path) -> Path:
    return write_ckplus(
        root,
        {("S005", "001"): 11, ("S010", "002"): 6, ("S010", "003"): 5},  # S010/003 unlabelled
        {("S005", "001"): (11, code(3)), ("S010", "002"): (6, code(5))},
        facs={("S005", "001"): [9, 14, 17]},
    )


def test_one_sample_per_labelled_sequence(tmp_path):
    result = load_ckplus(basic(tmp_path))
    assert [s.id for s in result.samples] == ["ckplus/S005/001", "ckplus/S010/002"]
    assert result.skipped == ()
    first, second = result.samples
    assert (first.dataset, first.subject, first.clip) == ("ckplus", "S005", "001")
    # sequences go from neutral (first frame) to the peak (last, labelled frame)
    assert (first.onset, first.apex, first.offset) == (1, 11, 11)
    assert first.apex_source == "annotated" and first.kind == "macro" and first.fps == 30.0
    assert first.frame_numbers == tuple(range(1, 12)) and len(first.frames) == 11
    assert first.frame_path(11).name == "S005_001_00000011.png"
    assert first.emotion == "disgust" and first.aus == "9+14+17"
    assert second.emotion == "happiness" and second.aus == ""


def test_bad_sequences_are_skipped_with_reasons(tmp_path):
    root = write_ckplus(
        tmp_path,
        {("S020", "001"): 5, ("S020", "002"): 5, ("S020", "003"): 5, ("S020", "004"): 5},
        {
            ("S020", "001"): (9, code(1)),  # labelled frame beyond the last frame
            ("S020", "002"): (0, code(1)),  # labelled frame before the first (onset > apex)
            ("S020", "003"): (5, code(8)),  # code out of range
            ("S020", "004"): (5, code(7)),  # plus a second label file, below
            ("S020", "005"): (5, code(7)),  # no image folder
        },
    )
    (root / "Emotion" / "S020" / "004" / "S020_004_00000004_emotion.txt").write_text(code(7))
    result = load_ckplus(root)
    assert result.samples == ()
    reasons = {s.id.split("/")[-1]: s.reason for s in result.skipped}
    assert "apex frame 9 not in" in reasons["001"] and "(frames 1..5)" in reasons["001"]
    assert "Emotion/S020/001/S020_001_00000009_emotion.txt" in reasons["001"]
    assert "offset 0 is before onset 1" in reasons["002"]
    assert "not one of 0..7" in reasons["003"]
    assert "2 label files" in reasons["004"]
    assert "clip folder" in reasons["005"] and "missing" in reasons["005"]


def test_corrections_apply_by_id(tmp_path):
    root = basic(tmp_path)
    fixes = Corrections(
        (
            Correction("ckplus/S005/001", "emotion", "contempt", "relabelled"),
            Correction("ckplus/S010/002", "exclude", "", "blurred"),
        )
    )
    result = load_ckplus(root, corrections=fixes)
    assert [s.emotion for s in result.samples] == ["contempt"]
    assert "blurred" in result.skipped[0].reason


def test_missing_folders_name_what_was_expected(tmp_path):
    with pytest.raises(MekitError, match="does not exist"):
        load_ckplus(tmp_path / "nope")
    with pytest.raises(MekitError, match=r"cohn-kanade-images.*extended-cohn-kanade-images.zip"):
        load_ckplus(tmp_path)
    root = basic(tmp_path / "ck")
    (root / "Emotion").rename(root / "Labels")
    with pytest.raises(MekitError, match=r"no CK\+ emotion labels.*Emotion_labels.zip"):
        load_ckplus(root)
    # the label folder kept elsewhere is passed as the loader's sheet
    assert len(load_ckplus(root, root / "Labels").samples) == 2


def test_zips_unpacked_into_their_own_folders(tmp_path):
    root = basic(tmp_path / "stage")
    (tmp_path / "ck" / "extended-cohn-kanade-images").mkdir(parents=True)
    (tmp_path / "ck" / "Emotion_labels").mkdir()
    (root / "cohn-kanade-images").rename(
        tmp_path / "ck" / "extended-cohn-kanade-images" / "cohn-kanade-images"
    )
    (root / "Emotion").rename(tmp_path / "ck" / "Emotion_labels" / "Emotion")
    assert len(load_ckplus(tmp_path / "ck").samples) == 2


def test_peak_images(tmp_path):
    root = basic(tmp_path)
    data = ckplus_peak_images(root, size=6)
    assert len(data) == 6 and data.images.shape == (6, 6, 6)
    assert data.ids[:3] == ("ckplus/S005/001/9", "ckplus/S005/001/10", "ckplus/S005/001/11")
    assert data.labels == ("disgust",) * 3 + ("happiness",) * 3
    assert data.subjects == ("S005",) * 3 + ("S010",) * 3 and data.split == ("",) * 6
    assert data.images[2].mean() == pytest.approx(110, abs=1)  # frame 11, grey level 110
    with_neutral = ckplus_peak_images(root, frames_per_sequence=1, size=6, neutral_frames=2)
    assert with_neutral.ids[:3] == ("ckplus/S005/001/1", "ckplus/S005/001/2", "ckplus/S005/001/11")
    assert with_neutral.labels[:3] == ("neutral", "neutral", "disgust")
    # a sequence shorter than the frames asked for gives all it has, none twice
    assert (
        len(ckplus_peak_images(root, frames_per_sequence=8, neutral_frames=5, size=6)) == 8 + 3 + 6
    )
    with pytest.raises(MekitError, match="frames_per_sequence"):
        ckplus_peak_images(root, frames_per_sequence=0)


def test_peak_images_list_unreadable_frames(tmp_path):
    root = basic(tmp_path)
    (root / "cohn-kanade-images" / "S010" / "002" / "S010_002_00000005.png").write_bytes(b"x")
    data = ckplus_peak_images(root, size=6)
    assert len(data) == 5
    assert [s.id for s in data.skipped] == ["ckplus/S010/002/5"]


def test_layout_detection(tmp_path):
    root = basic(tmp_path / "ck")
    write_casme2(tmp_path / "casme")
    assert ckplus.looks_like(root) and not ckplus.looks_like(tmp_path / "casme")
    assert not casme2.looks_like(root) and not fer2013.looks_like(root)
    assert detect_layout(root) == "ckplus"
    name, result = load_corpus(root)
    assert name == "ckplus" and len(result.samples) == 2
    _, renamed = load_corpus(root, "ckplus", dataset="ck")
    assert renamed.samples[0].id == "ck/S005/001"


def test_megc2019_labels(tmp_path):
    root = write_ckplus(
        tmp_path,
        {("S005", f"00{i}"): 3 for i in range(8)},
        {("S005", f"00{i}"): (3, code(i)) for i in range(8)},
    )
    scheme = load_scheme("megc2019")
    labels = {s.emotion: scheme.label_of(s) for s in load_ckplus(root).samples}
    assert labels == {
        "neutral": None,
        "anger": "negative",
        "contempt": "negative",
        "disgust": "negative",
        "fear": "negative",
        "happiness": "positive",
        "sadness": "negative",
        "surprise": "surprise",
    }
