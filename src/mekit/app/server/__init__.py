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

Modules: `settings` (the settings, the one-server lock, `preflight`), `guard` (the checks and
headers every request passes), `schemas` (the JSON bodies), `context` (what the routes share),
and one per group of routes: `service` (the page, health), `submit` (uploads), `results`
(history, status, output files), `control` (cancel, delete).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from mekit import __version__
from mekit.app.analyze import analyze_video
from mekit.app.server.context import Served, output_files
from mekit.app.server.control import add_control_routes
from mekit.app.server.guard import add_guard, is_loopback
from mekit.app.server.results import add_result_routes
from mekit.app.server.service import add_health_route, add_page_routes
from mekit.app.server.settings import DataDirLock, ServeSettings, preflight
from mekit.app.server.submit import add_submit_route
from mekit.app.store import JobStore
from mekit.app.worker import Layout, Worker

__all__ = ["ServeSettings", "create_app", "is_loopback", "output_files", "preflight"]


def create_app(settings: ServeSettings, analyze: Callable = analyze_video) -> FastAPI:
    """The web app. `analyze(video, out, model=..., progress=...)` runs each analysis; with
    `settings.isolation == "process"` it must pickle (a module-level function)."""
    store = JobStore(settings.db_path)
    layout = Layout(settings.data_dir)
    worker = Worker(
        store,
        layout,
        analyze,
        model=settings.model,
        jobs=settings.jobs,
        isolation=settings.isolation,
        limit_s=settings.max_job_s,
    )
    served = Served(settings, store, layout, worker)
    app = FastAPI(
        title="mekit",
        version=__version__,
        description="Micro-expression spotting and recognition on uploaded videos. "
        "Upload a video, poll its status, then download the outputs.",
        lifespan=_lifespan(served),
        docs_url=None,  # Swagger UI and ReDoc load from a CDN; /openapi.json stays
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.worker = worker
    add_guard(app, settings.host)
    # In this order: it is the order of /openapi.json's paths.
    add_page_routes(app)
    add_submit_route(app, served)
    add_result_routes(app, served)
    add_control_routes(app, served)
    add_health_route(app, served)
    return app


def _lifespan(served: Served) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The server's life: the folders made and locked, a killed server's unfinished uploads
    removed, the history opened and the worker started; the worker stopped and the lock freed
    at shutdown."""
    settings, layout = served.settings, served.layout
    lock = DataDirLock(settings.data_dir / "serve.lock")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for folder in (settings.data_dir, layout.uploads, layout.analyses):
            folder.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        try:
            for partial in layout.uploads.glob("*.part"):  # a killed server's unfinished upload
                partial.unlink(missing_ok=True)
            served.store.open()
            served.worker.start()
            yield
        finally:
            served.worker.stop()
            lock.release()

    return lifespan
