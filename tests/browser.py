"""Driving Debian's headless Chromium (Selenium + chromedriver) against a real `edgecxr watch --http`:
shared by the browser tests and the docs screenshot (tests/make_docs_screenshot.py)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.tools import wait_for

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,900")


def open_chromium(profile: Path, chromium: str = "/usr/bin/chromium", driver: str = "/usr/bin/chromedriver"):
    """A headless Chromium that logs every network request (for the same-origin check)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def wait_until(predicate, seconds: float, what: str):
    """Poll `predicate` until it returns something truthy, at most `seconds`."""
    value = wait_for(predicate, seconds, poll=0.1)
    if not value:
        raise AssertionError(f"timed out after {seconds} s waiting for {what}")
    return value


def start_watch(inbox: Path, out: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`edgecxr watch --http 127.0.0.1:0` in its own process, and the page address it printed."""
    cmd = [sys.executable, "-m", "edgecxr", "watch", str(inbox), "--out", str(out), "--http", "127.0.0.1:0",
           "--settle-seconds", "0.3", "--rescan-seconds", "1", "--quiet", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line.startswith("status page: "):
            return proc, line.split()[2]
    proc.kill()
    raise AssertionError(f"the watcher printed no status page address: {proc.communicate()}")


def health(driver) -> tuple[str, str]:
    return driver.execute_script(
        "const h = document.getElementById('health'); return [h.dataset.state, h.innerText];")


def rows(driver) -> list[dict]:
    return driver.execute_script("""return [...document.querySelectorAll('#rows tr')].map(tr => ({
        status: tr.dataset.status, label: tr.dataset.label, visible: !tr.hidden,
        path: tr.querySelector('.path').textContent, result: tr.querySelector('.result strong').textContent,
        why: (tr.querySelector('.result .why') || {}).textContent || null,
        reason: (tr.querySelector('.reason') || {}).textContent || null,
        thumb: (tr.querySelector('img.thumb') || {}).naturalWidth || 0}));""")


def requested_urls(driver, origin: str) -> list[str]:
    """Every request the page at `origin` made (the browser's own start-up pages excluded)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent" and \
                message["params"].get("documentURL", "").startswith(origin + "/"):
            urls.append(message["params"]["request"]["url"])
    return urls


