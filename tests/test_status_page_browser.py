"""The status page in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium):
what a person beside the scanner sees while a real `edgecxr watch --http` process classifies."""

from __future__ import annotations

import json
import os
import shutil
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

from edgecxr.runtime.ledger import read_results
from tests.browser import health, open_chromium, requested_urls, rows, start_watch, wait_until
from tests.tools import require_module, require_tool

ARTIFACTS = Path(os.environ.get("EDGECXR_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
XSS_NAME = "<img src=x onerror=alert(1)>.png"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path = require_tool("chromium"), require_tool("chromedriver")
    require_module("selenium")
    driver = open_chromium(tmp_path_factory.mktemp("chromium-profile"), chromium, driver_path)
    yield driver
    driver.quit()


def fill(inbox: Path, images: list[Path]) -> None:
    for path in images:
        shutil.copyfile(path, inbox / f".{path.name}.part")
        os.replace(inbox / f".{path.name}.part", inbox / path.name)
    (inbox / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not the rest of a PNG")
    with Image.open(images[0]) as image:  # a real image under a hostile name
        image.convert("L").save(inbox / f".{XSS_NAME}.part", format="PNG")
    os.replace(inbox / f".{XSS_NAME}.part", inbox / XSS_NAME)


def test_rows_appear_live_refusals_say_why_names_are_text_and_nothing_leaves_the_origin(
        browser, tmp_path, mini_test_images):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    proc, url = start_watch(inbox, out, "--backend", "onnxruntime")
    try:
        browser.get_log("performance")  # drop what the browser fetched before this test
        browser.get(url)
        wait_until(lambda: health(browser)[0] == "alive", 20, "the health panel to say alive")
        browser.execute_script("window.__sameDocument = true;")
        fill(inbox, mini_test_images[:3])
        wait_until(lambda: len(rows(browser)) == 5, 30, "five rows")
        wait_until(lambda: all(r["thumb"] > 0 for r in rows(browser) if r["status"] == "ok"), 10, "thumbnails")
        assert browser.execute_script("return window.__sameDocument === true;"), "the page reloaded"
        shown = {r["path"]: r for r in rows(browser)}
        recorded = {r["path"]: r for r in read_results(out)}
        assert sorted(shown) == sorted(recorded)
        for name, record in recorded.items():
            if record["status"] == "ok":
                assert shown[name]["result"] == record["label"]
        refused = shown["broken.png"]
        assert refused["result"] == f"refused: {recorded['broken.png']['error']['code']}"
        assert refused["reason"] == recorded["broken.png"]["error"]["message"] and "broken.png" in refused["reason"]
        assert shown[XSS_NAME]["status"] == "ok"  # the hostile name is shown as text, not markup
        assert browser.find_elements("css selector", "img[src='x']") == []
        assert browser.execute_script("return document.querySelectorAll('#rows img:not(.thumb)').length") == 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "status-page.png"))

        from selenium.webdriver.support.ui import Select

        Select(browser.find_element("id", "filter")).select_by_value("refused")
        visible = [r["path"] for r in rows(browser) if r["visible"]]
        assert visible == ["broken.png"]
        label = recorded[mini_test_images[0].name]["label"]
        Select(browser.find_element("id", "filter")).select_by_value(label)
        visible = {r["path"] for r in rows(browser) if r["visible"]}
        assert visible == {n for n, r in recorded.items() if r.get("label") == label}

        origin = url.rstrip("/")
        requests = requested_urls(browser, origin)
        assert any(u.startswith(origin + "/api/results") for u in requests)
        assert [u for u in requests if not u.startswith(origin + "/")] == []

        console = browser.get_log("browser")  # a blocked request (CSP) or a script error shows here
        assert [e["message"] for e in console if e["level"] == "SEVERE"] == []

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        _, text = wait_until(lambda: (h := health(browser))[0] == "unreachable" and h, 10, "no contact")
        assert "stopped or unreachable" in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_health_goes_stale_when_the_heartbeat_stops(browser, tmp_path):
    """A watcher whose loop hangs keeps its server alive; the page must still not say 'alive'."""
    from edgecxr.web.server import StatusServer

    old = (datetime.now(timezone.utc) - timedelta(seconds=95)).replace(microsecond=0).isoformat()
    (tmp_path / "status.json").write_text(json.dumps({
        "state": "running", "updated": old, "uptime_s": 400, "processed": 7, "refused": 1, "backlog": 0,
        "waiting": 0, "bundle": "reference-micro-128", "backend": "onnxruntime", "precision": "int8",
        "reason": "test", "last_error": None}))
    server = StatusServer(tmp_path, "127.0.0.1", 0).start()
    try:
        browser.get(server.url)
        state, text = wait_until(lambda: (h := health(browser))[0] != "connecting" and h, 10, "a status")
        assert state == "stale" and "no heartbeat for 9" in text and "stopped or hung" in text
    finally:
        server.stop()
