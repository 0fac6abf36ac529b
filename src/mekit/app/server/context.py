"""What the routes of `mekit serve` share: the settings, the history, the folders and the
worker, with the two rules every response follows: a job is looked up by a checked id, and no
response names a path on the server."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from mekit.app.server.settings import ServeSettings
from mekit.app.store import Job, JobStore, is_valid_id
from mekit.app.uploads import VIDEO_EXTENSIONS
from mekit.app.worker import Layout, Worker


def documented(reasons: Mapping[int, str]) -> dict[int, dict[str, str]]:
    """A route's `responses` for the OpenAPI page: {status: why} of each error it answers."""
    return {status: {"description": why} for status, why in reasons.items()}


@dataclass(frozen=True)
class Served:
    """The server's state, as its routes use it."""

    settings: ServeSettings
    store: JobStore
    layout: Layout
    worker: Worker

    def job_or_404(self, job_id: str) -> Job:
        """The job `job_id` names; 404 for an id that is malformed or not in the history."""
        if not is_valid_id(job_id):
            raise HTTPException(404, "no such analysis")
        job = self.store.get(job_id)
        if job is None:
            raise HTTPException(404, "no such analysis")
        return job

    def scrubbed(self, job: Job, value: Any) -> Any:
        """`value` with no server path: the upload named as uploaded, the rest relative."""
        out = self.layout.out(job.id)
        replacements = {str(out) + "/": "", str(out): "."}
        for ext in VIDEO_EXTENSIONS:
            replacements[str(self.layout.upload(job.id, ext))] = job.filename
        for model in (self.settings.model, Path(job.model) if job.model else None):
            if model is not None and model.is_absolute():
                replacements[str(model.parent) + "/"] = ""  # the model by its file name
        replacements[str(self.settings.data_dir)] = "DATA_DIR"
        return _scrub(value, replacements)


def job_out(job: Job) -> dict[str, Any]:
    """The job as the API shows it (`JobOut`), before scrubbing."""
    out = {**job.to_dict(), "url": f"/api/analyses/{job.id}"}
    out["model"] = Path(job.model).name if job.model else ""
    return out


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


def read_result(out: Path) -> dict[str, Any] | None:
    """The analysis.json in `out`; None when it is missing, unreadable or not an object."""
    try:
        result = json.loads((out / "analysis.json").read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


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
