"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

Everything is written to a temporary file in the target's own folder (so the final
`os.replace` is a rename on one file system, atomic on POSIX and Windows) and renamed over
the target only once the write has finished; any error removes the temporary file and leaves
the old target as it was. The temporary name is `.{name}.{pid}.{random}.tmp`, hidden, and
unique per writer, so concurrent writers of one target never share a temporary file.

Three faces of the one mechanism:

* `atomic_write(path, "text")` or `atomic_write(path, b"bytes")`;
* `atomic_write(path, lambda tmp: torch.save(obj, tmp))`: a callback that writes to the
  temporary path it is given (numpy's `save`/`savez` add their own suffix to a path, so give
  them the open file instead, below);
* `with atomic_open(path, "wb") as f: np.save(f, array)`: an open file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block ends
    without an error, removed when it raises (the error propagates)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        # Reached with `tmp` still there only on an error (or a write that never renamed).
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", *, fsync: bool = False, **kwargs: Any
) -> Iterator[IO[Any]]:
    """`open(path, mode, **kwargs)` on a temporary file that replaces `path` on success.

    `fsync=True` flushes the data to disk before the rename (for files a crash must not
    leave empty, such as resumable checkpoints)."""
    if not mode.startswith(("w", "x")):
        raise ValueError(f"atomic_open writes a new file; mode must be 'w' or 'wb', not {mode!r}")
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def atomic_write(
    path: str | os.PathLike[str],
    data: str | bytes | Callable[[Path], object],
    *,
    encoding: str = "utf-8",
) -> None:
    """Write `data` (text, bytes, or a callback writing to the path it is given) to `path`
    atomically."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding=encoding)
        elif isinstance(data, bytes | bytearray | memoryview):
            tmp.write_bytes(data)
        elif callable(data):
            data(tmp)
            if not tmp.exists():
                raise FileNotFoundError(
                    f"the writer given for {path} wrote nothing at {tmp} (numpy's save adds "
                    "a suffix to a path: pass it the file from atomic_open instead)"
                )
        else:
            raise TypeError(f"atomic_write takes str, bytes or a callback, not {type(data)}")
