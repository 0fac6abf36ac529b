"""The background worker of `mekit serve`: runs queued analyses, one at a time by default.

With `isolation="process"` (the server's default) each analysis runs in a fresh spawned
process that writes its progress straight into the SQLite store, so a crash of native code
(a decoder, dlib) or an out-of-memory kill fails that job with its reason and leaves the server
running. `isolation="thread"` runs the analysis in the worker thread (tests, fake analyzers that
cannot be pickled); an exception still fails only that job.

A job can be cancelled (`Worker.cancel`) and has a time limit (`limit_s`). An analysis
process leads its own process group, whose id is kept in DATA_DIR/running/ID.pid while it runs:
a server killed with SIGKILL leaves it running, and the next server kills that group
(`kill_orphans`) before it starts new work. An analysis writes to its job only while the job
is running (`JobStore.update(only_if="running")`), so a job cancelled, timed out or failed by
a restart stays failed.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
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
from mekit.fileio import atomic_write

log = logging.getLogger(__name__)

ISOLATIONS = ("process", "thread")
STALE_REASON = "the server stopped while this analysis was running; upload the video again"
STOPPED_REASON = "the server was stopped during this analysis; upload the video again"
CANCELLED_REASON = "cancelled"


def time_limit_reason(limit_s: float) -> str:
    return (
        f"the analysis took longer than the limit of {limit_s:g} s and was stopped; try a "
        "shorter video (the limit: mekit serve --max-job-s)"
    )


class JobStopped(Exception):
    """Raised inside an analysis (through its progress callback) to end it: the job was
    cancelled or ran past its time limit; the message is the reason."""


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

    @property
    def running(self) -> Path:
        """ID.pid for each analysis process running: "PID START_TIME" (see `kill_orphans`)."""
        return self.data_dir / "running"

    def remove(self, job_id: str) -> None:
        """Delete the upload and the outputs of a job."""
        for ext in (*VIDEO_EXTENSIONS, ".part"):
            self.upload(job_id, ext).unlink(missing_ok=True)
        shutil.rmtree(self.out(job_id), ignore_errors=True)


class _ProgressWriter:
    """The `progress(stage, fraction)` callback: writes to the store, at most ~4 times/s.

    Raises `JobStopped` once the job is no longer running (cancelled) or past its deadline
    (`limit_s` after it was made), which ends an analysis that runs in a thread.
    """

    def __init__(self, store: JobStore, job_id: str, limit_s: float | None = None) -> None:
        self.store, self.job_id = store, job_id
        self.limit_s = limit_s
        self.deadline = time.monotonic() + limit_s if limit_s else None
        self._stage, self._last = "", 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if self.deadline is not None and now > self.deadline:
            raise JobStopped(time_limit_reason(self.limit_s or 0.0))
        if stage == self._stage and now - self._last < 0.25:
            return
        self._stage, self._last = stage, now
        fraction = min(max(float(fraction), 0.0), 1.0)
        try:
            running = self.store.update(
                self.job_id, only_if="running", stage=str(stage)[:200], progress=fraction
            )
        except Exception:  # progress is informative; never let it fail the analysis
            log.warning("could not record the progress of %s", self.job_id, exc_info=True)
            return
        if not running:
            raise JobStopped(CANCELLED_REASON)


def run_job(
    analyze: Callable,
    db: Path,
    job_id: str,
    video: Path,
    out: Path,
    model: Path | None,
    limit_s: float | None = None,
) -> None:
    """Run one analysis and record its outcome in the store (in this thread or process), as
    long as the job is running: a job cancelled or failed meanwhile keeps its state."""
    store = JobStore(db)
    job = store.get(job_id)
    # Messages name the video as its user knows it, not by the server's file names.
    shown = job.filename if job is not None else video.name

    def reason(e: Exception) -> str:
        text = (str(e) or type(e).__name__).replace(str(video), shown)
        return text.replace(f"{out}/", "").replace(str(out), "the analysis folder")

    try:
        out.mkdir(parents=True, exist_ok=True)
        analyze(video, out, model=model, progress=_ProgressWriter(store, job_id, limit_s))
        try:
            result = json.loads((out / "analysis.json").read_text())
            events = result["events"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MekitError(f"the analysis wrote no readable analysis.json ({e})") from None
        store.update(
            job_id,
            only_if="running",
            status="done",
            stage="done",
            progress=1.0,
            error="",
            n_events=len(events),
            duration_s=result.get("duration_s"),
            model=str((result.get("model") or {}).get("path") or model or ""),
        )
    except (MekitError, JobStopped) as e:
        store.update(job_id, only_if="running", status="failed", error=reason(e))
    except Exception as e:
        log.exception("analysis %s failed", job_id)
        store.update(
            job_id, only_if="running", status="failed", error=f"{type(e).__name__}: {reason(e)}"
        )


def _run_job_in_child(*args: Any) -> None:
    # Its own process group: the server (or the next one, after a crash) ends the analysis
    # and anything it started with one killpg. Ctrl-C in the terminal does not reach it; the
    # server stops it itself, so the job gets the right reason.
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_job(*args)


def _start_time(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks after boot, /proc/PID/stat field 22), or
    None if there is no such process (or it is a zombie). Tells a pid from a reused one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if not fields or fields[0] == "Z":
        return None
    return fields[19] if len(fields) > 19 else None


def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_orphans(layout: Layout, wait_s: float = 5.0) -> list[str]:
    """Kill the analysis process groups that a killed server left running (DATA_DIR/running);
    the job ids whose analysis was killed. A pid file whose process is gone, or whose pid now
    belongs to another process (its start time differs), is only removed."""
    killed = []
    for pid_file in sorted(layout.running.glob("*.pid")):
        try:
            pid_text, started = pid_file.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            pid, started = 0, ""
        if pid > 1 and _start_time(pid) == started:
            _kill_group(pid)
            deadline = time.monotonic() + wait_s
            while _start_time(pid) is not None and time.monotonic() < deadline:
                time.sleep(0.02)
            killed.append(pid_file.stem)
            log.warning(
                "killed analysis %s (pid %d), left running by a stopped server", pid_file.stem, pid
            )
        pid_file.unlink(missing_ok=True)
    return killed


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the analysis process was killed ({name}; out of memory?)"
    return f"the analysis process stopped unexpectedly (exit code {code})"


class Worker:
    """Threads that take queued job ids and run them with `analyze`.

    limit_s: the time limit of one analysis (None: none).
    """

    def __init__(
        self,
        store: JobStore,
        layout: Layout,
        analyze: Callable,
        model: Path | None = None,
        jobs: int = 1,
        isolation: str = "process",
        limit_s: float | None = None,
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
        self.limit_s = limit_s
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._processes: dict[str, multiprocessing.process.BaseProcess] = {}
        self._finished: dict[str, threading.Event] = {}  # set when a running job's run ends

    def start(self) -> None:
        """Kill the analyses a killed server left running and fail their jobs, queue the
        waiting ones, start."""
        self.layout.running.mkdir(parents=True, exist_ok=True)
        kill_orphans(self.layout)
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

    def cancel(self, job_id: str, wait_s: float = 10.0) -> tuple[str | None, bool]:
        """Stop a queued or running job (it fails with CANCELLED_REASON).

        Returns (its status before: None if there is no such job, "done"/"failed" if it had
        finished and was left as it was; whether its analysis has ended, waiting up to `wait_s`
        seconds for that). An analysis process is killed with its process group; one in a
        thread ends at its next progress call.
        """
        before = self.store.stop(job_id, CANCELLED_REASON)
        if before != "running":
            return before, True
        process = self._processes.get(job_id)
        if process is not None and process.pid is not None:
            _kill_group(process.pid)
            process.kill()
        finished = self._finished.get(job_id)
        return before, finished is None or finished.wait(wait_s)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking jobs; analysis processes are terminated and their jobs failed."""
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)  # wakes each thread at once
        for p in list(self._processes.values()):
            if p.pid is not None:
                _kill_group(p.pid, signal.SIGTERM)
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
            finished = self._finished[job_id] = threading.Event()
            try:
                self._run(job_id)
            except Exception:  # the store itself failed: log, keep serving
                log.exception("worker could not run analysis %s", job_id)
            finally:
                finished.set()
                self._finished.pop(job_id, None)

    def _run(self, job_id: str) -> None:
        if not self.store.start(job_id):
            return  # deleted or cancelled while queued, or taken by another worker thread
        video = self.layout.find_upload(job_id)
        if video is None:
            self.store.update(job_id, status="failed", error="the uploaded video is missing")
            return
        args = (
            self.analyze,
            self.store.path,
            job_id,
            video,
            self.layout.out(job_id),
            self.model,
            self.limit_s,
        )
        if self.isolation == "thread":
            run_job(*args)
            return
        process = multiprocessing.get_context("spawn").Process(
            target=_run_job_in_child, args=args, name=f"mekit-analysis-{job_id}", daemon=True
        )
        pid_file = self.layout.running / f"{job_id}.pid"
        self._processes[job_id] = process
        try:
            process.start()
            try:
                os.setpgid(process.pid, process.pid)  # also in the child: whichever runs first
            except OSError:
                pass
            # atomically: a server killed mid-write must not leave an empty file for the next
            # one, which then could not kill this analysis
            atomic_write(pid_file, f"{process.pid} {_start_time(process.pid) or ''}\n")
            process.join(self.limit_s)
            if process.is_alive():  # past the time limit
                reason = time_limit_reason(self.limit_s or 0.0)
                self.store.update(job_id, only_if="running", status="failed", error=reason)
                _kill_group(process.pid)
                process.kill()
                process.join()
        finally:
            self._processes.pop(job_id, None)
            pid_file.unlink(missing_ok=True)
        job = self.store.get(job_id)
        if job is not None and job.status == "running":
            reason = STOPPED_REASON if self._stop.is_set() else _exit_reason(process.exitcode)
            self.store.update(job_id, status="failed", error=reason)
