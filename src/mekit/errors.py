"""Errors a user can fix. The CLI prints their message and exits non-zero, never a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class MekitError(Exception):
    """A problem with the user's input or setup; the message says what to change."""


class SampleError(MekitError):
    """One sample cannot be used; a run skips it, lists it in the report and goes on."""

    def __init__(self, sample_id: str, reason: str) -> None:
        super().__init__(f"{sample_id}: {reason}")
        self.sample_id = sample_id
        self.reason = reason


def output_folder(path: Path, option: str = "--out") -> Path:
    """Create the output folder `path` (and its parents) and check that files can be written
    in it; `MekitError` naming the path and the fix otherwise. Returns `path`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".mekit-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise MekitError(describe_os_error(e, path, option)) from None
    return path


def describe_os_error(error: OSError, path: Path | None = None, option: str = "--out") -> str:
    """One line for a failed write: the path, why, and what to change."""
    where = error.filename if error.filename is not None else path
    if isinstance(error, FileExistsError | NotADirectoryError) or error.errno in (
        errno.EEXIST,
        errno.ENOTDIR,
    ):
        fix = f"a file is in the way of the folder; give {option} a folder path"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"the folder is not writable; make it writable or give another {option}"
    elif error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"the disk is full; free space or give {option} a folder on another disk"
    else:
        fix = f"check the path, or give another {option}"
    return f"cannot write {where} ({error.strerror or error}): {fix}"
