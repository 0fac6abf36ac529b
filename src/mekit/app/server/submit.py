"""POST /api/analyses: a video streams in under the upload limits and its analysis is queued."""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from mekit.app.server.context import Served, documented
from mekit.app.server.schemas import Submitted
from mekit.app.store import new_id
from mekit.app.uploads import VIDEO_EXTENSIONS, UploadError, receive_video

log = logging.getLogger(__name__)

# The body is read as a stream (`receive_video`), not by FastAPI, so the form is described here.
_UPLOAD_BODY = {
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
}


def add_submit_route(app: FastAPI, served: Served) -> None:
    """POST /api/analyses: 202 with the new analysis' status URL."""
    settings, layout = served.settings, served.layout

    @app.post(
        "/api/analyses",
        status_code=202,
        response_model=Submitted,
        tags=["analyses"],
        summary="Upload a video to analyse",
        responses=documented(
            {
                400: "no file, an empty file or a malformed body",
                413: "the file is over the upload limit",
                415: "not a supported video",
            }
        ),
        openapi_extra=_UPLOAD_BODY,
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
        job = served.store.create(upload.filename, str(settings.model or ""), job_id=job_id)
        served.worker.submit(job.id)
        log.info("queued analysis %s (%s, %d bytes)", job.id, job.filename, upload.size)
        url = f"/api/analyses/{job.id}"
        return JSONResponse(
            {"id": job.id, "status": job.status, "status_url": url},
            status_code=202,
            headers={"Location": url},
        )
