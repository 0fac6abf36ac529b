"""The JSON bodies of `mekit serve`'s API, as its /openapi.json describes them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


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
