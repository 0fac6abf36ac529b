import numpy as np
import pytest

from mekit.fileio import atomic_open, atomic_write


class Interrupted(Exception):
    pass


def test_success_replaces_the_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    atomic_write(path, "new text")
    assert path.read_text() == "new text"
    atomic_write(path, b"\x00\x01bytes")
    assert path.read_bytes() == b"\x00\x01bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_callback_writes_to_the_temp_path(tmp_path):
    path = tmp_path / "blob.bin"
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert tmp.parent == tmp_path and tmp != path  # same folder: the rename is atomic
        tmp.write_bytes(b"payload")

    atomic_write(path, write)
    assert path.read_bytes() == b"payload"
    assert not seen[0].exists()
    assert [p.name for p in tmp_path.iterdir()] == ["blob.bin"]


@pytest.mark.parametrize("how", ["callback", "open"])
def test_interrupted_write_keeps_the_old_file_and_no_temp_file(tmp_path, how):
    path = tmp_path / "table.csv"
    path.write_text("old,complete\n")

    def half_then_fail(tmp):
        tmp.write_text("new,half")
        raise Interrupted

    with pytest.raises(Interrupted):
        if how == "callback":
            atomic_write(path, half_then_fail)
        else:
            with atomic_open(path, "w") as f:
                f.write("new,half")
                raise Interrupted
    assert path.read_text() == "old,complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_interrupted_first_write_creates_nothing(tmp_path):
    with pytest.raises(Interrupted), atomic_open(tmp_path / "a.npy", "wb") as f:
        f.write(b"partial")
        raise Interrupted
    assert list(tmp_path.iterdir()) == []


def test_atomic_open_takes_writers_of_file_objects(tmp_path):
    path = tmp_path / "arr.npy"
    with atomic_open(path, "wb", fsync=True) as f:
        np.save(f, np.arange(5))
    assert np.load(path).tolist() == [0, 1, 2, 3, 4]
    assert [p.name for p in tmp_path.iterdir()] == ["arr.npy"]


def test_a_callback_that_writes_elsewhere_is_an_error(tmp_path):
    path = tmp_path / "x.npz"
    with pytest.raises(FileNotFoundError, match="atomic_open"):
        atomic_write(path, lambda tmp: np.savez(str(tmp), a=np.zeros(1)))  # writes tmp + ".npz"
    assert not path.exists()


def test_bad_mode_and_data_are_refused(tmp_path):
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "a", "a"):
        pass
    with pytest.raises(TypeError):
        atomic_write(tmp_path / "a", 3)  # type: ignore[arg-type]
