"""`watch --send-sr` against a real PACS (Orthanc on loopback): every DICOM result arrives as an SR,
once, whether the PACS was down, the watcher was killed, or both."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.core.results import read_results, read_status
from edgecxr.dicomnet.destination import parse_destination
from edgecxr.dicomnet.outbox import summary
from edgecxr.dicomnet.sender import SendOptions
from edgecxr.dicomnet.sink import DicomSendSink
from edgecxr.dicomnet.sr import sr_uid
from tests.orthanc import Orthanc
from tests.tools import require_module, wait_for

SAMPLES = Path(__file__).parents[1] / "edgecxr" / "samples" / "chest-xrays"
pydicom = require_module("pydicom")
hd = require_module("highdicom")
require_module("pynetdicom")
require_module("onnxruntime")
FAST = SendOptions(first_retry_s=0.2, max_retry_s=0.5, timeout_s=10)


@pytest.fixture
def inbox(inbox: Path) -> Path:
    """conftest's inbox of the sample DICOMs, plus a JPEG: classified, but no study to file an SR in."""
    shutil.copyfile(next(SAMPLES.glob("*.jpeg")), inbox / "not-dicom.jpeg")
    return inbox


def sources(folder: Path) -> dict[str, str]:
    """SOP Instance UID -> Study Instance UID of the sample DICOMs."""
    found = {}
    for path in SAMPLES.glob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found[ds.SOPInstanceUID] = ds.StudyInstanceUID
    return found


def srs_in(pacs: Orthanc) -> list[dict]:
    return [i for i in pacs.instances() if i.get("Modality") == "SR"]


def check_srs(pacs: Orthanc, checksum: str) -> None:
    """One SR per DICOM input, each filed in its source's study and referencing it."""
    expected = sources(SAMPLES)
    srs = srs_in(pacs)
    assert sorted(s["SOPInstanceUID"] for s in srs) == sorted(sr_uid(uid, checksum) for uid in expected)
    for tags in srs:
        sr = hd.sr.srread(io.BytesIO(pacs.file(tags["SOPInstanceUID"])))
        source_uid = sr.content.get_image_measurement_groups()[0].source_images[0].referenced_sop_instance_uid
        assert sr.StudyInstanceUID == expected[source_uid]
        assert sr.PatientID == "PID-SECRET"  # copied from the source header (fake test values)


def watcher_for(inbox: Path, out: Path, sink, **options):
    from edgecxr.backends import RunnerOptions
    from edgecxr.core.bundle import load_bundle
    from edgecxr.runtime.classifier import Classifier
    from edgecxr.runtime.default_bundle import resolve_bundle
    from edgecxr.runtime.selection import choose
    from edgecxr.runtime.watcher import Watcher, WatchOptions

    bundle = load_bundle(resolve_bundle(None))
    classifier = Classifier(bundle, choose(bundle, "onnxruntime", "fp32"), RunnerOptions(threads=1))
    opts = WatchOptions(inbox=inbox, out=out, settle_seconds=0, **options)
    return Watcher(classifier, opts, log=lambda m: None, sinks=[sink] if sink else []), classifier


def sending(out: Path) -> dict | None:
    """The sink's counts for the one PACS, as the watcher's heartbeat (status.json) carries them."""
    rows = ((read_status(out) or {}).get("sending") or {}).get("destinations") or [None]
    return rows[0]


def counts(row: dict | None) -> dict | None:
    return {k: row.get(k) for k in ("destination", "sent", "pending", "failed")} if row else None


def manifest() -> dict:
    from edgecxr.core.bundle import load_bundle
    from edgecxr.runtime.default_bundle import resolve_bundle

    return load_bundle(resolve_bundle(None)).manifest


