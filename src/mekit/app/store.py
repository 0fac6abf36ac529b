"""The history of `mekit serve`'s analyses: one SQLite row per uploaded video.

A row is created when a video is uploaded (queued), then moves to running and to done or
failed; the worker writes its stage and progress as it goes. Every method opens its own
connection, so the server's threads and an analysis process can share one database file.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATUSES = ("queued", "running", "done", "failed")
# secrets.token_urlsafe(12): 16 characters of [A-Za-z0-9_-]; anything else is not an id.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16}$")
MAX_FILENAME = 120

_SCHEMA = """
CREATE TABLE IF NOT EXISTS analyses (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    filename TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    stage TEXT NOT NULL DEFAULT '',
    progress REAL NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    n_events INTEGER,
    duration_s REAL
);
CREATE INDEX IF NOT EXISTS analyses_created ON analyses (created);
"""


def default_data_dir() -> Path:
    """`$MEKIT_DATA`, else `$XDG_DATA_HOME/mekit`, else `~/.local/share/mekit`."""
    if os.environ.get("MEKIT_DATA"):
        return Path(os.environ["MEKIT_DATA"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "mekit"


def new_id() -> str:
    return secrets.token_urlsafe(12)


def is_valid_id(text: str) -> bool:
    return bool(ID_PATTERN.fullmatch(text))


def sanitise_filename(name: str) -> str:
    """A file name fit for display: no folders, no control characters, at most 120 chars.

    It is never used as a path; uploads are stored under server-generated names.
    """
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c)[0] != "C"
    )
    name = name.strip().strip(".") or "video"
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        keep = MAX_FILENAME - len(ext) - 2 if dot and len(ext) <= 8 else MAX_FILENAME - 1
        name = name[:keep] + "…" + (f".{ext}" if dot and len(ext) <= 8 else "")
    return name


@dataclass(frozen=True)
class Job:
    """One analysis. Times are seconds since the epoch; progress is 0..1."""

    id: str
    created: float
    updated: float
    filename: str
    status: str
    stage: str = ""
    progress: float = 0.0
    error: str = ""
    model: str = ""
    n_events: int | None = None
    duration_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class JobStore:
    """The analyses table of the SQLite file `path`. `open()` creates it if needed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def open(self) -> JobStore:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
        return self

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:  # one transaction: committed on success, rolled back on error
                yield db
        finally:
            db.close()

    def create(self, filename: str, model: str = "", job_id: str | None = None) -> Job:
        now = time.time()
        job = Job(
            id=job_id or new_id(),
            created=now,
            updated=now,
            filename=sanitise_filename(filename),
            status="queued",
            stage="queued",
            model=model,
        )
        with self._connect() as db:
            db.execute(
                "INSERT INTO analyses (id, created, updated, filename, status, stage, model) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job.id, job.created, job.updated, job.filename, job.status, job.stage, model),
            )
        return job

    def get(self, job_id: str) -> Job | None:
        if not is_valid_id(job_id):
            return None
        with self._connect() as db:
            row = db.execute("SELECT * FROM analyses WHERE id = ?", (job_id,)).fetchone()
        return Job(**dict(row)) if row else None

    def recent(self, limit: int = 200) -> list[Job]:
        """Newest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM analyses ORDER BY created DESC, id LIMIT ?", (limit,)
            ).fetchall()
        return [Job(**dict(r)) for r in rows]

    def with_status(self, status: str) -> list[Job]:
        """Oldest first (the order they were queued)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM analyses WHERE status = ? ORDER BY created, id", (status,)
            ).fetchall()
        return [Job(**dict(r)) for r in rows]

    def update(self, job_id: str, *, only_if: str | None = None, **fields: Any) -> bool:
        """Set some columns of a row; False if the row is gone (deleted meanwhile) or, with
        `only_if`, its status is not `only_if` (an analysis writes only while its job is
        running, so one cancelled, timed out or orphaned by a restart cannot flip it back)."""
        writable = set(Job.__dataclass_fields__) - {"id", "created", "updated"}
        unknown = set(fields) - writable
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        if fields.get("status", "queued") not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {fields['status']!r}")
        fields["updated"] = time.time()
        columns = ", ".join(f"{k} = ?" for k in fields)
        where, values = "id = ?", [*fields.values(), job_id]
        if only_if is not None:
            where, values = where + " AND status = ?", [*values, only_if]
        with self._connect() as db:
            cursor = db.execute(f"UPDATE analyses SET {columns} WHERE {where}", values)
        return cursor.rowcount == 1

    def stop(self, job_id: str, reason: str) -> str | None:
        """Fail a queued or running job with `reason`; its status before (None: no such job,
        "done"/"failed": it had finished and is left as it was)."""
        with self._connect() as db:
            row = db.execute("SELECT status FROM analyses WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            if row["status"] in ("queued", "running"):
                db.execute(
                    "UPDATE analyses SET status = 'failed', error = ?, updated = ? WHERE id = ?",
                    (reason, time.time(), job_id),
                )
        return row["status"]

    def start(self, job_id: str) -> bool:
        """Move a queued job to running; False if it is not queued (deleted, already taken)."""
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE analyses SET status = 'running', stage = 'starting', progress = 0, "
                "updated = ? WHERE id = ? AND status = 'queued'",
                (time.time(), job_id),
            )
        return cursor.rowcount == 1

    def delete_unless_running(self, job_id: str) -> bool | None:
        """Delete a row. True if deleted, False if it is running (kept), None if absent."""
        with self._connect() as db:
            row = db.execute("SELECT status FROM analyses WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            if row["status"] == "running":
                return False
            db.execute("DELETE FROM analyses WHERE id = ?", (job_id,))
        return True

    def fail_running(self, reason: str) -> list[str]:
        """Mark every running job failed with `reason` (a server killed mid-analysis)."""
        with self._connect() as db:
            ids = [r["id"] for r in db.execute("SELECT id FROM analyses WHERE status = 'running'")]
            db.execute(
                "UPDATE analyses SET status = 'failed', error = ?, updated = ? "
                "WHERE status = 'running'",
                (reason, time.time()),
            )
        return ids
