from pathlib import Path

import cv2
import numpy as np

from mekit.data.imagecheck import image_problem


def _image(path: Path) -> Path:
    noise = np.random.default_rng(1).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    cv2.imwrite(str(path), noise)
    return path


def test_whole_images_pass_and_damaged_ones_are_named(tmp_path):
    for suffix in (".jpg", ".png"):
        good = _image(tmp_path / f"good{suffix}")
        assert image_problem(good) is None
        cut = _image(tmp_path / f"cut{suffix}")
        cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 3])
        problem = image_problem(cut)
        assert problem is not None and str(cut) in problem
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert "empty" in image_problem(empty)
    assert "cannot read" in image_problem(tmp_path / "absent.png")
    text = tmp_path / "text.png"
    text.write_text("hello")
    assert "not an image" in image_problem(text)


def test_feature_readers_refuse_a_truncated_frame(tmp_path):
    import pytest

    from mekit.motion.extract import SampleError, read_apex_image, read_frame

    cut = _image(tmp_path / "img46.jpg")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 3])
    with pytest.raises(SampleError, match="img46.jpg is truncated"):
        read_frame(cut, "casme2/sub01/EP01")
    with pytest.raises(SampleError, match="img46.jpg is truncated"):
        read_apex_image(cut, 28, "casme2/sub01/EP01")
    assert read_frame(_image(tmp_path / "ok.jpg"), "x").shape == (48, 48, 3)
