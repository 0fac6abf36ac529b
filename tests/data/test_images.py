from pathlib import Path

import cv2
import numpy as np
import pytest

from mekit.data.images import ImageSet, load_image_folder, read_grey
from mekit.data.labels import load_scheme
from mekit.errors import MekitError


def write_folder(root: Path, files: dict[str, list[str]], side: int = 8) -> Path:
    """ROOT/{label}/{name}: tiny images whose grey level is the file's index (1, 2, ...)."""
    value = 0
    for label, names in files.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for name in names:
            value += 1
            image = np.full((side, side, 3), value * 10, np.uint8)  # colour: read back as grey
            assert cv2.imwrite(str(root / label / name), image)
    return root


def test_reads_label_folders_as_grey_images_of_one_size(tmp_path):
    root = write_folder(
        tmp_path / "pretrain",
        {"Happy": ["b.png", "a.jpg"], "surprise": ["x.png"], "anger": ["c.bmp"]},
        side=20,
    )
    (root / "Happy" / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir()
    data = load_image_folder(root, 16)
    assert isinstance(data, ImageSet)
    assert len(data) == 4 and data.images.shape == (4, 16, 16) and data.images.dtype == np.uint8
    assert data.size == (16, 16)
    # label then file-name order; labels lower-cased; ids f"{root.name}/{label}/{stem}"
    assert data.ids == (
        "pretrain/anger/c",
        "pretrain/happy/a",
        "pretrain/happy/b",
        "pretrain/surprise/x",
    )
    assert data.labels == ("anger", "happy", "happy", "surprise")
    assert data.subjects == ("", "", "", "") and data.split == ("", "", "", "")
    assert data.dataset == "pretrain" and data.skipped == ()
    assert data.label_names() == ("anger", "happy", "surprise")
    # the grey level survives (a.jpg was the second file written: 20; c.bmp the fourth: 40)
    assert abs(int(data.images[1].mean()) - 20) <= 2 and int(data.images[0].mean()) == 40
    with pytest.raises(ValueError):
        data.images[0, 0, 0] = 1  # read-only


def test_rename_and_dataset_name(tmp_path):
    root = write_folder(tmp_path / "faces", {"happy": ["1.png"], "sad": ["2.png"]})
    data = load_image_folder(root, 8, dataset="mine", rename={"Happy": "happiness"})
    assert data.labels == ("happiness", "sad")
    assert data.ids == ("faces/happiness/1", "faces/sad/2") and data.dataset == "mine"


def test_unreadable_and_duplicate_images_are_skipped_with_reasons(tmp_path):
    root = write_folder(tmp_path / "set", {"fear": ["ok.png", "same.png", "same.jpg"]})
    (root / "fear" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "fear" / "empty.png").write_bytes(b"")
    data = load_image_folder(root, 8)
    assert data.ids == ("set/fear/ok", "set/fear/same")
    reasons = {s.id: s.reason for s in data.skipped}
    assert set(reasons) == {"set/fear/broken", "set/fear/empty", "set/fear/same"}
    assert (
        "cannot decode" in reasons["set/fear/broken"] and "broken.jpg" in reasons["set/fear/broken"]
    )
    assert "same stem" in reasons["set/fear/same"]


def test_wrong_root_names_the_path_and_the_layout(tmp_path):
    with pytest.raises(MekitError, match=r"nope does not exist.*\{label\}"):
        load_image_folder(tmp_path / "nope", 48)
    (tmp_path / "flat").mkdir()
    cv2.imwrite(str(tmp_path / "flat" / "a.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(MekitError, match=r"no images found .*Found: a.png"):
        load_image_folder(tmp_path / "flat", 48)
    with pytest.raises(MekitError, match="size"):
        load_image_folder(tmp_path / "flat", 0)


def test_read_grey_crops_then_resizes(tmp_path):
    image = np.zeros((40, 60), np.uint8)
    image[10:30, 20:40] = 200
    path = tmp_path / "f.png"
    cv2.imwrite(str(path), image)
    face = read_grey(path, 10, crop=lambda im: im[10:30, 20:40])
    assert face.shape == (10, 10) and face.min() == 200
    assert read_grey(path, None).shape == (40, 60)


def make_set(labels, dataset="x", side=4):
    n = len(labels)
    return ImageSet(
        ids=tuple(f"{dataset}/{i}" for i in range(n)),
        images=np.arange(n, dtype=np.uint8)[:, None, None].repeat(side, 1).repeat(side, 2),
        labels=tuple(labels),
        subjects=("",) * n,
        split=("Training",) * n,
        dataset=dataset,
    )


def test_select_concat_and_checks():
    data = make_set(["happiness", "neutral", "fear"])
    picked = data.select([2, 0])
    assert picked.ids == ("x/2", "x/0") and picked.labels == ("fear", "happiness")
    assert picked.images[:, 0, 0].tolist() == [2, 0]
    masked = data.select(np.array([False, True, False]))
    assert masked.ids == ("x/1",)
    both = ImageSet.concat([data, make_set(["sadness"], dataset="y")])
    assert len(both) == 4 and both.dataset == "x+y" and both.ids[-1] == "y/0"
    with pytest.raises(MekitError, match="sizes"):
        ImageSet.concat([data, make_set(["fear"], side=5)])
    with pytest.raises(ValueError, match="lengths"):
        ImageSet(("a",), np.zeros((2, 4, 4), np.uint8), ("l",), ("",), ("",), "x")
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(("a",), np.zeros((1, 4, 4), np.float32), ("l",), ("",), ("",), "x")


def test_relabel_with_the_megc2019_scheme():
    data = make_set(["happiness", "neutral", "sadness", "surprise"], dataset="fer2013")
    mapped = data.relabel(load_scheme("megc2019"))
    assert mapped.labels == ("positive", "negative", "surprise")
    assert mapped.ids == ("fer2013/0", "fer2013/2", "fer2013/3")
    assert [(s.id, "neutral" in s.reason) for s in mapped.skipped] == [("fer2013/1", True)]
