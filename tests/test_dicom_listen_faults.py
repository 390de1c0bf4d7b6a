"""`edgecxr dicom-listen` under attack and failure: mutual TLS, a listener killed mid-association, bad options."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from typer.testing import CliRunner

from edgecxr.cli.app import app
from tests.dicom_net import (
    client_tls,
    dx_dataset,
    inbox_files,
    make_certificates,
    run_dcmtk,
    scanner,
    spawn_listener,
    start_listener,
    store_once,
)


def test_mutual_tls_admits_only_clients_with_a_certificate_from_the_ca(dicom_inbox, tmp_path):
    from edgecxr.dicomnet.access import tls_context

    certs = make_certificates(tmp_path)
    dx_dataset(tmp_path / "one.dcm")
    context = tls_context(certs["server.pem"], certs["server.key"], certs["ca.pem"])
    listener, port, log = start_listener(dicom_inbox, ssl_context=context)
    try:
        outcomes = {}
        for cert in (None, "rogue", "client"):
            assoc = scanner(port, tls=client_tls(certs, cert))
            outcomes[cert] = assoc.is_established
            if assoc.is_established:
                assert assoc.send_c_store(tmp_path / "one.dcm").Status == 0x0000
                assoc.release()
        lines = log.wait_associations(3)
    finally:
        listener.stop()
    assert outcomes == {None: False, "rogue": False, "client": True}
    reasons = [line.get("reason", "") for line in lines]
    assert sum(r.startswith("tls_failed") for r in reasons) == 2, lines
    assert len(inbox_files(dicom_inbox)) == 1 and all(line["tls"] for line in lines)


def test_plain_client_cannot_reach_a_tls_listener(dicom_inbox, tmp_path):
    from edgecxr.dicomnet.access import tls_context

    certs = make_certificates(tmp_path)
    server_only = tls_context(certs["server.pem"], certs["server.key"], None)
    listener, port, _ = start_listener(dicom_inbox, ssl_context=server_only)
    try:
        plain = scanner(port)
        assert not plain.is_established
        encrypted = scanner(port, tls=client_tls(certs, None))  # server-only TLS: no client certificate needed
        assert encrypted.is_established
        encrypted.release()
    finally:
        listener.stop()


def test_listener_killed_mid_association_leaves_nothing_half_written(dicom_inbox, tmp_path):
    from pynetdicom import evt

    small = dx_dataset(tmp_path / "small.dcm")
    dx_dataset(tmp_path / "large.dcm", size=3072, seed=1)  # 18 MB: about 1100 PDUs of 16 kB
    proc, port = spawn_listener(dicom_inbox, "--allow-any-ae")
    sent = {"pdus": 0}

    def kill_after_some_data(event):  # runs in the scanner's network thread: the kill lands mid-transfer
        sent["pdus"] += 1
        if sent["pdus"] == 60:
            os.kill(proc.pid, signal.SIGKILL)

    try:
        assert store_once(port, tmp_path / "small.dcm").Status == 0x0000
        assoc = scanner(port, evt_handlers=[(evt.EVT_PDU_SENT, kill_after_some_data)])
        reply = assoc.send_c_store(tmp_path / "large.dcm")
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
    assert "Status" not in reply  # no response: the scanner sees a failure (and will send again)
    assert inbox_files(dicom_inbox) == [dicom_inbox / small.StudyInstanceUID / f"{small.SOPInstanceUID}.dcm"]
    # a partial write left by a kill during the final fsync is a dot-name the watcher skips; the next start removes it
    partial = dicom_inbox / small.StudyInstanceUID / f".{small.SOPInstanceUID}.dcm.1.receiving"
    partial.write_bytes(b"half")
    again, port = spawn_listener(dicom_inbox, "--allow-any-ae")
    try:
        assert store_once(port, tmp_path / "large.dcm").Status == 0x0000  # the scanner's retry succeeds
    finally:
        again.send_signal(signal.SIGTERM)
        _, stderr = again.communicate(timeout=30)
    assert again.returncode == 0, stderr
    events = [json.loads(line) for line in stderr.splitlines()]
    assert not partial.exists() and len(inbox_files(dicom_inbox)) == 2
    assert events[-1]["event"] == "stopped" and events[-1]["instances"] == 1


def test_instance_over_the_size_limit_aborts_the_association(dicom_inbox, tmp_path):
    small = dx_dataset(tmp_path / "small.dcm")
    dx_dataset(tmp_path / "large.dcm", size=1024)  # 2 MB of pixels
    listener, port, log = start_listener(dicom_inbox, max_instance_mb=1)
    try:
        assert store_once(port, tmp_path / "small.dcm").Status == 0x0000
        reply = store_once(port, tmp_path / "large.dcm")
        lines = log.wait_associations(2)
    finally:
        listener.stop()
    assert "Status" not in reply  # aborted: the scanner sees a failure, the listener's memory stays bounded
    assert inbox_files(dicom_inbox) == [dicom_inbox / small.StudyInstanceUID / f"{small.SOPInstanceUID}.dcm"]
    assert sorted((line.get("reason", ""), line["instances"]) for line in lines) == [("", 1), ("instance_too_large", 0)]


def test_option_errors_name_the_option(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["dicom-listen", "--inbox", str(tmp_path / "nope"), "--port", "0", "--allow-any-ae"])
    assert missing.exit_code == 2 and "inbox folder not found" in missing.stderr
    bad = ((["--allow-ip", "10.0.0.0/33"], "--allow-ip"), (["--tls-cert", str(tmp_path)], "--tls-key"),
           (["--ae-title", "A-TITLE-LONGER-THAN-16"], "--ae-title"), (["--allow-ae", "BAD\\AE"], "--allow-ae"),
           (["--max-associations", "0"], "--max-associations"), (["--max-instance-mb", "0"], "--max-instance-mb"))
    for args, text in bad:
        result = runner.invoke(app, ["dicom-listen", "--inbox", str(tmp_path), "--port", "0", *args,
                                     *([] if "--allow-ae" in args else ["--allow-any-ae"])])
        assert result.exit_code == 2 and text in result.stderr, (args, result.output)


def test_a_listener_open_to_any_calling_ae_must_be_asked_for(tmp_path):
    """No silent default: without --allow-ae or --allow-any-ae the listener does not start, and says both."""
    base = [sys.executable, "-m", "edgecxr", "dicom-listen", "--inbox", str(tmp_path), "--port", "0",
            "--host", "127.0.0.1"]
    for extra in ([], ["--allow-ae", "CR01", "--allow-any-ae"]):
        done = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "COLUMNS": "400"})
        assert done.returncode == 2, done.stderr
        assert "--allow-ae" in done.stderr and "--allow-any-ae" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []
    proc, port = spawn_listener(tmp_path, "--allow-ae", "CR01")
    try:
        stranger = run_dcmtk("echoscu", "-aet", "STRANGER", "-aec", "EDGECXR", "127.0.0.1", str(port))
        known = run_dcmtk("echoscu", "-aet", "CR01", "-aec", "EDGECXR", "127.0.0.1", str(port))
        assert stranger.returncode != 0 and known.returncode == 0, (stranger.stderr, known.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
