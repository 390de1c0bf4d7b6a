"""The docs' walk-through (docs/pacs.md), on one machine with free loopback ports: Orthanc as the PACS,
`edgecxr dicom-listen` receiving, `edgecxr watch --send-sr --send-sc` classifying and sending,
dcmtk's storescu pushing the bundled sample DICOMs; the SRs and SCs appear in Orthanc's REST API."""

from __future__ import annotations

import signal
import subprocess
import sys

from typer.testing import CliRunner

from edgecxr.cli.app import app
from tests.dicom_net import SAMPLES, run_dcmtk, spawn_listener
from tests.orthanc import Orthanc
from tests.test_dicom_send import check_srs, manifest
from tests.tools import require_module

require_module("onnxruntime")


def test_walkthrough_scanner_to_listener_to_watch_to_pacs(tmp_path):
    pacs = Orthanc(tmp_path / "pacs").start()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    listener, port = spawn_listener(inbox, "--allow-ae", "STORESCU")  # dcmtk storescu's calling AE title
    watch = subprocess.Popen([sys.executable, "-m", "edgecxr", "watch", str(inbox), "--recursive",
                              "--archive", str(tmp_path / "done"), "--send-sr", pacs.destination, "--send-sc",
                              "--settle-seconds", "0.5", "--rescan-seconds", "1", "--backend", "onnxruntime"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pushed = run_dcmtk("storescu", "-aec", "EDGECXR", "-xy", "127.0.0.1", str(port), *map(str, SAMPLES))
        assert pushed.returncode == 0, pushed.stderr
        pacs.wait_for(lambda: len(pacs.get("/instances")) == 2 * len(SAMPLES), timeout=120,
                      what="an SR and an SC per pushed image")
        check_srs(pacs, manifest()["checksum"])
        status = CliRunner().invoke(app, ["status", str(inbox / ".edgecxr")])
    finally:
        for proc in (watch, listener):
            proc.send_signal(signal.SIGTERM)
        for proc in (watch, listener):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        pacs.discard()
    assert f"PACS {pacs.destination}: pending 0, sent {2 * len(SAMPLES)}, failed 0" in status.output, status.output
