from pathlib import Path

import cv2
import numpy as np
import pytest

from mekit.data import smic
from mekit.data.corrections import load_corrections
from mekit.data.labels import load_scheme
from mekit.data.smic import load_smic, looks_like
from mekit.errors import MekitError, SampleError

from .fixtures import write_casme2

IMAGE = np.full((8, 8, 3), 128, np.uint8)


def write_smic(
    base: Path,
    clips: dict[tuple[str, str, str, str], range | list[int]],
    prefix: str = "image",
    suffix: str = ".bmp",
) -> Path:
    """SMIC layout under `base`: {subset}/{subject}/micro/{emotion}/{clip}/image000123.bmp,
    plus a non_micro clip per subject (which the loader must ignore)."""
    for (subset, subject, emotion, clip), numbers in clips.items():
        folder = base / subset / subject / "micro" / emotion / clip
        folder.mkdir(parents=True)
        for n in numbers:
            cv2.imwrite(str(folder / f"{prefix}{n:06d}{suffix}"), IMAGE)
        other = base / subset / subject / "non_micro" / f"{subject}_n1"
        if not other.exists():
            other.mkdir(parents=True)
            cv2.imwrite(str(other / f"{prefix}000001{suffix}"), IMAGE)
    return base


def standard(root: Path) -> Path:
    return write_smic(
        root / "SMIC_all_raw",
        {
            ("HS", "s1", "negative", "s1_ne_01"): range(106663, 106674),
            ("HS", "s1", "positive", "s1_po_01"): range(200, 205),
            ("HS", "s10", "surprise", "s10_sur_01"): range(31, 40),
            ("HS", "s2", "surprise", "s2_sur_01"): range(10, 20),
            ("VIS", "s1", "negative", "s1_ne_01"): range(1, 6),
            ("NIR", "s1", "positive", "s1_po_01"): range(1, 4),
        },
    )


def test_reads_hs_with_labels_from_folders(tmp_path):
    root = standard(tmp_path)
    result = load_smic(root)
    assert [s.id for s in result.samples] == [
        "smic/s1/s1_ne_01",
        "smic/s1/s1_po_01",
        "smic/s2/s2_sur_01",
        "smic/s10/s10_sur_01",
    ]
    first = result.samples[0]
    assert (first.dataset, first.subject, first.clip) == ("smic", "s1", "s1_ne_01")
    assert (first.onset, first.apex, first.offset) == (106663, 106668, 106673)
    assert first.apex_source == "midpoint" and first.kind == "micro" and first.video is None
    assert first.emotion == "negative" and first.aus == "" and first.fps == 100.0
    assert first.frame_path(106663).name == "image106663.bmp"
    assert first.frame_numbers == tuple(range(106663, 106674))
    assert [s.emotion for s in result.samples] == ["negative", "positive", "surprise", "surprise"]
    assert result.skipped == () and result.videos == ()
    assert all("non_micro" not in str(p) for s in result.samples for p in s.frames)


def test_vis_and_nir_subsets(tmp_path):
    root = standard(tmp_path)
    (vis,) = load_smic(root, subset="VIS").samples
    assert vis.id == "smic_vis/s1/s1_ne_01" and vis.dataset == "smic_vis" and vis.fps == 25.0
    (nir,) = load_smic(root, subset="nir").samples
    assert nir.id == "smic_nir/s1/s1_po_01" and nir.fps == 25.0 and nir.apex == 2
    (mine,) = load_smic(root, subset="VIS", dataset="x", fps=30.0).samples
    assert mine.id == "x/s1/s1_ne_01" and mine.fps == 30.0


def test_root_may_be_the_subset_folder_or_one_level_up(tmp_path):
    write_smic(
        tmp_path / "SMIC" / "SMIC_all_cropped",
        {("HS", "s3", "positive", "s3_po_08"): range(5, 9)},
        prefix="reg_image",
    )
    for root in (tmp_path / "SMIC", tmp_path / "SMIC" / "SMIC_all_cropped"):
        (sample,) = load_smic(root).samples
        assert sample.id == "smic/s3/s3_po_08"
        assert sample.frames[0].name == "reg_image000005.bmp"
    (sample,) = load_smic(tmp_path / "SMIC" / "SMIC_all_cropped" / "HS").samples
    assert sample.frame_numbers == (5, 6, 7, 8)
    with pytest.raises(MekitError, match="SMIC HS folder, but subset VIS"):
        load_smic(tmp_path / "SMIC" / "SMIC_all_cropped" / "HS", subset="VIS")


def test_jpg_frames_and_a_renamed_subset_folder(tmp_path):
    write_smic(tmp_path, {("SMIC_HS", "s4", "negative", "s4_ne_02"): [1, 2, 3]}, suffix=".jpg")
    (sample,) = load_smic(tmp_path / "SMIC_HS").samples
    assert sample.frames[1].name == "image000002.jpg" and sample.apex == 2


