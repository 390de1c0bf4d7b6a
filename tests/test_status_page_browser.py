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

from edgecxr.core.results import read_results
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
        assert (refused["status"], refused["result"]) == ("refused", "Not analysed")
        assert refused["why"] == "could not be read"
        message = recorded["broken.png"]["error"]["message"]  # "PATH: cause. Fix: what to do": shown without the path
        assert refused["reason"] and refused["reason"].rstrip(".") in message and str(inbox) not in refused["reason"]
        assert shown[XSS_NAME]["status"] == "ok"  # the hostile name is shown as text, not markup
        assert browser.find_elements("css selector", "img[src='x']") == []
        assert browser.execute_script("return document.querySelectorAll('#rows img:not(.thumb)').length") == 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "status-page.png"))

        from selenium.webdriver.support.ui import Select

        Select(browser.find_element("id", "filter")).select_by_value("not-analysed")
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


def gate_folder(out: Path, images: list[Path]) -> dict[str, dict]:
    """A results folder as the watcher with the intended-use gate writes it (issue 20's contract):
    two classified lines (one flagged), two the gate refused, one unreadable file; a heartbeat
    with a drift warning; thumbnails and one explanation map made from real chest images."""
    import numpy as np

    from edgecxr.explain.overlay import save_overlay

    (out / "thumbs").mkdir(parents=True)
    shas = [f"{i:02x}" * 32 for i in range(1, 6)]
    for sha, image in zip(shas, images):
        with Image.open(image) as picture:
            small = picture.convert("L").resize((64, 64))
            small.save(out / "thumbs" / f"{sha}.png")
            heat = np.zeros((8, 8), np.float32)
            heat[2:5, 1:4] = 0.3  # a fall of 30 points over the left lower zone
            if sha in shas[:2]:  # maps are made for classified images only
                save_overlay(picture.convert("RGB").resize((128, 128)), heat, out / "maps" / f"{sha}.png")
    common = {"schema": "edgecxr.result/1", "backend": "onnxruntime", "precision": "int8",
              "completed_at": datetime.now(timezone.utc).isoformat(),
              "dicom": {"PatientName": "DOE^JANE", "PatientAge": "058Y"}}
    ok = {**common, "status": "ok", "positive_class": "PNEUMONIA", "decision": "P(PNEUMONIA) ≥ 0.500"}
    lines = {
        "child.jpeg": {**ok, "sha256": shas[0], "label": "PNEUMONIA", "p_positive": 0.91,
                       "probabilities": {"NORMAL": 0.09, "PNEUMONIA": 0.91},
                       "gate": {"score": 11.2, "threshold": 30.5}},
        "adult.dcm": {**ok, "sha256": shas[1], "label": "NORMAL", "p_positive": 0.12,
                      "probabilities": {"NORMAL": 0.88, "PNEUMONIA": 0.12},
                      "gate": {"score": 24.0, "threshold": 30.5},
                      "flags": [{"code": "age_outside_population", "reason": "patient age 58 years is outside the "
                                 "trained population (1-5 years)", "age": "058Y"}]},
        "turned.png": {**common, "status": "out_of_scope", "sha256": shas[2], "gate": {
            "stage": "learned", "code": "unlike_training", "score": 52.7, "threshold": 30.5,
            "reason": "unlike the chest radiographs the model was trained on (turned, inverted or another body part)"}},
        "ct.dcm": {**common, "status": "out_of_scope", "sha256": "", "gate": {
            "stage": "tags", "code": "modality", "reason": "not a chest radiograph: the image is a CT",
            "score": None, "threshold": None}},
        "cut.jpeg": {**common, "status": "error", "sha256": "",
                     "error": {"code": "truncated", "message": f"{out}/cut.jpeg: the JPEG ends early (the transfer was "
                                                               "cut short). Fix: send the image again"}},
    }
    with open(out / "results.jsonl", "w") as handle:
        handle.writelines(json.dumps({**line, "path": name}) + "\n" for name, line in lines.items())
    (out / "status.json").write_text(json.dumps({
        "state": "running", "updated": datetime.now(timezone.utc).isoformat(), "heartbeat_s": 3600, "uptime_s": 600,
        "processed": 2, "refused": 1, "out_of_scope": 2, "backlog": 0, "waiting": 0, "bundle": "reference-micro-128",
        "backend": "onnxruntime", "precision": "int8", "reason": "parity verdict: pass", "last_error": None,
        "decision": "P(PNEUMONIA) ≥ 0.500",
        "drift": {"window": 200, "images": 200, "checks": [{"name": "refusal_rate", "observed": 0.09, "expected": 0.01,
                                                            "p_value": 1e-9}],
                  "warnings": ["9% of the last 200 images were not analysed, against 1% on validation images"]}}))
    return lines


