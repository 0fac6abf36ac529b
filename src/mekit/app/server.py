"""`mekit serve`: the web page and HTTP API over `analyze_video`, with a history in SQLite.

`create_app(settings)` builds the FastAPI app; its lifespan opens the store, kills the
analyses a killed server left running and fails their jobs, and starts the background worker.
Every path the API serves is looked up, never joined from the request: ids must match
`store.ID_PATTERN` and be in the database, file names must be among the outputs that the job's
analysis.json lists. No response names a path on the server: errors and results name the video
as uploaded, outputs relative to their analysis, the model by its file name.

Limits (`ServeSettings`): the upload's size while it streams in and its pace (a body that
stalls is dropped); the video's frame size, frame count and duration from its container header
before anything is decoded beyond one frame; the time an analysis may run.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.routing import Match

from mekit import __version__
from mekit.app.analyze import analyze_video
from mekit.app.store import Job, JobStore, default_data_dir, is_valid_id, new_id
from mekit.app.uploads import VIDEO_EXTENSIONS, UploadError, VideoLimits, receive_video
from mekit.app.worker import ISOLATIONS, Layout, Worker
from mekit.config import Config, choice_enum
from mekit.errors import MekitError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# The HTML report is opened as a document of its own: sandboxed, so its scripts (if any) run
# in an opaque origin and cannot call the API.
REPORT_CSP = "sandbox allow-scripts; default-src 'self' data: blob: 'unsafe-inline'"
MEDIA_TYPES = {
    ".json": "application/json",
    ".csv": "text/csv; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".html": "text/html; charset=utf-8",
}


# A Host header: a name or IPv4 address, or a bracketed IPv6 address, and an optional port.
# Anything else (user info "a@b", paths, spaces, several ports) is refused.
_HOST_HEADER = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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


class JobOut(BaseModel):
    id: str
    created: float = Field(description="upload time, seconds since the epoch")
    updated: float = Field(description="last change, seconds since the epoch")
    filename: str = Field(description="the uploaded file's name, for display only")
    status: str = Field(description="queued | running | done | failed (also when cancelled)")
    stage: str = Field(description="the analysis stage running (or where it failed)")
    progress: float = Field(description="progress of that stage, 0..1")
    error: str = Field(description="why it failed; empty unless failed")
    model: str = Field(description="the model file used (its name)")
    n_events: int | None = Field(description="events found, once done")
    duration_s: float | None = Field(description="the video's duration, once done")
    url: str = Field(description="this analysis' status URL")


class AnalysisOut(JobOut):
    result: dict[str, Any] | None = Field(description="the analysis.json content, once done")
    file_urls: dict[str, str] = Field(
        description="every output to download, by key (json, csv, timeline_png, mp4, html, "
        "event_NN_motion, event_NN_explain) -> URL"
    )


class Submitted(BaseModel):
    id: str
    status: str
    status_url: str


class History(BaseModel):
    analyses: list[JobOut]


class Health(BaseModel):
    status: str
    version: str
    worker_alive: bool
    queued: int
    running: int
    max_upload_mb: float
    limits: dict[str, float] = Field(
        description="upload_timeout_s, max_frame_side, max_frames, max_duration_s, max_job_s"
    )
    model: str | None = Field(description="the model file's name")


class _DataDirLock:
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
    lock = _DataDirLock(settings.data_dir / "serve.lock")
    lock.acquire()
    lock.release()


def _job_out(job: Job) -> dict[str, Any]:
    out = {**job.to_dict(), "url": f"/api/analyses/{job.id}"}
    out["model"] = Path(job.model).name if job.model else ""
    return out


def _scrub(value: Any, replacements: dict[str, str]) -> Any:
    """`value` (JSON) with each server path of `replacements` replaced in every string."""
    if isinstance(value, str):
        for path, shown in replacements.items():
            value = value.replace(path, shown)
        return value
    if isinstance(value, list):
        return [_scrub(v, replacements) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, replacements) for k, v in value.items()}
    return value


def output_files(result: dict[str, Any]) -> dict[str, str]:
    """Every output an analysis.json lists, key -> path relative to the out folder.

    Keys: those of `files` (json, csv, ...), and `event_NN_motion` / `event_NN_explain`.
    """
    names = {k: v for k, v in (result.get("files") or {}).items() if isinstance(v, str)}
    for event in result.get("events") or []:
        for key, kind in (("motion_map", "motion"), ("explanation_map", "explain")):
            if isinstance(event.get(key), str):
                names[f"event_{int(event.get('index', 0)):02d}_{kind}"] = event[key]
    return names


def _read_result(out: Path) -> dict[str, Any] | None:
    try:
        result = json.loads((out / "analysis.json").read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


def create_app(settings: ServeSettings, analyze: Callable = analyze_video) -> FastAPI:
    """The web app. `analyze(video, out, model=..., progress=...)` runs each analysis; with
    `settings.isolation == "process"` it must pickle (a module-level function)."""
    store = JobStore(settings.db_path)
    layout = Layout(settings.data_dir)
    lock = _DataDirLock(settings.data_dir / "serve.lock")
    worker = Worker(
        store,
        layout,
        analyze,
        model=settings.model,
        jobs=settings.jobs,
        isolation=settings.isolation,
        limit_s=settings.max_job_s,
    )

    def scrubbed(job: Job, value: Any) -> Any:
        """`value` with no server path: the upload named as uploaded, the rest relative."""
        replacements = {str(layout.out(job.id)) + "/": "", str(layout.out(job.id)): "."}
        for ext in VIDEO_EXTENSIONS:
            replacements[str(layout.upload(job.id, ext))] = job.filename
        for model in (settings.model, Path(job.model) if job.model else None):
            if model is not None and model.is_absolute():
                replacements[str(model.parent) + "/"] = ""  # the model by its file name
        replacements[str(settings.data_dir)] = "DATA_DIR"
        return _scrub(value, replacements)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for folder in (settings.data_dir, layout.uploads, layout.analyses):
            folder.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        try:
            for partial in layout.uploads.glob("*.part"):  # a killed server's unfinished upload
                partial.unlink(missing_ok=True)
            store.open()
            worker.start()
            yield
        finally:
            worker.stop()
            lock.release()

    app = FastAPI(
        title="mekit",
        version=__version__,
        description="Micro-expression spotting and recognition on uploaded videos. "
        "Upload a video, poll its status, then download the outputs.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load from a CDN; /openapi.json stays
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.worker = worker

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable) -> Response:
        refusal = _refuse(request, settings.host)
        allowed = _allowed_methods(app, request) if refusal is None else None
        if refusal is not None:
            response = refusal
        elif request.method == "OPTIONS" and allowed:
            response = Response(status_code=204, headers={"Allow": allowed})
        else:
            response = await call_next(request)
            if response.status_code == 405 and allowed:
                response.headers["Allow"] = allowed
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def job_or_404(job_id: str) -> Job:
        if not is_valid_id(job_id):
            raise HTTPException(404, "no such analysis")
        job = store.get(job_id)
        if job is None:
            raise HTTPException(404, "no such analysis")
        return job

    @app.post(
        "/api/analyses",
        status_code=202,
        response_model=Submitted,
        tags=["analyses"],
        summary="Upload a video to analyse",
        responses={
            400: {"description": "no file, an empty file or a malformed body"},
            413: {"description": "the file is over the upload limit"},
            415: {"description": "not a supported video"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {
                                    "type": "string",
                                    "format": "binary",
                                    "description": f"a video ({', '.join(VIDEO_EXTENSIONS)})",
                                }
                            },
                        }
                    }
                },
            }
        },
    )
    async def submit(request: Request) -> JSONResponse:
        job_id = new_id()
        part = layout.upload(job_id, ".part")
        try:
            upload = await receive_video(
                request,
                part,
                settings.max_upload_bytes,
                limits=settings.video_limits,
                idle_timeout_s=settings.upload_timeout_s,
            )
        except UploadError as e:
            raise HTTPException(e.status, e.message) from None
        part.rename(layout.upload(job_id, upload.extension))
        job = store.create(upload.filename, str(settings.model or ""), job_id=job_id)
        worker.submit(job.id)
        log.info("queued analysis %s (%s, %d bytes)", job.id, job.filename, upload.size)
        url = f"/api/analyses/{job.id}"
        return JSONResponse(
            {"id": job.id, "status": job.status, "status_url": url},
            status_code=202,
            headers={"Location": url},
        )

    @app.get("/api/analyses", response_model=History, tags=["analyses"], summary="History")
    def history(limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
        return {"analyses": [scrubbed(j, _job_out(j)) for j in store.recent(limit)]}

    @app.get(
        "/api/analyses/{job_id}",
        response_model=AnalysisOut,
        tags=["analyses"],
        summary="Status, progress, error, and the results once done",
        responses={404: {"description": "no such analysis"}},
    )
    def status(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        result = _read_result(layout.out(job.id)) if job.status == "done" else None
        base = f"/api/analyses/{job.id}/files/"
        urls = {k: base + v for k, v in output_files(result).items()} if result else {}
        if result is not None and isinstance(result.get("model"), dict):
            path = result["model"].get("path")
            result["model"]["path"] = Path(path).name if isinstance(path, str) else path
        return scrubbed(job, {**_job_out(job), "result": result, "file_urls": urls})

    @app.get(
        "/api/analyses/{job_id}/files/{name:path}",
        tags=["analyses"],
        summary="One output file (only those listed in the analysis' files and events)",
        responses={404: {"description": "no such analysis or file"}},
        response_class=FileResponse,
    )
    def output(job_id: str, name: str, download: bool = False) -> FileResponse:
        job = job_or_404(job_id)
        out = layout.out(job.id)
        result = _read_result(out) if job.status == "done" else None
        if result is None or name not in output_files(result).values():
            raise HTTPException(404, "no such file")
        root = out.resolve()
        path = (root / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise HTTPException(404, "no such file")
        headers = {"Cache-Control": "no-cache"}
        if path.suffix == ".html":
            headers["Content-Security-Policy"] = REPORT_CSP
        if path.suffix in (".json", ".html"):  # the texts that can name the model's path
            if download:
                shown = quote(f"{Path(job.filename).stem}_{path.name}")
                headers["Content-Disposition"] = f"attachment; filename*=utf-8''{shown}"
            return Response(
                scrubbed(job, path.read_text(encoding="utf-8")),
                media_type=MEDIA_TYPES[path.suffix],
                headers=headers,
            )
        return FileResponse(
            path,
            media_type=MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"),
            filename=f"{Path(job.filename).stem}_{path.name}" if download else None,
            content_disposition_type="attachment" if download else "inline",
            headers=headers,
        )

    @app.post(
        "/api/analyses/{job_id}/cancel",
        response_model=JobOut,
        tags=["analyses"],
        summary="Cancel a queued or running analysis (it fails with the reason 'cancelled')",
        responses={
            404: {"description": "no such analysis"},
            409: {"description": "the analysis has already finished"},
        },
    )
    def cancel(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        before, _ = worker.cancel(job.id)
        if before is None:
            raise HTTPException(404, "no such analysis")
        if before in ("done", "failed"):
            raise HTTPException(409, f"the analysis has already finished ({before})")
        return scrubbed(job, _job_out(store.get(job.id) or job))

    @app.delete(
        "/api/analyses/{job_id}",
        status_code=204,
        tags=["analyses"],
        summary="Delete an analysis (cancelling it if it runs): its history row, upload, outputs",
        responses={
            404: {"description": "no such analysis"},
            409: {"description": "running and not yet stopped; try again"},
        },
    )
    def delete(job_id: str) -> Response:
        job = job_or_404(job_id)
        _, ended = worker.cancel(job.id)
        deleted = store.delete_unless_running(job.id) if ended else False
        if deleted is None:
            raise HTTPException(404, "no such analysis")
        if not deleted:
            raise HTTPException(409, "the analysis is being stopped; delete it again shortly")
        layout.remove(job.id)
        return Response(status_code=204)

    @app.get("/api/health", response_model=Health, tags=["service"], summary="Health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok" if worker.alive else "degraded",
            "version": __version__,
            "worker_alive": worker.alive,
            "queued": len(store.with_status("queued")),
            "running": len(store.with_status("running")),
            "max_upload_mb": settings.max_upload_mb,
            "limits": {
                "upload_timeout_s": settings.upload_timeout_s,
                "max_frame_side": settings.max_frame_side,
                "max_frames": settings.max_frames,
                "max_duration_s": settings.max_duration_s,
                "max_job_s": settings.max_job_s,
            },
            "model": settings.model.name if settings.model else None,
        }

    return app


def _split_host(netloc: str) -> str | None:
    """The host of a Host header or URL netloc, without the port (IPv6 brackets kept off);
    None unless it is exactly a host and an optional port (see `_HOST_HEADER`)."""
    if not _HOST_HEADER.fullmatch(netloc):
        return None
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")]
    return netloc.split(":", 1)[0]


def _allowed_methods(app: FastAPI, request: Request) -> str | None:
    """The Allow header for the request's path: every method of every route it matches
    (a path can have a route per method), with OPTIONS; None for paths no route serves."""
    methods: set[str] = set()
    for route in app.router.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= set(route_methods)
    return ", ".join(sorted(methods | {"OPTIONS"})) if methods else None


def _refuse(request: Request, bind_host: str) -> Response | None:
    """Refuse malformed Host headers, requests for another host name (DNS rebinding) and
    cross-site writes."""
    host = request.headers.get("host", "")
    name = _split_host(host)
    if name is None:
        return JSONResponse({"detail": "malformed Host header"}, status_code=400)
    if is_loopback(bind_host) and not is_loopback(name):
        return JSONResponse({"detail": f"host '{host}' is not served here"}, status_code=400)
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != host:
            return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
    return None
