"""How `mekit serve` runs (`ServeSettings`), the lock that keeps one server per history, and
the checks made before the server starts (`preflight`)."""

from __future__ import annotations

import fcntl
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from mekit.app.store import JobStore, default_data_dir
from mekit.app.uploads import VideoLimits
from mekit.app.worker import ISOLATIONS
from mekit.config import Config, choice_enum
from mekit.errors import MekitError

Isolation = choice_enum("Isolation", ISOLATIONS, __name__)


@dataclass(frozen=True)
class ServeSettings(Config):
    """How `mekit serve` runs.

    data_dir: the history database (unless `db` is given), uploads/ and analyses/.
    model: the recognition model file (None: `analyze`'s default).
    max_upload_mb: uploads over this many MiB are refused (413) while they stream in.
    upload_timeout_s: an upload that sends nothing for this many seconds is dropped (408).
    max_frame_side, max_frames, max_duration_s: videos with larger frames (longer side, px),
      more frames or a longer duration (s) than their container header announces are refused
      (413) before they are queued.
    max_job_s: an analysis running longer is stopped and its job failed.
    jobs: analyses run at the same time. isolation: "process" (each analysis in a fresh
      process: a crash fails only that job) or "thread".
    Paths are made absolute when the settings are made, so the server never depends on the
    folder it was started from.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=default_data_dir)
    db: Path | None = None
    model: Path | None = None
    max_upload_mb: float = 500.0
    upload_timeout_s: float = 60.0
    max_frame_side: int = 3840
    max_frames: int = 108_000
    max_duration_s: float = 1800.0
    max_job_s: float = 3600.0
    jobs: int = 1
    isolation: Isolation = Isolation("process")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("data_dir", "db", "model"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value).expanduser().resolve())

    def check(self) -> None:
        for option, value in (
            ("--upload-timeout-s", self.upload_timeout_s),
            ("--max-frame-side", self.max_frame_side),
            ("--max-frames", self.max_frames),
            ("--max-duration-s", self.max_duration_s),
            ("--max-job-s", self.max_job_s),
        ):
            if not value > 0:
                raise MekitError(f"{option} {value:g}: give a positive number")
        if not 1 <= self.port <= 65535:
            raise MekitError(f"--port {self.port}: give a port between 1 and 65535")
        if self.max_upload_mb <= 0:
            raise MekitError(f"--max-upload-mb {self.max_upload_mb:g}: give a positive size")
        if self.jobs < 1:
            raise MekitError(f"jobs={self.jobs}: at least one analysis must be able to run")

    @property
    def db_path(self) -> Path:
        return self.db if self.db is not None else self.data_dir / "mekit.db"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def video_limits(self) -> VideoLimits:
        return VideoLimits(self.max_frame_side, self.max_frames, self.max_duration_s)


class DataDirLock:
    """An exclusive lock on DATA_DIR/serve.lock: one server per history."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = None

    def acquire(self) -> None:
        self._file = open(self.path, "a")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            self._file = None
            raise MekitError(
                f"another mekit serve is using {self.path.parent}; stop it or give --data-dir"
            ) from None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def preflight(settings: ServeSettings) -> None:
    """Raise MekitError now, rather than inside the server's startup, if the model cannot be
    loaded (missing, failing its hash check, invalid), the data dir or the database cannot be
    used or another server holds them."""
    if settings.model is not None:
        from mekit.app.recognise import load_recogniser

        try:
            load_recogniser(settings.model)
        except MekitError as e:
            raise MekitError(
                f"the model cannot be used, so the server does not start: {e}"
            ) from None
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        JobStore(settings.db_path).open()
    except (OSError, sqlite3.Error) as e:
        raise MekitError(
            f"cannot keep the history in {settings.db_path} ({e}); give another --data-dir or --db"
        ) from None
    lock = DataDirLock(settings.data_dir / "serve.lock")
    lock.acquire()
    lock.release()