def test_watch_send_sr_and_sc_end_to_end(inbox, pacs, tmp_path):
    pacs.start()
    out = tmp_path / "results"
    args = ["watch", str(inbox), "--once", "--settle-seconds", "0", "--backend", "onnxruntime", "--out", str(out),
            "--archive", str(tmp_path / "done"), "--send-sr", pacs.destination, "--send-sc"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    check_srs(pacs, manifest()["checksum"])
    scs = [i for i in pacs.instances() if i.get("Modality") != "SR"]
    assert len(scs) == 3 and all(i["BurnedInAnnotation"] == "YES" for i in scs)
    status = CliRunner().invoke(app, ["status", str(out)])
    assert f"PACS {pacs.destination}: pending 0, sent 6, failed 0" in status.output, status.output
    assert json.loads(CliRunner().invoke(app, ["status", str(out), "--json"]).output)["outbox"][0]["sent"] == 6


def test_pacs_down_results_arrive_once_after_it_returns(inbox, pacs, tmp_path):
    out = tmp_path / "results"
    dest = [parse_destination(pacs.destination)]
    sink = DicomSendSink(out, inbox, dest, manifest(), options=FAST, log=lambda m: None)
    watcher, classifier = watcher_for(inbox, out, sink, rescan_seconds=0.2, archive=tmp_path / "done")
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (summary(out) and summary(out)[0]["pending"] == 3
                                                    and summary(out)[0]["last_error"]):
            time.sleep(0.1)
        row = summary(out)[0]
        assert (row["pending"], row["sent"]) == (3, 0) and "no association" in row["last_error"]
        assert len(read_results(out)) == 4  # classification went on while the PACS was down
        assert wait_for(lambda: counts(sending(out)) == {"destination": pacs.destination, "sent": 0, "pending": 3,
                                                         "failed": 0}, 15), read_status(out)  # the heartbeat shows it
        assert (sending(out) or {}).get("oldest_pending_s", -1) >= 0
        pacs.start()
        pacs.wait_for(lambda: len(srs_in(pacs)) == 3, timeout=60, what="3 SRs")
        assert wait_for(lambda: (sending(out) or {}).get("sent") == 3, 15), read_status(out)
    finally:
        stop.set()
        watcher.wake.set()
        thread.join(60)
        classifier.close()
    status = sink.status()
    assert (status["queued"], [counts(d) for d in status["destinations"]]) == (
        0, [{"destination": pacs.destination, "sent": 3, "pending": 0, "failed": 0}])
    assert [w["name"] for w in status["workers"]] == ["SR builder", f"sender to {pacs.destination}"]
    assert not any(w["alive"] or w["restarts"] for w in status["workers"])  # stopped, never restarted
    check_srs(pacs, manifest()["checksum"])
    restarted = DicomSendSink(out, inbox, dest, manifest(), options=FAST, log=lambda m: None)
    restarted.close()
    assert (summary(out)[0]["pending"], summary(out)[0]["sent"]) == (0, 3)  # 3 acknowledged C-STOREs, no more
    assert len(pacs.instances()) == 3


def test_sigkill_between_classifying_and_sending_still_sends_once(inbox, pacs, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "edgecxr", "watch", str(inbox), "--out", str(out), "--settle-seconds", "0",
           "--rescan-seconds", "0.2", "--backend", "onnxruntime", "--archive", str(tmp_path / "done"),
           "--send-sr", pacs.destination, "--send-retry-max", "0.5"]
    watch = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (summary(out) and summary(out)[0]["pending"] == 3):
            assert watch.poll() is None, "the watcher exited on its own"
            time.sleep(0.1)
        assert summary(out)[0]["pending"] == 3  # classified, SRs built, PACS down: nothing sent yet
    finally:
        os.kill(watch.pid, signal.SIGKILL)
        watch.wait(30)
    pacs.start()
    again = subprocess.run([*cmd, "--once"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    check_srs(pacs, manifest()["checksum"])
    assert len(pacs.instances()) == 3
    assert (summary(out)[0]["pending"], summary(out)[0]["sent"]) == (0, 3)  # 3 acknowledged C-STOREs, no more
    assert len(read_results(out)) == 4  # and nothing was classified twice


def test_results_recorded_but_never_queued_are_recovered_and_earlier_ones_are_not(inbox, pacs, tmp_path):
    """A kill after the result line but before the sink saw it: the next start queues it from the inbox.
    Results recorded before --send-sr was switched on are never sent retroactively."""
    pacs.start()
    out = tmp_path / "results"
    dest = [parse_destination(pacs.destination)]
    early = inbox / "early"
    early.mkdir()
    shutil.move(inbox / "NORMAL-IM-0045-0001.dx.dcm", early / "NORMAL-IM-0045-0001.dx.dcm")
    watcher, classifier = watcher_for(inbox, out, None, once=True, recursive=True)
    watcher.run(threading.Event())  # recorded with no sending configured
    classifier.close()
    DicomSendSink(out, inbox, dest, manifest(), options=FAST, log=lambda m: None).close()  # sending switched on
    late = pydicom.dcmread(early / "NORMAL-IM-0045-0001.dx.dcm")  # a new instance: the same one again is a duplicate
    late.SOPInstanceUID = late.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    late.save_as(inbox / "late.dcm")
    watcher, classifier = watcher_for(inbox, out, None, once=True)
    watcher.run(threading.Event())  # the line is written, then the "crash": the sink never sees it
    classifier.close()
    logs = []
    DicomSendSink(out, inbox, dest, manifest(), options=FAST, log=logs.append).close()
    assert any("queued 1 result(s)" in m for m in logs), logs
    (only,) = srs_in(pacs)
    source = pydicom.dcmread(inbox / "late.dcm", stop_before_pixels=True)
    assert only["SOPInstanceUID"] == sr_uid(source.SOPInstanceUID, manifest()["checksum"])
