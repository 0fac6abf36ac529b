"""The routes about the service itself: the web page with its static files, and the health."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from mekit import __version__
from mekit.app.server.context import Served
from mekit.app.server.schemas import Health

STATIC = Path(__file__).parent.parent / "static"


def add_page_routes(app: FastAPI) -> None:
    """GET / (the page, never cached) and /static/."""

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def add_health_route(app: FastAPI, served: Served) -> None:
    """GET /api/health: the worker, the queue, the limits and the model."""
    settings, store, worker = served.settings, served.store, served.worker

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
