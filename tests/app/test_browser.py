"""`mekit serve` end to end in headless Chromium: the real server (uvicorn, real analyze_video
in its analysis process), a synthetic video with planted events, a tiny untrained model.

Uses the system browser and driver (Debian's chromium and chromium-driver); skipped when they
are missing, except under CI=true, where that is a failure. The network is never used:
Selenium gets the driver's path, so Selenium Manager does not run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import uvicorn

from mekit.app.server import ServeSettings, create_app
from mekit.synth import SynthConfig
from mekit.synth.long_video import write_long_video

pytestmark = pytest.mark.slow

# Debian's paths; elsewhere set MEKIT_CHROMIUM / MEKIT_CHROMEDRIVER.
CHROMIUM = Path(os.environ.get("MEKIT_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("MEKIT_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream",  # a synthetic camera (a moving pattern, no face)
    "--use-fake-ui-for-media-stream",  # grant the camera without a prompt
    "--window-size=1280,2200",
)
# Three planted events (two micro, one macro) in 5 s at 30 fps: a ~1 s render, ~4 s analysis.
LONG = SynthConfig(
    subjects=1,
    long_video_fps=(30.0,),
    long_video_seconds=5.0,
    micro_per_video=2,
    macro_per_video=1,
    amplitude_px=(2.0, 3.0),
    duration_ms=(250.0, 450.0),
    macro_duration_ms=(800.0, 1200.0),
)


def _browser_or_skip() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if not missing:
        return
    reason = (
        f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver); "
        "the browser test needs the system Chromium and its driver"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


def tiny_model(path: Path) -> Path:
    """An untrained STSTNet saved as a mekit model file, marked as a demo model."""
    import torch

    from mekit.config import to_dict
    from mekit.faces import FaceConfig
    from mekit.models import create_model
    from mekit.motion import FeatureConfig
    from mekit.train.checkpoint import save_model

    torch.manual_seed(0)
    _, sidecar = save_model(
        path,
        create_model("ststnet", num_classes=3),
        model_name="ststnet",
        labels=["negative", "positive", "surprise"],
        model_kwargs={},
        input={"features": to_dict(FeatureConfig()), "face": to_dict(FaceConfig())},
        config={},
        training={"demo": True, "trained_on": "nothing (an untrained test model)"},
    )
    return sidecar


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The real app on a free loopback port, in a background thread; yields (url, video)."""
    _browser_or_skip()
    root = tmp_path_factory.mktemp("serve")
    video, _, _ = write_long_video(root, 0, LONG, progress=False)
    settings = ServeSettings(data_dir=root / "data", model=tiny_model(root / "tiny"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", video
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mekit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # The explicit driver path is what keeps Selenium Manager (a downloader) from running.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _player_time(driver) -> float:
    return driver.execute_script("return document.getElementById('player').currentTime")


def _cursor_percent(driver) -> float:
    """Where the time cursor is drawn, in % of the timeline's width."""
    return driver.execute_script("return parseFloat(document.getElementById('cursor').style.left)")


def _api(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_upload_results_timeline_seek_and_history(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, video = server
    browser.get(url + "/")
    wait = WebDriverWait(browser, 15)
    wait.until(lambda d: "ready" in d.find_element(By.ID, "health").text)
    browser.find_element(By.ID, "file-input").send_keys(str(video))
    wait.until(ec.element_to_be_clickable((By.ID, "upload-btn"))).click()
    WebDriverWait(browser, 90).until(
        lambda d: (
            d.find_element(By.ID, "a-results").is_displayed()
            or d.find_element(By.ID, "a-error").is_displayed()
        )
    )
    error = browser.find_element(By.ID, "a-error")
    assert not error.is_displayed(), error.text
    job_id = browser.current_url.rsplit("/", 1)[1]
    job = _api(f"{url}/api/analyses/{job_id}")
    events = job["result"]["events"]
    assert job["status"] == "done" and len(events) >= 1  # the video holds 3 planted events

    markers = browser.find_elements(By.CSS_SELECTOR, "#timeline .marker")
    assert len(markers) == len(events)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#events .event")) == len(events)
    assert browser.find_element(By.ID, "demo-banner").is_displayed()
    assert "synthetic data" in browser.find_element(By.ID, "demo-banner").text
    downloads = browser.find_elements(By.CSS_SELECTOR, "#downloads a")
    assert {a.text for a in downloads} >= {"Analysis (JSON)", "Annotated video (MP4)"}
    assert len(downloads) == 5
    images = browser.find_elements(By.CSS_SELECTOR, "#events img")
    assert len(images) == sum(bool(e["motion_map"]) + bool(e["explanation_map"]) for e in events)
    wait.until(
        lambda d: all(d.execute_script("return arguments[0].naturalWidth", i) for i in images)
    )

    # clicking the last event's marker seeks the annotated video to its onset
    wait.until(lambda d: d.execute_script("return document.getElementById('player').readyState"))
    target = events[-1]
    markers[-1].click()
    wait.until(lambda d: abs(_player_time(d) - target["onset_s"]) < 0.05)
    expected = 100 * target["onset_s"] / job["result"]["duration_s"]
    wait.until(lambda d: abs(_cursor_percent(d) - expected) < 1.0)
    event_card = browser.find_element(By.CSS_SELECTOR, f'.event[data-index="{target["index"]}"]')
    assert "active" in event_card.get_attribute("class")
    # playing moves the time cursor along the timeline
    browser.execute_script("document.getElementById('player').currentTime = 0.5")
    wait.until(lambda d: _cursor_percent(d) < expected - 5)
    before = _cursor_percent(browser)
    browser.execute_script("document.getElementById('player').play()")
    wait.until(lambda d: _cursor_percent(d) > before + 3)
    browser.execute_script("document.getElementById('player').pause()")

    shot = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "mekit-serve-results.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    # the history lists it, with its number of events
    browser.find_element(By.CSS_SELECTOR, "a.back").click()
    row = wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, f'#history tr[data-id="{job_id}"]'))
    )
    assert video.name in row.text and "done" in row.text and str(len(events)) in row.text
    browser.save_screenshot(str(shot.with_name("mekit-serve-home.png")))


def test_a_camera_recording_is_uploaded_and_its_failure_shown(server, browser):
    """Chromium's fake camera shows no face: the analysis fails, and the page says why."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    browser.get(url + "/#/")
    wait = WebDriverWait(browser, 15)
    wait.until(ec.element_to_be_clickable((By.ID, "cam-start"))).click()
    wait.until(ec.element_to_be_clickable((By.ID, "rec-start"))).click()
    time.sleep(2.0)
    browser.find_element(By.ID, "rec-stop").click()
    wait.until(ec.element_to_be_clickable((By.ID, "rec-upload"))).click()
    WebDriverWait(browser, 90).until(
        lambda d: (
            d.find_element(By.ID, "a-error").is_displayed()
            or d.find_element(By.ID, "a-results").is_displayed()
        )
    )
    job_id = browser.current_url.rsplit("/", 1)[1]
    job = _api(f"{url}/api/analyses/{job_id}")
    assert job["filename"].startswith("camera-") and job["filename"].endswith(".webm")
    assert job["status"] == "failed" and "face" in job["error"]
    assert "/uploads/" not in job["error"]  # the user's name for the video, not the server's
    banner = browser.find_element(By.ID, "a-error")
    assert "The analysis failed" in banner.text and job["error"] in banner.text
    shot = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "mekit-serve-failed.png"
    browser.save_screenshot(str(shot))
    browser.find_element(By.CSS_SELECTOR, "a.back").click()
    row = wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, f'#history tr[data-id="{job_id}"]'))
    )
    assert "failed" in row.text and job["error"] in row.text


def test_the_html_report_opens_offline_with_every_picture(server, browser, tmp_path):
    """report.html alone, from disk (file://), in a browser with no network: every picture is
    drawn and nothing but the file itself and inline data is requested."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from mekit.app.analyze import AnalyzeConfig, analyze_video

    _, video = server
    out = tmp_path / "analysis"
    analysis = analyze_video(video, out, tiny_model(tmp_path / "model"), AnalyzeConfig(video=False))
    alone = tmp_path / "shared" / "report.html"  # as a person would send it: one file
    alone.parent.mkdir()
    shutil.copy(out / "report.html", alone)
    browser.get(alone.as_uri())
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 1 + len(analysis.events)  # the timeline and each event's maps
    WebDriverWait(browser, 10).until(
        lambda d: all(d.execute_script("return arguments[0].complete", i) for i in images)
    )
    assert all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    requested = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(name.startswith(("data:", "file:")) for name in requested), requested
    text = browser.find_element(By.TAG_NAME, "body").text
    assert video.name in text and "not a real-world emotion model" in text
