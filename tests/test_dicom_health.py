"""Destination health: periodic C-ECHO to each PACS, against a real Orthanc going up and down."""

from __future__ import annotations

import re
import subprocess
import urllib.request

import pytest

from edgecxr.core.results import read_status
from edgecxr.dicomnet.destination import parse_destination
from edgecxr.dicomnet.health import HealthMonitor
from tests.browser import start_watch
from tests.orthanc import AET, Orthanc
from tests.tools import require_module, require_tool, stop_process, wait_for

require_module("pynetdicom")


@pytest.fixture
def pacs(tmp_path):
    server = Orthanc(tmp_path / "orthanc")
    yield server
    server.discard()


def test_check_reports_down_up_rejected_and_down_again_in_words(pacs):
    said: list[str] = []
    dest = parse_destination(pacs.destination)
    wrong_title = parse_destination(f"NOTORTHANC@127.0.0.1:{pacs.dicom_port}")
    monitor = HealthMonitor([dest, wrong_title], "EDGECXR", interval_s=60, timeout_s=5, log=said.append)

    down = monitor.check(dest)
    assert down.reachable is False and down.last_ok is None and down.rtt_ms is None
    assert "connection refused" in down.last_error and f"127.0.0.1:{pacs.dicom_port}" in down.last_error
    assert said == [f"PACS {dest} does not answer C-ECHO: {down.last_error}"]

    pacs.start()
    up = monitor.check(dest)
    assert up.reachable is True and up.last_ok == up.last_checked and 0 < up.rtt_ms < 5000
    assert up.last_error == down.last_error  # the last error is kept, for the admin to read after the fact
    assert said[-1].startswith(f"PACS {dest} answers C-ECHO again")
    assert monitor.snapshot(str(dest)) == up.as_dict()

    rejected = monitor.check(wrong_title)  # Orthanc checks the called AE title
    # pynetdicom sometimes loses the A-ASSOCIATE-RJ when Orthanc closes right after it: either words will do
    assert rejected.reachable is False and ("rejected the association" in rejected.last_error or
                                            "accepted the connection, then closed" in rejected.last_error)
    assert "NOTORTHANC" in rejected.last_error or f"127.0.0.1:{pacs.dicom_port}" in rejected.last_error

    pacs.stop()
    again = monitor.check(dest)
    assert again.reachable is False and again.last_ok == up.last_ok and "connection refused" in again.last_error


def test_no_answer_is_bounded_by_the_timeout(tmp_path):
    import socket
    import time

    with socket.socket() as silent:  # accepts TCP (backlog) but never answers the A-ASSOCIATE-RQ
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        dest = parse_destination(f"PACS@127.0.0.1:{silent.getsockname()[1]}")
        start = time.monotonic()
        result = HealthMonitor([dest], "EDGECXR", interval_s=60, timeout_s=1).check(dest)
        assert time.monotonic() - start < 10
    assert result.reachable is False and result.last_error


def metrics(url: str) -> str:
    with urllib.request.urlopen(url + "metrics", timeout=10) as response:
        return response.read().decode()


def health_of(out) -> dict:
    rows = ((read_status(out) or {}).get("sending") or {}).get("destinations") or [{}]
    return rows[0].get("health") or {}


def test_watch_shows_pacs_health_in_status_json_and_metrics(pacs, tmp_path):
    require_module("onnxruntime")
    promtool = require_tool("promtool")
    pacs.start()
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    proc, url = start_watch(inbox, out, "--backend", "onnxruntime", "--send-sr", pacs.destination,
                            "--send-echo-interval", "0.5")
    try:
        assert wait_for(lambda: health_of(out).get("reachable") is True, 60), read_status(out)
        health = health_of(out)
        assert health["last_ok"] and health["rtt_ms"] > 0 and health["last_error"] is None
        text = metrics(url)
        label = f'{{destination="{AET}@127.0.0.1:{pacs.dicom_port}"}}'
        assert f"edgecxr_pacs_reachable{label} 1" in text, text
        assert re.search(rf"edgecxr_pacs_echo_rtt_seconds{re.escape(label)} 0\.\d+", text)
        assert f"edgecxr_pacs_last_echo_ok_time_seconds{label} " in text
        check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check

        pacs.stop()
        assert wait_for(lambda: health_of(out).get("reachable") is False, 60), read_status(out)
        down = health_of(out)
        assert "connection refused" in down["last_error"] and down["last_ok"] >= health["last_ok"]
        assert wait_for(lambda: f"edgecxr_pacs_reachable{label} 0" in metrics(url), 10)
    finally:
        stop_process(proc)