def test_raw_and_cropped_copies_side_by_side_are_ambiguous(tmp_path):
    write_smic(tmp_path / "SMIC_all_raw", {("HS", "s1", "negative", "s1_ne_01"): [1, 2]})
    write_smic(tmp_path / "SMIC_all_cropped", {("HS", "s1", "negative", "s1_ne_01"): [1, 2]})
    with pytest.raises(MekitError, match="several SMIC HS folders"):
        load_smic(tmp_path)
    assert looks_like(tmp_path)


def test_gap_at_the_midpoint_uses_the_nearest_frame(tmp_path):
    write_smic(tmp_path, {("HS", "s3", "surprise", "s3_sur_01"): [10, 11, 12, 16, 17, 20]})
    (sample,) = load_smic(tmp_path).samples
    assert (sample.onset, sample.apex, sample.offset) == (10, 16, 20)
    assert sample.apex_source == "midpoint"


def test_apex_finder_hook(tmp_path):
    write_smic(
        tmp_path,
        {
            ("HS", "s1", "negative", "s1_ne_01"): range(1, 11),
            ("HS", "s1", "negative", "s1_ne_02"): range(1, 11),
            ("HS", "s1", "negative", "s1_ne_03"): range(1, 11),
        },
    )

    def finder(sample):
        if sample.clip == "s1_ne_03":
            raise SampleError(sample.id, "no face found")
        return {"s1_ne_01": 8, "s1_ne_02": 40}[sample.clip]

    result = load_smic(tmp_path, apex_finder=finder)
    (sample,) = result.samples
    assert sample.apex == 8 and sample.apex_source == "spotted"
    reasons = {s.id: s.reason for s in result.skipped}
    assert "apex finder gave frame 40" in reasons["smic/s1/s1_ne_02"]
    assert "no face found" in reasons["smic/s1/s1_ne_03"]


def test_bad_clips_are_skipped_with_reasons(tmp_path):
    write_smic(
        tmp_path,
        {
            ("HS", "s1", "negative", "s1_ne_01"): range(1, 11),  # apex corrected beyond the end
            ("HS", "s1", "negative", "s1_ne_02"): range(1, 11),  # onset corrected past the apex
            ("HS", "s1", "negative", "s1_ne_03"): [],  # an empty clip folder
            ("HS", "s1", "negative", "s1_ne_04"): range(1, 11),  # excluded
            ("HS", "s1", "negative", "s1_ne_05"): range(1, 11),
        },
    )
    corrections = tmp_path / "fix.csv"
    corrections.write_text(
        "id,field,value,reason\n"
        "smic/s1/s1_ne_01,apex,15,test\n"
        "smic/s1/s1_ne_02,onset,8,test\n"
        "smic/s1/s1_ne_02,apex,5,test\n"
        "smic/s1/s1_ne_04,exclude,,blurred\n"
        "smic/s1/s1_ne_05,apex,3,spotted by hand\n"
    )
    result = load_smic(tmp_path / "HS", corrections=load_corrections(corrections))
    (sample,) = result.samples
    assert sample.id == "smic/s1/s1_ne_05" and sample.apex == 3
    assert sample.apex_source == "corrected"
    reasons = {s.id.split("/")[-1]: s.reason for s in result.skipped}
    assert "apex 15 is outside onset..offset 1..10" in reasons["s1_ne_01"]
    assert "(HS/s1/micro/negative/s1_ne_01)" in reasons["s1_ne_01"]
    assert "apex 5 is outside onset..offset 8..10" in reasons["s1_ne_02"]
    assert "no image frames" in reasons["s1_ne_03"]
    assert "blurred" in reasons["s1_ne_04"]


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(MekitError, match="does not exist"):
        load_smic(tmp_path / "nope")
    root = standard(tmp_path)
    with pytest.raises(MekitError, match="not one of HS, VIS, NIR"):
        load_smic(root, subset="RGB")
    with pytest.raises(MekitError, match="no annotation sheet"):
        load_smic(root, tmp_path / "sheet.xlsx")
    only_vis = write_smic(tmp_path / "vis_only", {("VIS", "s1", "negative", "s1_ne_01"): [1]})
    with pytest.raises(MekitError, match=r"no SMIC HS subject folders.*smic_vis"):
        load_smic(only_vis)
    with pytest.raises(MekitError, match="no SMIC HS subject folders"):
        load_smic(write_casme2(tmp_path / "casme2"))


def test_looks_like(tmp_path):
    root = standard(tmp_path / "a")
    assert looks_like(root) and looks_like(root / "HS") and looks_like(tmp_path / "a")
    assert looks_like(root / "VIS")
    assert not looks_like(write_casme2(tmp_path / "casme2"))
    assert not looks_like(tmp_path / "missing")
    long_clips = tmp_path / "smic_e" / "SMIC-HS-E" / "s01" / "s1_ne_01"
    long_clips.mkdir(parents=True)
    cv2.imwrite(str(long_clips / "image000001.jpg"), IMAGE)
    assert not looks_like(tmp_path / "smic_e")


def test_megc2019_labels(tmp_path):
    root = standard(tmp_path)
    scheme = load_scheme("megc2019")
    for subset in smic.SUBSETS:
        for sample in load_smic(root, subset=subset).samples:
            assert scheme.label_of(sample) == sample.emotion
