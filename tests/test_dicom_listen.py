"""`edgecxr dicom-listen`: dcmtk's storescu/echoscu and pynetdicom as the scanner, on 127.0.0.1; then the watcher."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from edgecxr.cli.app import app
from tests.dicom_net import SAMPLES, dx_dataset, inbox_files, run_dcmtk, scanner, start_listener, store_once


def _target(inbox, source):
    import pydicom

    ds = pydicom.dcmread(source, stop_before_pixels=True)
    return inbox / ds.StudyInstanceUID / f"{ds.SOPInstanceUID}.dcm"


def test_storescu_delivers_samples_as_sent_compressed_included(dicom_inbox):
    import pydicom

    listener, port, log = start_listener(dicom_inbox)
    try:
        echo = run_dcmtk("echoscu", "-aet", "CR01", "-aec", "EDGECXR", "127.0.0.1", str(port))
        assert echo.returncode == 0, echo.stderr
        # -xy: JPEG baseline is proposed beside the uncompressed syntaxes, so the JPEG sample travels compressed
        sent = run_dcmtk("storescu", "-aet", "CR01", "-aec", "EDGECXR", "-xy", "127.0.0.1",
                         str(port), *map(str, SAMPLES))
        assert sent.returncode == 0, sent.stderr
        lines = log.wait_associations(2)
    finally:
        listener.stop()
    assert len(inbox_files(dicom_inbox)) == len(SAMPLES)
    for source in SAMPLES:
        original, received = pydicom.dcmread(source), pydicom.dcmread(_target(dicom_inbox, source))
        assert received.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID  # not decompressed
        assert received.PixelData == original.PixelData and received.PatientID == original.PatientID
        assert received.file_meta.SourceApplicationEntityTitle.strip() == "CR01"
    store = next(line for line in lines if line["instances"])
    assert store["calling_ae"] == "CR01" and store["ip"] == "127.0.0.1" and store["outcome"] == "released"
    assert store["instances"] == len(SAMPLES) and store["bytes"] >= sum(p.stat().st_size for p in SAMPLES) - 1000
    assert "PID-SECRET" not in json.dumps(log) and "Doe" not in json.dumps(log)  # no patient data in the log


def test_resent_instance_is_acknowledged_without_a_second_copy(dicom_inbox, tmp_path):
    dx_dataset(tmp_path / "one.dcm")
    listener, port, log = start_listener(dicom_inbox)
    try:
        statuses = [store_once(port, tmp_path / "one.dcm").Status for _ in range(2)]
        stored = inbox_files(dicom_inbox)
        first_mtime = stored[0].stat().st_mtime_ns
        statuses.append(store_once(port, tmp_path / "one.dcm").Status)
        lines = log.wait_associations(3)
    finally:
        listener.stop()
    assert statuses == [0x0000] * 3
    assert inbox_files(dicom_inbox) == stored and len(stored) == 1 and stored[0].stat().st_mtime_ns == first_mtime
    assert [line["duplicates"] for line in lines] == [0, 1, 1]


def test_watcher_classifies_received_files_exactly_once(dicom_inbox):
    listener, port, _ = start_listener(dicom_inbox)
    runner = CliRunner()
    out = dicom_inbox / ".edgecxr"  # the default results folder inside the inbox is never taken for a study
    try:
        for round_ in range(2):  # the scanner sends everything twice, before and after classification
            sent = run_dcmtk("storescu", "-aec", "EDGECXR", "-xy", "127.0.0.1", str(port), *map(str, SAMPLES))
            assert sent.returncode == 0, sent.stderr
            result = runner.invoke(app, ["watch", str(dicom_inbox), "--recursive", "--once", "--quiet",
                                         "--settle-seconds", "0.2"])
            assert result.exit_code == 0, result.output
            records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
            assert len(records) == len(SAMPLES), f"round {round_}: {records}"
    finally:
        listener.stop()
    expected = {_target(dicom_inbox, s).relative_to(dicom_inbox).as_posix() for s in SAMPLES}
    assert {r["path"] for r in records} == expected
    assert all(r["status"] == "ok" for r in records)


def test_refusals_at_association(dicom_inbox):
    listener, port, log = start_listener(dicom_inbox, policy=_policy(["CR01"], []))
    try:
        wrong_ae = run_dcmtk("echoscu", "-aet", "INTRUDER", "-aec", "EDGECXR", "127.0.0.1", str(port))
        wrong_called = run_dcmtk("echoscu", "-aet", "CR01", "-aec", "OTHER", "127.0.0.1", str(port))
        right = run_dcmtk("echoscu", "-aet", "CR01", "-aec", "EDGECXR", "127.0.0.1", str(port))
        lines = log.wait_associations(3)
    finally:
        listener.stop()
    assert wrong_ae.returncode != 0 and "Rejected" in wrong_ae.stderr + wrong_ae.stdout
    assert wrong_called.returncode != 0 and right.returncode == 0, right.stderr
    assert [(line["outcome"], line.get("reason")) for line in lines] == [
        ("refused", "calling_ae_not_allowed"), ("refused", "called_ae_unknown"), ("released", None)]
    assert lines[0]["calling_ae"] == "INTRUDER"


def test_address_outside_allow_ip_is_rejected(dicom_inbox):
    listener, port, log = start_listener(dicom_inbox, policy=_policy([], ["10.0.0.0/8", "192.168.7.7"]))
    try:
        assoc = scanner(port, calling="CR01")
        rejected = assoc.is_rejected
        lines = log.wait_associations(1)
    finally:
        listener.stop()
    assert rejected and not inbox_files(dicom_inbox)
    assert lines[0]["reason"] == "ip_not_allowed" and lines[0]["ip"] == "127.0.0.1" and lines[0]["calling_ae"] == "CR01"
    allowed, port, log = start_listener(dicom_inbox, policy=_policy([], ["127.0.0.0/8"]))
    try:
        assoc = scanner(port)
        assert assoc.is_established
        assoc.release()
    finally:
        allowed.stop()


def test_more_associations_than_allowed_are_refused_then_accepted_again(dicom_inbox):
    listener, port, log = start_listener(dicom_inbox, max_associations=1)
    try:
        first = scanner(port)
        second = scanner(port)
        assert first.is_established and second.is_rejected
        first.release()
        deadline = time.monotonic() + 10  # a slot is free once the first association's thread has ended
        while listener.server.active_associations and time.monotonic() < deadline:
            time.sleep(0.02)
        third = scanner(port)
        assert third.is_established
        third.release()
        lines = log.wait_associations(3)
    finally:
        listener.stop()
    assert sorted(line.get("reason") or "" for line in lines) == ["", "", "too_many_associations"]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the malformed UID is the point
def test_disk_floor_and_bad_uids_are_refused_per_instance(dicom_inbox, tmp_path):
    dx_dataset(tmp_path / "ok.dcm")
    dx_dataset(tmp_path / "evil.dcm", study="../../escape")
    full, port, log = start_listener(dicom_inbox, min_free_mb=1e12)  # more than any disk: always below the floor
    try:
        floor = store_once(port, tmp_path / "ok.dcm")
        echo = run_dcmtk("echoscu", "-aec", "EDGECXR", "127.0.0.1", str(port))
        assert echo.returncode == 0, echo.stderr  # the node still answers; only storage is refused
    finally:
        full.stop()
    listener, port, log = start_listener(dicom_inbox)
    try:
        evil = store_once(port, tmp_path / "evil.dcm")
        lines = log.wait_associations(1)
    finally:
        listener.stop()
    assert floor.Status == 0xA700 and "disk" in floor.ErrorComment
    assert evil.Status == 0xC000 and "StudyInstanceUID" in evil.ErrorComment
    assert not inbox_files(dicom_inbox) and not list(tmp_path.glob("escape*"))
    assert lines[0]["refused"] == {"invalid_uid": 1} and lines[0]["instances"] == 0


def _policy(ae, ip):
    from edgecxr.dicomnet.access import AccessPolicy

    return AccessPolicy.parse(ae, ip)
