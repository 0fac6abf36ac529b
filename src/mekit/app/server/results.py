"""The routes that read analyses: the history, one analysis' status and results, and its
output files (only those its analysis.json lists)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, Response

from mekit.app.server.context import Served, documented, job_out, output_files, read_result
from mekit.app.server.schemas import AnalysisOut, History

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


def add_result_routes(app: FastAPI, served: Served) -> None:
    """GET /api/analyses, /api/analyses/{job_id} and /api/analyses/{job_id}/files/{name}."""
    store, layout = served.store, served.layout

    @app.get("/api/analyses", response_model=History, tags=["analyses"], summary="History")
    def history(limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
        return {"analyses": [served.scrubbed(j, job_out(j)) for j in store.recent(limit)]}

    @app.get(
        "/api/analyses/{job_id}",
        response_model=AnalysisOut,
        tags=["analyses"],
        summary="Status, progress, error, and the results once done",
        responses=documented({404: "no such analysis"}),
    )
    def status(job_id: str) -> dict[str, Any]:
        job = served.job_or_404(job_id)
        result = read_result(layout.out(job.id)) if job.status == "done" else None
        base = f"/api/analyses/{job.id}/files/"
        urls = {k: base + v for k, v in output_files(result).items()} if result else {}
        if result is not None and isinstance(result.get("model"), dict):
            path = result["model"].get("path")
            result["model"]["path"] = Path(path).name if isinstance(path, str) else path
        return served.scrubbed(job, {**job_out(job), "result": result, "file_urls": urls})

    @app.get(
        "/api/analyses/{job_id}/files/{name:path}",
        tags=["analyses"],
        summary="One output file (only those listed in the analysis' files and events)",
        responses=documented({404: "no such analysis or file"}),
        response_class=FileResponse,
    )
    def output(job_id: str, name: str, download: bool = False) -> FileResponse:
        job = served.job_or_404(job_id)
        out = layout.out(job.id)
        result = read_result(out) if job.status == "done" else None
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
                served.scrubbed(job, path.read_text(encoding="utf-8")),
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
