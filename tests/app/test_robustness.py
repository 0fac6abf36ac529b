"""`mekit serve` under faults: a model it cannot load, uploads over the limits or stalled, jobs
that must be cancelled or run too long, a server killed mid-analysis, hostile headers. Each
test is one case of the hardening probe; none needs a real analysis."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from pathlib import Path

import pytest
from starlette.requests import Request

from mekit.app.server import ServeSettings, preflight
from mekit.app.store import JobStore
from mekit.app.uploads import UploadError, VideoLimits, check_video, receive_video
from mekit.app.worker import (
    CANCELLED_REASON,
    STALE_REASON,
    Layout,
    Worker,
    _start_time,
    run_job,
)
from mekit.cli.main import main
from mekit.errors import MekitError

from .fakes import fake_analyze, sleepy_analyze, write_model, write_video
from .test_server import serve, submit, wait


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4").read_bytes()


def _until(condition, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met after {timeout} s"
        time.sleep(0.02)


def _gone(pid: int) -> bool:
    return _start_time(pid) is None


def _looping(stopped: threading.Event | None = None, seconds: float = 20.0):
    """An analysis in a thread that reports progress every 20 ms for `seconds`."""

    def analyze(video, out, model=None, progress=None):
        try:
            for _ in range(int(seconds / 0.02)):
                progress("spotting", 0.5)
                time.sleep(0.02)
        except Exception:
            if stopped is not None:
                stopped.set()
            raise
        return fake_analyze(video, out, model)

    return analyze


def _running(client, job_id: str) -> None:
    _until(lambda: client.get(f"/api/analyses/{job_id}").json()["status"] == "running")


# --- the model ---------------------------------------------------------------------------


def test_serve_refuses_to_start_with_a_model_that_fails_its_hash(tmp_path, monkeypatch, capsys):
    import uvicorn

    runs = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: runs.append(app))
    sidecar = write_model(tmp_path)
    weights = sidecar.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    code = main(["serve", "--data-dir", str(tmp_path / "data"), "--model", str(sidecar)])
    err = capsys.readouterr().err
    assert code == 2 and not runs
    assert "the model cannot be used" in err and "corrupt or was modified" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_preflight_loads_the_model(tmp_path):
    sidecar = write_model(tmp_path)
    preflight(ServeSettings(data_dir=tmp_path / "data", model=sidecar))  # a good one: fine
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "labels": ["a", "a", "b"]}))
    with pytest.raises(MekitError, match="labels repeat a"):
        preflight(ServeSettings(data_dir=tmp_path / "data", model=sidecar))


def test_settings_paths_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = ServeSettings(data_dir=Path("data"), db=Path("h.db"), model=Path("m/x.json"))
    assert settings.data_dir == tmp_path.resolve() / "data"
    assert settings.db_path == tmp_path.resolve() / "h.db"
    assert settings.model == tmp_path.resolve() / "m" / "x.json"
    monkeypatch.setenv("MEKIT_DATA", "relative")
    assert ServeSettings().data_dir == tmp_path.resolve() / "relative"


# --- no server paths in responses -----------------------------------------------------------


def test_a_415_never_names_the_server_file(tmp_path):
    with serve(tmp_path) as client:
        # The first bytes of an MP4, then garbage: it fails in FFmpeg, whose message names the
        # file it was given (the server's upload path).
        broken = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8
        r = submit(client, broken, "holiday.mp4")
        assert r.status_code == 415
        detail = r.json()["detail"]
        assert str(tmp_path) not in detail and "uploads" not in detail and ".part" not in detail


def test_errors_and_results_never_name_server_paths(tmp_path, video_bytes):
    def leaky(video, out, model=None, progress=None):
        raise MekitError(f"{video}: cannot write {Path(out) / 'events'} nor {out}")

    sidecar = write_model(tmp_path)
    with serve(tmp_path, leaky, model=sidecar) as client:
        job = wait(client, submit(client, video_bytes, "mine.mp4").json()["id"])
        assert job["status"] == "failed"
        assert job["error"] == "mine.mp4: cannot write events nor the analysis folder"
        assert job["model"] == "m.json"
        health = client.get("/api/health").json()
        assert health["model"] == "m.json" and health["limits"]["max_job_s"] == 3600
    with serve(tmp_path, fake_analyze, model=sidecar) as client:
        job = wait(client, submit(client, video_bytes).json()["id"])
        text = json.dumps(client.get(f"/api/analyses/{job['id']}").json())
        assert job["status"] == "done" and str(tmp_path) not in text
        assert json.loads(text)["result"]["model"]["path"] == "m.json"
        files = client.get(f"/api/analyses/{job['id']}").json()["file_urls"]
        served = client.get(files["json"], params={"download": "true"})
        assert str(tmp_path) not in served.text and '"path": "m.json"' in served.text
        assert (
            served.headers["content-disposition"]
            == "attachment; filename*=utf-8''clip_analysis.json"
        )
        assert (tmp_path / "data" / "analyses" / job["id"] / "analysis.json").read_text().count(
            str(sidecar)
        ) == 1  # the file itself keeps what the analysis wrote
        assert str(tmp_path) not in json.dumps(client.get("/api/analyses").json())


# --- cancel and delete ----------------------------------------------------------------------


def test_cancel_a_running_analysis(tmp_path, video_bytes):
    stopped = threading.Event()
    with serve(tmp_path, _looping(stopped)) as client:
        job_id = submit(client, video_bytes).json()["id"]
        _running(client, job_id)
        r = client.post(f"/api/analyses/{job_id}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "failed"
        assert r.json()["error"] == CANCELLED_REASON
        _until(stopped.is_set, 5, "the analysis to stop")
        time.sleep(0.3)
        job = client.get(f"/api/analyses/{job_id}").json()
        assert (job["status"], job["error"]) == ("failed", CANCELLED_REASON)
        assert client.post(f"/api/analyses/{job_id}/cancel").status_code == 409  # finished
        assert client.post("/api/analyses/AAAAAAAAAAAAAAAA/cancel").status_code == 404


def test_cancel_a_queued_analysis_before_it_runs(tmp_path, video_bytes):
    ran = []

    def analyze(video, out, model=None, progress=None):
        ran.append(Path(video).stem)
        return _looping(seconds=20)(video, out, model, progress)

    with serve(tmp_path, analyze) as client:
        first = submit(client, video_bytes).json()["id"]
        second = submit(client, video_bytes).json()["id"]
        _running(client, first)
        assert client.get(f"/api/analyses/{second}").json()["status"] == "queued"
        r = client.post(f"/api/analyses/{second}/cancel")
        assert r.status_code == 200 and r.json()["error"] == CANCELLED_REASON
        assert client.delete(f"/api/analyses/{first}").status_code == 204
        time.sleep(0.5)
        assert ran == [first]  # the cancelled one never started
        assert client.get(f"/api/analyses/{second}").json()["status"] == "failed"


def test_cancel_in_a_process_kills_its_process_group(tmp_path, video_bytes):
    pids = tmp_path / "pids"
    analyze = functools.partial(sleepy_analyze, seconds=30, pids=str(pids))
    with serve(tmp_path, analyze, isolation="process") as client:
        job_id = submit(client, video_bytes).json()["id"]
        _until(pids.is_file, what="the analysis process to start")
        analysis, child = map(int, pids.read_text().split())
        started = time.monotonic()
        r = client.post(f"/api/analyses/{job_id}/cancel")
        assert r.status_code == 200 and r.json()["error"] == CANCELLED_REASON
        _until(lambda: _gone(analysis) and _gone(child), 5, "the process group to die")
        assert time.monotonic() - started < 5
        job = client.get(f"/api/analyses/{job_id}").json()
        assert (job["status"], job["error"]) == ("failed", CANCELLED_REASON)
        assert not (tmp_path / "data" / "running" / f"{job_id}.pid").exists()


# --- time limit -------------------------------------------------------------------------------


def test_an_analysis_over_the_time_limit_is_stopped_in_a_thread(tmp_path, video_bytes):
    with serve(tmp_path, _looping(seconds=20), max_job_s=0.5) as client:
        started = time.monotonic()
        job = wait(client, submit(client, video_bytes).json()["id"], timeout=10)
        assert job["status"] == "failed" and "longer than the limit of 0.5 s" in job["error"]
        assert time.monotonic() - started < 5


def test_an_analysis_over_the_time_limit_is_killed_in_a_process(tmp_path, video_bytes):
    pids = tmp_path / "pids"
    analyze = functools.partial(sleepy_analyze, seconds=30, pids=str(pids))
    with serve(tmp_path, analyze, isolation="process", max_job_s=3.0) as client:
        job = wait(client, submit(client, video_bytes).json()["id"], timeout=20)
        assert job["status"] == "failed" and "longer than the limit of 3 s" in job["error"]
        assert "--max-job-s" in job["error"]
        analysis, child = map(int, pids.read_text().split())
        _until(lambda: _gone(analysis) and _gone(child), 5, "the process group to die")


# --- a server killed mid-analysis -------------------------------------------------------------


def test_a_restart_kills_the_orphaned_analysis_before_new_work(tmp_path, video_bytes):
    """A server killed with SIGKILL leaves its analysis process running; the next server kills
    it (and what it started) before it runs anything, and the job stays failed."""
    data = tmp_path / "data"
    pids = tmp_path / "pids"
    layout = Layout(data)
    store = JobStore(data / "mekit.db").open()
    job = store.create("clip.mp4")
    layout.uploads.mkdir(parents=True)
    layout.upload(job.id, ".mp4").write_bytes(video_bytes)
    # The first server's worker: it starts the analysis, then "dies" (is never stopped).
    analyze = functools.partial(sleepy_analyze, seconds=2.5, pids=str(pids))
    dead = Worker(store, layout, analyze, isolation="process")
    dead.start()
    dead.submit(job.id)
    _until(pids.is_file, what="the analysis process to start")
    orphan, child = map(int, pids.read_text().split())
    assert (layout.running / f"{job.id}.pid").is_file()
    # As if its process were gone: its threads take no more work and write nowhere that counts.
    dead._stop.set()
    dead.store = JobStore(tmp_path / "gone.db").open()

    with serve(tmp_path, fake_analyze) as client:
        assert _gone(orphan) and _gone(child)  # killed before the new server serves
        failed = client.get(f"/api/analyses/{job.id}").json()
        assert (failed["status"], failed["error"]) == ("failed", STALE_REASON)
        time.sleep(3.0)  # past the time the orphan would have finished and written "done"
        assert client.get(f"/api/analyses/{job.id}").json()["status"] == "failed"
        assert not (layout.out(job.id) / "analysis.json").exists()
        fresh = wait(client, submit(client, video_bytes).json()["id"])
        assert fresh["status"] == "done"


def test_an_analysis_never_flips_a_failed_job_to_done(tmp_path, video_bytes):
    store = JobStore(tmp_path / "mekit.db").open()
    job = store.create("clip.mp4")
    store.start(job.id)
    store.fail_running(STALE_REASON)  # a restart failed it while the orphan ran on
    video = tmp_path / "clip.mp4"
    video.write_bytes(video_bytes)
    told_to_stop = []

    def analyze(video, out, model=None, progress=None):
        try:
            progress("spotting", 0.9)
        except Exception as e:
            told_to_stop.append(str(e))
        return fake_analyze(video, out, model)  # it goes on regardless, and finishes

    run_job(analyze, store.path, job.id, video, tmp_path / "out", None)
    after = store.get(job.id)
    assert (after.status, after.error, after.stage) == ("failed", STALE_REASON, "starting")
    assert told_to_stop == [CANCELLED_REASON]


# --- upload limits ---------------------------------------------------------------------------


def test_a_huge_frame_size_is_refused_from_the_header(tmp_path):
    big = write_video(tmp_path / "big.mp4", frames=2, size=4096)
    assert big.stat().st_size < 200_000  # small on disk, 16 megapixels a frame
    with serve(tmp_path) as client:
        started = time.monotonic()
        r = submit(client, big.read_bytes(), "big.mp4")
        assert r.status_code == 413 and "4096x4096" in r.json()["detail"]
        assert "--max-frame-side" in r.json()["detail"]
        assert time.monotonic() - started < 5
        assert client.get("/api/analyses").json()["analyses"] == []
        assert list((tmp_path / "data" / "uploads").iterdir()) == []


@pytest.mark.parametrize(
    "limits, words",
    [
        (VideoLimits(max_frame_side=32), "64x64 pixels"),
        (VideoLimits(max_frames=5), "10 frames, more than the 5"),
        (VideoLimits(max_duration_s=0.2), "longer than the 0.2 s"),
    ],
)
def test_each_video_limit_is_checked_before_decoding(tmp_path, monkeypatch, limits, words):
    import av.container

    video = write_video(tmp_path / "clip.mp4")  # 10 frames, 64x64, 0.4 s
    check_video(video, VideoLimits())  # within the defaults

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before the header was checked")

    monkeypatch.setattr(av.container.InputContainer, "decode", no_decoding)
    with pytest.raises(UploadError, match=words) as info:
        check_video(video, limits)
    assert info.value.status == 413


def test_serve_limits_are_options(tmp_path):
    from mekit.cli.main import build_parser

    args = build_parser().parse_args(
        ["serve", "--max-frame-side", "640", "--max-frames", "9", "--max-duration-s", "3"]
        + ["--max-job-s", "60", "--upload-timeout-s", "5"]
    )
    assert (args.max_frame_side, args.max_frames, args.max_duration_s) == (640, 9, 3.0)
    assert (args.max_job_s, args.upload_timeout_s) == (60.0, 5.0)
    with pytest.raises(MekitError, match="--max-job-s"):
        ServeSettings(data_dir=tmp_path, max_job_s=0)


def test_a_stalled_upload_is_dropped(tmp_path):
    """The body starts, then nothing more comes: 408 after the idle timeout, file removed."""
    boundary = "xyz"
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=file; filename=a.mp4\r\n"
        "Content-Type: video/mp4\r\n\r\n"
    ).encode() + b"\x00" * 1000
    sent = []

    async def receive():
        if not sent:
            sent.append(1)
            return {"type": "http.request", "body": head, "more_body": True}
        await asyncio.sleep(3600)  # a client that stalls

    scope = {
        "type": "http",
        "method": "POST",
        "headers": [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
    }
    dest = tmp_path / "a.part"
    started = time.monotonic()
    with pytest.raises(UploadError) as info:
        asyncio.run(receive_video(Request(scope, receive), dest, 2**20, idle_timeout_s=0.3))
    assert info.value.status == 408 and "stalled" in info.value.message
    assert time.monotonic() - started < 3 and not dest.exists()


# --- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, status",
    [
        ("127.0.0.1:80@evil.com", 400),
        ("127.0.0.1@evil.com", 400),
        ("127.0.0.1:80:90", 400),
        ("evil.com/127.0.0.1", 400),
        ("127.0.0.1 evil.com", 400),
        ("", 400),
        ("evil.com", 400),
        ("127.0.0.1:8000", 200),
        ("localhost", 200),
        ("[::1]:8000", 200),
    ],
)
def test_host_headers_are_parsed_strictly(tmp_path, host, status):
    with serve(tmp_path) as client:
        assert client.get("/api/health", headers={"host": host}).status_code == status


def test_options_and_405_list_every_method_of_the_path(tmp_path):
    with serve(tmp_path) as client:
        r = client.options("/api/analyses/AAAAAAAAAAAAAAAA")
        assert r.status_code == 204 and r.headers["allow"] == "DELETE, GET, OPTIONS"
        r = client.options("/api/analyses")
        assert r.status_code == 204 and r.headers["allow"] == "GET, OPTIONS, POST"
        r = client.options("/api/analyses/AAAAAAAAAAAAAAAA/cancel")
        assert r.headers["allow"] == "OPTIONS, POST"
        r = client.put("/api/analyses/AAAAAAAAAAAAAAAA")
        assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, OPTIONS"
        assert client.options("/no/such/path").status_code in (404, 405)