def test_gate_refusals_drift_and_the_large_view(browser, tmp_path, mini_test_images):
    """What the gate adds to the page: not-analysed rows with their reason in words, a note on a
    flagged image, the drift warning, and the large view opened by click or keyboard."""
    from selenium.webdriver.common.keys import Keys

    from edgecxr.web.server import StatusServer

    lines = gate_folder(tmp_path, mini_test_images[:5])
    server = StatusServer(tmp_path, "127.0.0.1", 0).start()
    try:
        browser.get_log("browser")  # drop what an earlier test's page logged
        browser.get(server.url)
        wait_until(lambda: len(rows(browser)) == 5 and health(browser)[0] == "alive", 10, "five rows, alive")
        shown = {r["path"]: r for r in rows(browser)}
        for name in ("turned.png", "ct.dcm"):
            assert (shown[name]["result"], shown[name]["why"]) == ("Not analysed", "outside intended use")
            assert shown[name]["reason"] == lines[name]["gate"]["reason"]
        assert shown["cut.jpeg"]["why"] == "could not be read"
        assert shown["cut.jpeg"]["reason"] == "the JPEG ends early (the transfer was cut short)."
        text = browser.find_element("tag name", "body").text
        assert "What to do: send the image again" in text
        assert "patient age 58 years is outside the trained population" in text and "058Y" not in text
        assert "DOE" not in browser.page_source
        assert browser.find_element("id", "p-head").text == "P(PNEUMONIA)"
        drift = browser.find_element("id", "drift")
        assert drift.is_displayed() and "9% of the last 200 images were not analysed" in drift.text
        listed = browser.find_elements("css selector", "#na-list li")
        assert [li.get_attribute("data-seq") for li in listed] == ["5", "4", "3"]  # newest first
        assert "3 of the latest 5 images" in browser.find_element("id", "not-analysed").text
        assert not browser.find_element("id", "engine").get_attribute("open")  # the engine's reasoning is folded
        assert not browser.find_element("id", "h-rule").is_displayed()

        viewer = browser.find_element("id", "viewer")
        is_open = lambda: browser.execute_script("return document.getElementById('viewer').open")  # noqa: E731
        browser.find_element("css selector", "#rows tr[data-seq='1'] td.time").click()  # anywhere on the row
        wait_until(is_open, 5, "the large view")
        assert "child.jpeg" in viewer.text and "P(PNEUMONIA) 0.910" in viewer.text
        big = wait_until(lambda: browser.execute_script(
            "const i = [...document.querySelectorAll('#viewer img')];"
            "return i.length === 2 && i.every(x => x.complete && x.naturalWidth > 0) && i.map(x => x.width);"), 5,
            "both pictures in the large view")
        assert min(big) >= 300  # shown large, not at the row's 48 px
        assert browser.switch_to.active_element.get_attribute("id") == "viewer-close"
        browser.switch_to.active_element.send_keys(Keys.ESCAPE)
        wait_until(lambda: not is_open(), 5, "Escape to close the large view")
        assert browser.switch_to.active_element.text == "child.jpeg"  # the focus goes back where it was

        button = browser.find_element("css selector", "#rows tr[data-seq='3'] button.open")  # by keyboard alone
        button.send_keys(Keys.ENTER)
        wait_until(is_open, 5, "Enter on a file name to open the large view")
        assert "Not analysed: outside intended use" in viewer.text and "the comparison with the training" in viewer.text
        browser.find_element("id", "viewer-close").click()
        wait_until(lambda: not is_open(), 5, "the Close button")
        console = browser.get_log("browser")
        assert [e["message"] for e in console if e["level"] == "SEVERE"] == []
    finally:
        server.stop()


def test_pacs_health_shows_an_alert_for_a_pacs_that_does_not_answer(browser, tmp_path):
    """The C-ECHO check's answers (status.json "sending") as the page shows them; names are text, not HTML."""
    from edgecxr.web.server import StatusServer

    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    (tmp_path / "status.json").write_text(json.dumps({
        "state": "running", "updated": now, "uptime_s": 40, "processed": 3, "refused": 0, "backlog": 0,
        "waiting": 0, "bundle": "reference-micro-128", "backend": "onnxruntime", "precision": "int8",
        "reason": "test", "last_error": None, "sending": {"queued": 0, "workers": [
            {"name": "SR builder", "alive": False, "running": False, "restarts": 10, "gave_up": True,
             "last_error": "OSError: No space left on device"},
            {"name": "sender PACS@10.0.0.5:104", "alive": True, "running": True, "restarts": 0, "gave_up": False,
             "last_error": None}], "destinations": [
            {"destination": "PACS@10.0.0.5:104", "sent": 6, "pending": 0, "failed": 0, "committed": 6,
             "awaiting_commitment": 1,
             "health": {"reachable": True, "last_ok": now, "last_checked": now, "last_error": None, "rtt_ms": 12.5}},
            {"destination": "<b>RESEARCH</b>@10.0.0.9:11112", "sent": 0, "pending": 3, "failed": 1,
             "oldest_pending_s": 754.0,
             "health": {"reachable": False, "last_ok": None, "last_checked": now, "rtt_ms": None,
                        "last_error": "connection refused: nothing listens at 10.0.0.9:11112"}}]}}))
    server = StatusServer(tmp_path, "127.0.0.1", 0).start()
    try:
        browser.get(server.url)
        wait_until(lambda: health(browser)[0] == "alive", 10, "the heartbeat")
        alert = browser.find_element("id", "pacs-alert")
        assert alert.is_displayed()
        problems = [li.text for li in browser.find_elements("css selector", "#pacs-problems li")]
        assert problems == ["<b>RESEARCH</b>@10.0.0.9:11112: connection refused: nothing listens at 10.0.0.9:11112"]
        details = browser.execute_script("return document.getElementById('h-pacs').textContent")
        assert "PACS@10.0.0.5:104: answering (12.5 ms); sent 6 (committed 6, stored awaiting commitment 1), " \
            "waiting 0, refused 0" in details
        assert "not answering: connection refused" in details and \
            "waiting 3 (oldest since 13 min ago), refused 1" in details
        assert browser.find_element("id", "delivery-alert").is_displayed()  # the builder its supervisor gave up on
        stopped = [li.text for li in browser.find_elements("css selector", "#delivery-problems li")]
        assert stopped == ["SR builder stopped after 10 restarts: OSError: No space left on device"]
        assert not browser.find_elements("css selector", "#pacs-problems b")  # the name stayed text
    finally:
        server.stop()
