"""The routes that end analyses: cancel one, or delete it with its upload and outputs."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import Response

from mekit.app.server.context import Served, documented, job_out
from mekit.app.server.schemas import JobOut


def add_control_routes(app: FastAPI, served: Served) -> None:
    """POST /api/analyses/{job_id}/cancel and DELETE /api/analyses/{job_id}."""
    store, worker = served.store, served.worker

    @app.post(
        "/api/analyses/{job_id}/cancel",
        response_model=JobOut,
        tags=["analyses"],
        summary="Cancel a queued or running analysis (it fails with the reason 'cancelled')",
        responses=documented({404: "no such analysis", 409: "the analysis has already finished"}),
    )
    def cancel(job_id: str) -> dict[str, Any]:
        job = served.job_or_404(job_id)
        before, _ = worker.cancel(job.id)
        if before is None:
            raise HTTPException(404, "no such analysis")
        if before in ("done", "failed"):
            raise HTTPException(409, f"the analysis has already finished ({before})")
        return served.scrubbed(job, job_out(store.get(job.id) or job))

    @app.delete(
        "/api/analyses/{job_id}",
        status_code=204,
        tags=["analyses"],
        summary="Delete an analysis (cancelling it if it runs): its history row, upload, outputs",
        responses=documented(
            {404: "no such analysis", 409: "running and not yet stopped; try again"}
        ),
    )
    def delete(job_id: str) -> Response:
        job = served.job_or_404(job_id)
        _, ended = worker.cancel(job.id)
        deleted = store.delete_unless_running(job.id) if ended else False
        if deleted is None:
            raise HTTPException(404, "no such analysis")
        if not deleted:
            raise HTTPException(409, "the analysis is being stopped; delete it again shortly")
        served.layout.remove(job.id)
        return Response(status_code=204)
