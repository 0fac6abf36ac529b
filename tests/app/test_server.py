"""`mekit serve`'s HTTP API with FastAPI's TestClient and fake analyzers (fast)."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from mekit.app.server import ServeSettings, create_app, is_loopback, output_files
from mekit.app.store import JobStore, is_valid_id, sanitise_filename
from mekit.app.uploads import UploadError, receive_video
from mekit.app.worker import STALE_REASON
from mekit.cli.main import build_parser, main
from mekit.errors import MekitError

from .fakes import crashing_analyze, failing_analyze, fake_analyze, write_model, write_video

BASE = "http://127.0.0.1:8000"
OUTPUTS = ("json", "csv", "timeline_png", "mp4", "html")


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4").read_bytes()


def serve(tmp_path: Path, analyze=fake_analyze, **settings) -> TestClient:
    options = {"data_dir": tmp_path / "data", "isolation": "thread", **settings}
    return TestClient(create_app(ServeSettings(**options), analyze=analyze), base_url=BASE)


def submit(client: TestClient, data: bytes, name: str = "clip.mp4"):
    return client.post("/api/analyses", files={"file": (name, data, "video/mp4")})


def wait(client: TestClient, job_id: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/analyses/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"analysis {job_id} still {job['status']} after {timeout} s")


def test_submit_poll_results_and_download_every_output(tmp_path, video_bytes):
    stages = []

    def analyze(video, out, model=None, progress=None):
        return fake_analyze(
            video, out, model, progress=lambda s, f: (stages.append(s), progress(s, f))
        )

    with serve(tmp_path, analyze) as client:
        r = submit(client, video_bytes, "my interview.mp4")
        assert r.status_code == 202
        body = r.json()
        assert is_valid_id(body["id"]) and body["status_url"] == f"/api/analyses/{body['id']}"
        assert r.headers["location"] == body["status_url"]
        job = wait(client, body["id"])
        assert job["status"] == "done", job
        assert job["progress"] == 1.0 and job["error"] == "" and job["n_events"] == 2
        assert job["filename"] == "my interview.mp4" and job["duration_s"] == 4.0
        assert job["result"]["events"][1]["emotion"] == "surprise"
        assert "spotting" in stages
        urls = job["file_urls"]
        assert set(OUTPUTS) <= set(urls) and {"event_01_motion", "event_02_explain"} <= set(urls)
        out = tmp_path / "data" / "analyses" / body["id"]
        for key, url in urls.items():
            got = client.get(url)
            assert got.status_code == 200, key
            name = url.rsplit("/files/", 1)[1]
            # the texts are served without the model's server folder (/models/ here)
            expected = (out / name).read_bytes().replace(b"/models/", b"")
            assert got.content == expected, key
        assert client.get(urls["json"]).json()["events"] == job["result"]["events"]
        assert client.get(urls["mp4"]).headers["content-type"] == "video/mp4"
        report = client.get(urls["html"])
        assert report.headers["content-type"].startswith("text/html")
        assert "sandbox" in report.headers["content-security-policy"]
        download = client.get(urls["csv"], params={"download": "true"})
        assert download.headers["content-disposition"].startswith("attachment")
        assert "my%20interview_timeline.csv" in download.headers["content-disposition"]
        # the upload is kept under a server-generated name only
        uploads = list((tmp_path / "data" / "uploads").iterdir())
        assert [p.name for p in uploads] == [f"{body['id']}.mp4"]


def test_history_lists_analyses_newest_first_and_delete_removes_row_and_files(
    tmp_path, video_bytes
):
    with serve(tmp_path) as client:
        first = submit(client, video_bytes, "first.mp4").json()["id"]
        wait(client, first)
        second = submit(client, video_bytes, "../../second.mov").json()["id"]
        wait(client, second)
        history = client.get("/api/analyses").json()["analyses"]
        assert [j["id"] for j in history] == [second, first]
        assert [j["filename"] for j in history] == ["second.mov", "first.mp4"]
        assert all(j["status"] == "done" and j["n_events"] == 2 for j in history)

        data = tmp_path / "data"
        assert (data / "analyses" / first).is_dir() and (
            data / "uploads" / f"{first}.mp4"
        ).is_file()
        url = client.get(f"/api/analyses/{first}").json()["file_urls"]["csv"]
        assert client.delete(f"/api/analyses/{first}").status_code == 204
        assert not (data / "analyses" / first).exists()
        assert not (data / "uploads" / f"{first}.mp4").exists()
        assert client.get(f"/api/analyses/{first}").status_code == 404
        assert client.get(url).status_code == 404
        assert client.delete(f"/api/analyses/{first}").status_code == 404
        assert [j["id"] for j in client.get("/api/analyses").json()["analyses"]] == [second]
        assert (data / "analyses" / second / "analysis.json").is_file()


def test_deleting_a_running_analysis_cancels_it_then_deletes_it(tmp_path, video_bytes):
    stopped = threading.Event()

    def slow(video, out, model=None, progress=None):
        (Path(out) / "partial.txt").write_text("half done")
        try:
            for _ in range(500):
                progress("spotting", 0.5)
                time.sleep(0.02)
        except Exception:
            stopped.set()
            raise
        return fake_analyze(video, out, model)

    with serve(tmp_path, slow) as client:
        job_id = submit(client, video_bytes).json()["id"]
        deadline = time.monotonic() + 10
        while client.get(f"/api/analyses/{job_id}").json()["stage"] != "spotting":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        job = client.get(f"/api/analyses/{job_id}").json()
        assert job["status"] == "running" and job["progress"] == 0.5 and job["result"] is None
        assert client.get("/api/health").json()["running"] == 1
        started = time.monotonic()
        assert client.delete(f"/api/analyses/{job_id}").status_code == 204
        assert time.monotonic() - started < 5 and stopped.is_set()
        assert client.get(f"/api/analyses/{job_id}").status_code == 404
        assert not (tmp_path / "data" / "analyses" / job_id).exists()
        assert client.get("/api/health").json()["running"] == 0


def test_queued_analyses_run_one_at_a_time_in_order(tmp_path, video_bytes):
    running, overlaps, order = [], [], []

    def analyze(video, out, model=None, progress=None):
        overlaps.append(len(running))
        running.append(1)
        order.append(Path(video).stem)
        time.sleep(0.05)
        running.pop()
        return fake_analyze(video, out, model)

    with serve(tmp_path, analyze) as client:
        ids = [submit(client, video_bytes).json()["id"] for _ in range(3)]
        assert all(wait(client, i)["status"] == "done" for i in ids)
    assert overlaps == [0, 0, 0] and order == ids


@pytest.mark.parametrize(
    ("name", "data", "status", "words"),
    [
        ("notes.txt", b"hello", 415, "not a supported video type"),
        ("clip", b"hello", 415, "not a supported video type"),
        ("clip.mp4", b"<html>not a video at all</html>", 415, "not a video"),
        ("clip.webm", b"\x00\x00\x00\x18ftypisom" + b"\x00" * 400, 415, "not a usable video"),
        ("clip.mp4", b"", 400, "empty"),
    ],
    ids=["wrong-extension", "no-extension", "not-a-video", "video-magic-but-garbage", "empty"],
)
def test_bad_uploads_are_refused_and_leave_nothing(tmp_path, name, data, status, words):
    with serve(tmp_path) as client:
        r = submit(client, data, name)
        assert r.status_code == status, r.text
        assert words in r.json()["detail"]
        assert client.get("/api/analyses").json()["analyses"] == []
    assert list((tmp_path / "data" / "uploads").iterdir()) == []


def test_malformed_requests_are_refused(tmp_path, video_bytes):
    with serve(tmp_path) as client:
        r = client.post("/api/analyses", files={"video": ("clip.mp4", video_bytes)})
        assert r.status_code == 400 and "field named 'file'" in r.json()["detail"]
        r = client.post("/api/analyses", content=video_bytes, headers={"content-type": "video/mp4"})
        assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
        r = client.post(
            "/api/analyses",
            files=[("file", ("a.mp4", video_bytes)), ("file", ("b.mp4", video_bytes))],
        )
        assert r.status_code == 400 and "one video at a time" in r.json()["detail"]
        assert client.get("/api/analyses").json()["analyses"] == []
    assert list((tmp_path / "data" / "uploads").iterdir()) == []


def test_uploads_over_the_limit_get_413(tmp_path, video_bytes):
    limit_mb = 0.001  # 1 kB, smaller than the test video
    assert len(video_bytes) > limit_mb * 2**20
    with serve(tmp_path, max_upload_mb=limit_mb) as client:
        r = submit(client, video_bytes)
        assert r.status_code == 413 and "limit of 0.001 MB" in r.json()["detail"]
        body = b"x" * 200_000  # announced by Content-Length: refused before it is read
        r = client.post(
            "/api/analyses",
            content=body,
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
        assert r.status_code == 413

        def chunks():  # no Content-Length: counted while streaming
            yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
            yield b"\x00" * 300_000
            yield b"\r\n--xyz--\r\n"

        r = client.post(
            "/api/analyses",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
        assert r.status_code == 413
        assert client.get("/api/analyses").json()["analyses"] == []
        assert client.get("/api/health").json()["max_upload_mb"] == limit_mb
    assert list((tmp_path / "data" / "uploads").iterdir()) == []


def test_the_size_limit_stops_reading_the_stream_early(tmp_path):
    """A 50 MB body against a 1 MB limit: refused after about 1 MB has been read."""
    chunk, sent = 64 * 1024, []
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'

    async def receive():
        if len(sent) >= 800:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent.append(chunk)
        return {
            "type": "http.request",
            "body": head if len(sent) == 1 else b"\0" * chunk,
            "more_body": True,
        }

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/analyses",
        "headers": [(b"content-type", b"multipart/form-data; boundary=b")],
    }
    dest = tmp_path / "upload.part"
    with pytest.raises(UploadError) as e:
        asyncio.run(receive_video(Request(scope, receive), dest, max_bytes=2**20))
    assert e.value.status == 413
    assert len(sent) * chunk < 2**20 + 3 * chunk
    assert not dest.exists()


@pytest.fixture(scope="module")
def done_job(tmp_path_factory: pytest.TempPathFactory, video_bytes: bytes):
    """One finished analysis, with secrets planted beside and above its outputs."""
    root = tmp_path_factory.mktemp("served")
    with serve(root) as client:
        job_id = submit(client, video_bytes).json()["id"]
        assert wait(client, job_id)["status"] == "done"
        (root / "data" / "analyses" / job_id / "secret.txt").write_text("SECRET")
        (root / "data" / "secret.txt").write_text("SECRET")
        yield client, job_id
        assert client.get(f"/api/analyses/{job_id}/files/timeline.csv").status_code == 200


@pytest.mark.parametrize(
    "name",
    [
        "../../mekit.db",
        "..%2F..%2Fmekit.db",
        "%2e%2e/%2e%2e/mekit.db",
        "%252e%252e%252fmekit.db",
        "..\\..\\mekit.db",
        "events/../../../mekit.db",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "//etc/passwd",
        "secret.txt",
        "analysis.json.bak",
        "events/",
        "events",
        "events/event_09_motion.png",
        ".%2Fanalysis.json",
        "annotated.mp4/",
        "",
    ],
)
def test_the_files_endpoint_serves_only_listed_outputs(done_job, name):
    client, job_id = done_job
    r = client.get(f"/api/analyses/{job_id}/files/{name}")
    assert r.status_code in (400, 404), r.status_code
    assert b"SECRET" not in r.content and b"SQLite" not in r.content
    assert b"root:" not in r.content


@pytest.mark.parametrize(
    "bad_id",
    ["..", "%2e%2e", "short", "AAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAA", "' OR 1=1 --aaaaa", "a b"],
)
def test_bad_or_unknown_ids_give_404(done_job, bad_id):
    client, job_id = done_job
    assert client.get(f"/api/analyses/{bad_id}").status_code in (400, 404)
    assert client.get(f"/api/analyses/{bad_id}/files/analysis.json").status_code in (400, 404)
    assert client.delete(f"/api/analyses/{bad_id}").status_code in (400, 404, 405)
    assert client.get(f"/api/analyses/{job_id}").json()["status"] == "done"


def test_a_listed_file_that_points_outside_the_analysis_is_not_served(tmp_path, video_bytes):
    with serve(tmp_path) as client:
        job_id = submit(client, video_bytes).json()["id"]
        wait(client, job_id)
        out = tmp_path / "data" / "analyses" / job_id
        secret = tmp_path / "secret.txt"
        secret.write_text("SECRET")
        (out / "timeline.csv").unlink()
        (out / "timeline.csv").symlink_to(secret)
        result = json.loads((out / "analysis.json").read_text())
        result["files"]["html"] = "../../../secret.txt"  # a tampered analysis.json
        (out / "analysis.json").write_text(json.dumps(result))
        for name in ("timeline.csv", "../../../secret.txt"):
            r = client.get(f"/api/analyses/{job_id}/files/{name}")
            assert r.status_code == 404 and b"SECRET" not in r.content


def test_a_failing_analysis_is_reported_and_the_service_stays_healthy(tmp_path, video_bytes):
    calls = []

    def flaky(video, out, model=None, progress=None):
        calls.append(video)
        if len(calls) == 1:
            return failing_analyze(video, out, progress=progress)
        if len(calls) == 2:
            raise RuntimeError("decoder exploded")
        return fake_analyze(video, out, model, progress=progress)

    with serve(tmp_path, flaky) as client:
        first = wait(client, submit(client, video_bytes).json()["id"])
        assert first["status"] == "failed" and first["error"] == "no face found in the video"
        assert first["stage"] == "reading video" and first["result"] is None
        assert first["file_urls"] == {}
        second = wait(client, submit(client, video_bytes).json()["id"])
        assert second["status"] == "failed" and second["error"] == "RuntimeError: decoder exploded"
        health = client.get("/api/health").json()
        assert health["status"] == "ok" and health["worker_alive"] is True
        third = wait(client, submit(client, video_bytes).json()["id"])
        assert third["status"] == "done" and third["n_events"] == 2
        history = {j["id"]: j for j in client.get("/api/analyses").json()["analyses"]}
        assert history[first["id"]]["error"] == "no face found in the video"
        r = client.get(f"/api/analyses/{first['id']}/files/analysis.json")
        assert r.status_code == 404


def test_a_failure_names_the_video_as_uploaded_not_the_server_file(tmp_path, video_bytes):
    def broken(video, out, model=None, progress=None):
        raise MekitError(f"{video}: the video holds no frames")

    with serve(tmp_path, broken) as client:
        job = wait(client, submit(client, video_bytes, "holiday.mp4").json()["id"])
    assert job["error"] == "holiday.mp4: the video holds no frames"


def test_an_analysis_that_writes_no_results_fails_with_a_reason(tmp_path, video_bytes):
    with serve(tmp_path, lambda video, out, model=None, progress=None: None) as client:
        job = wait(client, submit(client, video_bytes).json()["id"])
    assert job["status"] == "failed" and "analysis.json" in job["error"]


def test_a_crashing_analysis_process_fails_its_job_only(tmp_path, video_bytes):
    """isolation="process": the analysis is killed by a signal; the server goes on."""
    with serve(tmp_path, crashing_analyze, isolation="process") as client:
        crashed = wait(client, submit(client, video_bytes).json()["id"], timeout=60)
        assert crashed["status"] == "failed" and "SIGKILL" in crashed["error"], crashed
        assert crashed["stage"] == "spotting"  # progress written from the child process
        assert client.get("/api/health").json()["worker_alive"] is True
    with serve(tmp_path, functools.partial(fake_analyze, n_events=3), isolation="process") as c:
        done = wait(c, submit(c, video_bytes).json()["id"], timeout=60)
        assert done["status"] == "done" and done["n_events"] == 3


def test_a_restart_fails_jobs_left_running_and_resumes_queued_ones(tmp_path, video_bytes):
    data = tmp_path / "data"
    with serve(tmp_path) as client:
        kept = submit(client, video_bytes).json()["id"]
        wait(client, kept)
    store = JobStore(data / "mekit.db").open()
    stale = store.create("interrupted.mp4")
    assert store.start(stale.id)  # as a killed server leaves it
    waiting = store.create("waiting.mp4")
    (data / "uploads" / f"{waiting.id}.mp4").write_bytes(video_bytes)
    (data / "uploads" / "AAAAAAAAAAAAAAAA.part").write_bytes(b"half an upload")
    with serve(tmp_path) as client:
        assert not (data / "uploads" / "AAAAAAAAAAAAAAAA.part").exists()
        job = client.get(f"/api/analyses/{stale.id}").json()
        assert job["status"] == "failed" and job["error"] == STALE_REASON
        assert wait(client, waiting.id)["status"] == "done"
        assert client.get(f"/api/analyses/{kept}").json()["status"] == "done"


def test_one_server_per_data_dir(tmp_path):
    with serve(tmp_path):
        with pytest.raises(MekitError, match="another mekit serve"):
            with serve(tmp_path):
                pass


def test_the_openapi_schema_lists_the_endpoints_and_nothing_loads_from_a_cdn(tmp_path):
    with serve(tmp_path) as client:
        schema = client.get("/openapi.json").json()
        paths = schema["paths"]
        assert set(paths["/api/analyses"]) == {"get", "post"}
        assert set(paths["/api/analyses/{job_id}"]) == {"get", "delete"}
        assert "get" in paths["/api/analyses/{job_id}/files/{name}"]
        assert "get" in paths["/api/health"]
        upload = paths["/api/analyses"]["post"]["requestBody"]["content"]
        assert "file" in upload["multipart/form-data"]["schema"]["properties"]
        assert {"413", "415"} <= set(paths["/api/analyses"]["post"]["responses"])
        assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN
        assert client.get("/redoc").status_code == 404
        page = client.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("/static/app.js", "/static/app.css", "/"):
            text = client.get(asset).text
            assert "http://" not in text and "https://" not in text and "//cdn" not in text
        assert client.get("/api/health").json()["status"] == "ok"


def test_requests_for_other_hosts_and_cross_site_writes_are_refused(tmp_path, video_bytes):
    with serve(tmp_path) as client:
        r = client.get("/api/health", headers={"host": "evil.example:8000"})
        assert r.status_code == 400  # DNS rebinding onto the loopback server
        assert client.get("/api/health", headers={"host": "localhost:8000"}).status_code == 200
        r = client.post(
            "/api/analyses",
            files={"file": ("clip.mp4", video_bytes)},
            headers={"origin": "http://evil.example"},
        )
        assert r.status_code == 403
        r = client.post(
            "/api/analyses", files={"file": ("clip.mp4", video_bytes)}, headers={"origin": BASE}
        )
        assert r.status_code == 202


def test_the_server_binds_to_loopback_by_default():
    assert ServeSettings().host == "127.0.0.1"
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.max_upload_mb) == ("127.0.0.1", 8000, 500.0)
    assert ServeSettings().max_upload_bytes == 500 * 2**20
    assert ServeSettings().data_dir.name == "mekit"
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert not is_loopback("example.com")


def test_mekit_serve_warns_loudly_off_loopback(tmp_path, monkeypatch, capsys):
    import uvicorn

    runs = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: runs.append((app, kw)))
    monkeypatch.delenv("MEKIT_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./demo_out/model here
    data = tmp_path / "data"
    assert main(["serve", "--data-dir", str(data)]) == 2
    assert "no model" in capsys.readouterr().err and not runs
    write_model(tmp_path)
    model = ["--model", str(tmp_path / "m.json")]
    assert main(["serve", "--data-dir", str(data), "--port", "8123", *model]) == 0
    app, kw = runs[-1]
    assert kw == {"host": "127.0.0.1", "port": 8123, "log_level": "info"}
    assert app.state.settings.model == (tmp_path / "m.json").resolve()
    captured = capsys.readouterr()
    assert "WARNING" not in captured.err and "http://127.0.0.1:8123/" in captured.out
    assert (data / "mekit.db").is_file()
    assert main(["serve", "--data-dir", str(data), "--host", "0.0.0.0", *model]) == 0
    assert runs[-1][1]["host"] == "0.0.0.0"
    assert "WARNING" in capsys.readouterr().err
    assert main(["serve", "--data-dir", str(data), "--max-upload-mb", "0", *model]) == 2
    assert "--max-upload-mb" in capsys.readouterr().err
    assert len(runs) == 2


def test_display_names_are_sanitised_and_ids_strict():
    assert sanitise_filename("../../etc/passwd") == "passwd"
    assert sanitise_filename("C:\\Users\\me\\clip.mp4") == "clip.mp4"
    assert sanitise_filename("a\x00b\x1b[31mc.mp4") == "ab[31mc.mp4"
    assert sanitise_filename("..") == "video"
    long = sanitise_filename("x" * 500 + ".webm")
    assert len(long) <= 120 and long.endswith(".webm")
    assert is_valid_id("abcdefghijklmn_-") and not is_valid_id("abcdefghijklmn/-")
    assert not is_valid_id("abc") and not is_valid_id("abcdefghijklmnop\n")


def test_output_files_come_from_the_files_and_events_maps():
    result = {
        "files": {"json": "analysis.json", "mp4": None},
        "events": [
            {"index": 1, "motion_map": "events/event_01_motion.png", "explanation_map": None}
        ],
    }
    assert output_files(result) == {
        "json": "analysis.json",
        "event_01_motion": "events/event_01_motion.png",
    }


def test_mekit_serve_binds_a_trained_spotter(tmp_path, monkeypatch, capsys):
    import pickle

    import uvicorn

    from mekit.app.analyze import analyze_video
    from mekit.models.softnet import SoftNet
    from mekit.spot.learned.spotter import save_spotter

    runs = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: runs.append(app))
    write_model(tmp_path)
    base = ["serve", "--data-dir", str(tmp_path / "data"), "--model", str(tmp_path / "m.json")]
    assert main([*base, "--spotter", str(tmp_path / "nothing")]) == 2
    assert "spotter" in capsys.readouterr().err and not runs
    run = tmp_path / "softnet"
    save_spotter(run / "spotter_micro", SoftNet(), windows={"k_s": 0.15}, kind="micro")
    assert main([*base, "--spotter", str(run)]) == 0
    analyze = runs[-1].state.worker.analyze
    assert analyze.func is analyze_video and analyze.keywords == {"spotter": run.resolve()}
    assert pickle.loads(pickle.dumps(analyze)).keywords == analyze.keywords  # to a process
    assert f"spotter {run}" in capsys.readouterr().out
    assert main(base) == 0 and runs[-1].state.worker.analyze is analyze_video
