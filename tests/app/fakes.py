"""Test doubles for the web server: a tiny real video, and fake analyzers that write the files
`analyze_video` writes (same analysis.json schema) in milliseconds.

Module-level functions, so that `functools.partial(fake_analyze, ...)` pickles into the
server's spawned analysis process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from mekit.errors import MekitError

LABELS = ("negative", "positive", "surprise")


def write_video(path: Path, frames: int = 10, size: int = 64, fps: int = 25) -> Path:
    """A short H.264 MP4 of a moving gradient (a real, decodable video)."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            ramp = np.linspace(0, 255, size, dtype=np.float32)
            image = ((ramp[None, :] + 8 * i) % 256).astype(np.uint8)
            rgb = np.repeat(np.broadcast_to(image, (size, size))[..., None], 3, axis=2)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


def _png(path: Path, value: int) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


def fake_analyze(video, out, model=None, config=None, progress=None, *, n_events=2, demo=True):
    """Write every output of an analysis of `video` with `n_events` events into `out`."""
    out = Path(out)
    for i, stage in enumerate(("reading video", "spotting", "recognising", "writing report")):
        if progress:
            progress(stage, i / 4)
    fps, n_frames = 25.0, 100
    events = []
    for k in range(1, n_events + 1):
        onset, apex, offset = 20 * k, 20 * k + 3, 20 * k + 8
        emotion = LABELS[k % len(LABELS)]
        probs = {label: (0.8 if label == emotion else 0.1) for label in LABELS}
        events.append(
            {
                "index": k,
                "kind": "micro",
                "onset": onset,
                "apex": apex,
                "offset": offset,
                "onset_s": onset / fps,
                "apex_s": apex / fps,
                "offset_s": offset / fps,
                "score": 0.5 + 0.1 * k,
                "emotion": emotion,
                "probabilities": probs,
                "motion_map": f"events/event_{k:02d}_motion.png",
                "explanation_map": f"events/event_{k:02d}_explain.png",
            }
        )
        _png(out / events[-1]["motion_map"], 40 * k)
        _png(out / events[-1]["explanation_map"], 200)
    files = {
        "json": "analysis.json",
        "csv": "timeline.csv",
        "timeline_png": "timeline.png",
        "mp4": "annotated.mp4",
        "html": "report.html",
    }
    (out / "timeline.csv").write_text(
        "index,kind,onset,apex,offset,emotion\n"
        + "".join(f"{e['index']},micro,{e['onset']},{e['apex']},{e['offset']},x\n" for e in events)
    )
    _png(out / "timeline.png", 128)
    shutil.copyfile(video, out / "annotated.mp4")
    (out / "report.html").write_text("<!doctype html><title>report</title><p>fake report</p>")
    result = {
        "video": Path(video).name,
        "fps": fps,
        "n_frames": n_frames,
        "duration_s": n_frames / fps,
        "width": 64,
        "height": 64,
        "model": {
            "path": str(model or "/models/demo.safetensors"),
            "name": "demo-ststnet-synthetic",
            "labels": list(LABELS),
            "demo": demo,
            "trained_on": "mekit synthetic corpus (demo)",
        },
        "events": events,
        "files": files,
        "warnings": [],
        "seconds": 0.01,
        "spotter": "unsupervised",
    }
    (out / "analysis.json").write_text(json.dumps(result, indent=1))
    if progress:
        progress("done", 1.0)
    return result


def failing_analyze(video, out, model=None, config=None, progress=None, *, error=None):
    if progress:
        progress("reading video", 0.1)
    raise error if error is not None else MekitError("no face found in the video")


def crashing_analyze(video, out, model=None, config=None, progress=None):
    """Die the way native code does: the process is killed, no exception is raised."""
    if progress:
        progress("spotting", 0.3)
    time.sleep(0.2)  # let the progress reach the store
    os.kill(os.getpid(), signal.SIGKILL)


def sleepy_analyze(video, out, model=None, config=None, progress=None, *, seconds=30.0, pids=None):
    """Sleep `seconds` without calling `progress` (as a long decode does), with a `sleep`
    child process whose pid goes to the file `pids` (to see it is killed with the analysis),
    then write the outputs of `fake_analyze`."""
    import subprocess

    child = subprocess.Popen(["sleep", str(seconds + 30)])
    if pids is not None:  # atomically: a test polls for the file, then reads both pids
        from mekit.fileio import atomic_write

        atomic_write(pids, f"{os.getpid()} {child.pid}")
    time.sleep(seconds)
    child.kill()
    return fake_analyze(video, out, model)


def write_model(folder: Path, name: str = "m") -> Path:
    """A real (untrained) STSTNet model file; returns its sidecar path."""
    import torch

    from mekit.models import create_model
    from mekit.train.checkpoint import save_model

    torch.manual_seed(0)
    net = create_model("ststnet", len(LABELS)).eval()
    return save_model(
        folder / name,
        net,
        model_name="ststnet",
        labels=list(LABELS),
        model_kwargs={},
        input={},
        config={},
    )[1]
