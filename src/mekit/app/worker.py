"""The background worker of `mekit serve`: runs queued analyses, one at a time by default.

With `isolation="process"` (the server's default) each analysis runs in a fresh spawned
process that writes its progress straight into the SQLite store, so a crash of native code
(a decoder, dlib) or an out-of-memory kill fails that job with its reason and leaves the server
running. `isolation="thread"` runs the analysis in the worker thread (tests, fake analyzers that
cannot be pickled); an exception still fails only that job.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import queue
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mekit.app.store import JobStore
from mekit.app.uploads import VIDEO_EXTENSIONS
from mekit.errors import MekitError

log = logging.getLogger(__name__)

ISOLATIONS = ("process", "thread")
STALE_REASON = "the server stopped while this analysis was running; upload the video again"
STOPPED_REASON = "the server was stopped during this analysis; upload the video again"


@dataclass(frozen=True)
class Layout:
    """Where a data dir keeps things: uploads/ID.EXT (server names only), analyses/ID/."""

    data_dir: Path

    @property
    def uploads(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def analyses(self) -> Path:
        return self.data_dir / "analyses"

    def upload(self, job_id: str, extension: str) -> Path:
        return self.uploads / f"{job_id}{extension}"

    def find_upload(self, job_id: str) -> Path | None:
        for ext in VIDEO_EXTENSIONS:
            if self.upload(job_id, ext).is_file():
                return self.upload(job_id, ext)
        return None

    def out(self, job_id: str) -> Path:
        return self.analyses / job_id

    def remove(self, job_id: str) -> None:
        """Delete the upload and the outputs of a job."""
        for ext in (*VIDEO_EXTENSIONS, ".part"):
            self.upload(job_id, ext).unlink(missing_ok=True)
        shutil.rmtree(self.out(job_id), ignore_errors=True)


class _ProgressWriter:
    """The `progress(stage, fraction)` callback: writes to the store, at most ~4 times/s."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store, self.job_id = store, job_id
        self._stage, self._last = "", 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage == self._stage and now - self._last < 0.25:
            return
        self._stage, self._last = stage, now
        fraction = min(max(float(fraction), 0.0), 1.0)
        try:
            self.store.update(self.job_id, stage=str(stage)[:200], progress=fraction)
        except Exception:  # progress is informative; never let it fail the analysis
            log.warning("could not record the progress of %s", self.job_id, exc_info=True)


def run_job(
    analyze: Callable, db: Path, job_id: str, video: Path, out: Path, model: Path | None
) -> None:
    """Run one analysis and record its outcome in the store (in this thread or process)."""
    store = JobStore(db)
    job = store.get(job_id)
    # Messages name the video as its user knows it, not by the server's file name.
    shown = job.filename if job is not None else video.name

    def reason(e: Exception) -> str:
        return (str(e) or type(e).__name__).replace(str(video), shown)

    try:
        out.mkdir(parents=True, exist_ok=True)
        analyze(video, out, model=model, progress=_ProgressWriter(store, job_id))
        try:
            result = json.loads((out / "analysis.json").read_text())
            events = result["events"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MekitError(f"the analysis wrote no readable analysis.json ({e})") from None
        store.update(
            job_id,
            status="done",
            stage="done",
            progress=1.0,
            error="",
            n_events=len(events),
            duration_s=result.get("duration_s"),
            model=str((result.get("model") or {}).get("path") or model or ""),
        )
    except MekitError as e:
        store.update(job_id, status="failed", error=reason(e))
    except Exception as e:
        log.exception("analysis %s failed", job_id)
        store.update(job_id, status="failed", error=f"{type(e).__name__}: {reason(e)}")


def _run_job_in_child(*args: Any) -> None:
    # Ctrl-C in the terminal reaches the whole process group: the server handles it and
    # terminates this process itself, so the job gets the right reason.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_job(*args)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the analysis process was killed ({name}; out of memory?)"
    return f"the analysis process stopped unexpectedly (exit code {code})"


class Worker:
    """Threads that take queued job ids and run them with `analyze`."""

    def __init__(
        self,
        store: JobStore,
        layout: Layout,
        analyze: Callable,
        model: Path | None = None,
        jobs: int = 1,
        isolation: str = "process",
    ) -> None:
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}, not {isolation!r}")
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, not {jobs}")
        self.store = store
        self.layout = layout
        self.analyze = analyze
        self.model = model
        self.jobs = jobs
        self.isolation = isolation
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._processes: dict[str, multiprocessing.process.BaseProcess] = {}

    def start(self) -> None:
        """Fail the jobs a killed server left running, queue the waiting ones, start."""
        for job_id in self.store.fail_running(STALE_REASON):
            log.warning("analysis %s was left running by a stopped server: marked failed", job_id)
        for job in self.store.with_status("queued"):
            self._queue.put(job.id)
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._loop, name=f"mekit-worker-{i}", daemon=True)
            for i in range(self.jobs)
        ]
        for t in self._threads:
            t.start()

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    @property
    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking jobs; analysis processes are terminated and their jobs failed."""
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)  # wakes each thread at once
        for p in list(self._processes.values()):
            p.terminate()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if job_id is None:
                break
            try:
                self._run(job_id)
            except Exception:  # the store itself failed: log, keep serving
                log.exception("worker could not run analysis %s", job_id)

    def _run(self, job_id: str) -> None:
        if not self.store.start(job_id):
            return  # deleted while queued, or taken by another worker thread
        video = self.layout.find_upload(job_id)
        if video is None:
            self.store.update(job_id, status="failed", error="the uploaded video is missing")
            return
        args = (self.analyze, self.store.path, job_id, video, self.layout.out(job_id), self.model)
        if self.isolation == "thread":
            run_job(*args)
            return
        process = multiprocessing.get_context("spawn").Process(
            target=_run_job_in_child, args=args, name=f"mekit-analysis-{job_id}", daemon=True
        )
        self._processes[job_id] = process
        try:
            process.start()
            process.join()
        finally:
            self._processes.pop(job_id, None)
        job = self.store.get(job_id)
        if job is not None and job.status == "running":
            reason = STOPPED_REASON if self._stop.is_set() else _exit_reason(process.exitcode)
            self.store.update(job_id, status="failed", error=reason)
