"""Delivery to a real PACS (Orthanc on loopback) when things go wrong for long: a disk error in the
builder or sender restarts it (visibly, in status()), objects the PACS keeps answering "try again"
about neither block newer results nor stay forever (failed/, then `edgecxr outbox retry`), and
crash recovery finds the unsent results although the ledger dropped a damaged line before them."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.core.data.fingerprint import sha256_file
from edgecxr.core.results import read_results
from edgecxr.dicomnet.destination import parse_destination
from edgecxr.dicomnet.outbox import DestinationBox, summary
from edgecxr.dicomnet.sender import SenderThread, SendOptions
from edgecxr.dicomnet.sink import DicomSendSink
from edgecxr.dicomnet.sr import Algorithm, build_sr, sr_uid
from edgecxr.runtime.ledger import Ledger
from edgecxr.web.metrics import render
from tests.orthanc import Orthanc
from tests.tools import require_module, wait_for

SAMPLES = Path(__file__).parents[1] / "edgecxr" / "samples" / "chest-xrays"
MANIFEST = json.loads((Path(__file__).parents[1] / "edgecxr" / "models" / "reference" / "bundle.json").read_text())
pydicom = require_module("pydicom")
require_module("highdicom")
require_module("pynetdicom")
FAST = SendOptions(first_retry_s=0.2, max_retry_s=0.5, timeout_s=10)
REFUSE_LUA = """function ReceivedInstanceFilter(dicom, origin, info)
  local f = io.open("{path}", "r")
  if f == nil then return true end
  local refused = f:read("*a")
  f:close()
  if string.find(refused, dicom.SOPInstanceUID, 1, true) then error("refused by the test PACS") end
  return true
end
"""


def refusing_pacs(folder: Path, refuse_list: Path) -> Orthanc:
    """Orthanc answering 0xA700 (out of resources: "try again") to every SOP Instance UID listed in a file."""
    server = Orthanc(folder)
    (folder / "refuse.lua").write_text(REFUSE_LUA.format(path=refuse_list))
    config = json.loads(server.config.read_text())
    server.config.write_text(json.dumps({**config, "LuaScripts": [str(folder / "refuse.lua")]}))
    return server


def result_line(inbox: Path, name: str) -> dict:
    """The line the watcher writes for an ok DICOM result (the fields the sink reads)."""
    ds = pydicom.dcmread(inbox / name, stop_before_pixels=True)
    return {"schema": "edgecxr.result/1", "path": name, "sha256": sha256_file(inbox / name), "status": "ok",
            "label": "PNEUMONIA", "probabilities": {"NORMAL": 0.2, "PNEUMONIA": 0.8}, "bundle": MANIFEST["name"],
            "bundle_checksum": MANIFEST["checksum"], "backend": "onnxruntime", "precision": "fp32",
            "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "dicom": {"SOPInstanceUID": ds.SOPInstanceUID, "StudyInstanceUID": ds.StudyInstanceUID}}


def srs_in(pacs: Orthanc) -> list[str]:
    return sorted(i["SOPInstanceUID"] for i in pacs.instances() if i.get("Modality") == "SR")


def test_a_disk_error_restarts_the_builder_and_the_sender_and_status_says_so(inbox, tmp_path):
    pacs = Orthanc(tmp_path / "orthanc").start()
    names = sorted(p.name for p in inbox.glob("*.dcm"))
    logs: list[str] = []
    sink = DicomSendSink(tmp_path / "out", inbox, [parse_destination(pacs.destination)], MANIFEST, options=FAST,
                         log=logs.append)
    box = sink.outbox.boxes[0]
    try:
        shutil.rmtree(box.pending_dir)
        box.pending_dir.write_bytes(b"")  # writing a built object now fails with an OSError, as on a full disk
        first = result_line(inbox, names[0])
        sink.accept(first, None, inbox / names[0])
        # the sender lists the broken folder too and may restart as well: which comes first is the scheduler's
        builder = wait_for(lambda: next((w for w in sink.status()["workers"]
                                         if w["name"] == "SR builder" and w["restarts"]), None), 20)
        assert builder and builder["name"] == "SR builder" and builder["alive"], sink.status()
        assert builder["last_error"].startswith(("FileExistsError", "NotADirectoryError")), builder
        assert sink.status()["queued"] == 1 and sink.status()["oldest_queued_s"] >= 0
        box.pending_dir.unlink()
        box.pending_dir.mkdir()
        want = [sr_uid(first["dicom"]["SOPInstanceUID"], MANIFEST["checksum"])]
        pacs.wait_for(lambda: srs_in(pacs) == want, 30, "the SR built after the restart")
        # the PACS has it once the association returns; the sender records it just after (CI lost this race)
        assert wait_for(box.sent_path.is_file, 30), sink.status()

        before = sink.status()["workers"][1]["restarts"]
        box.sent_path.unlink()
        box.sent_path.mkdir()  # the PACS takes the next object, but recording it fails (OSError)
        second = result_line(inbox, names[1])
        sink.accept(second, None, inbox / names[1])
        sender = wait_for(lambda: sink.status()["workers"][1]["restarts"] > before, 30)
        assert sender, sink.status()
        assert "IsADirectoryError" in sink.status()["workers"][1]["last_error"]
        assert sink.status()["destinations"][0]["pending"] == 1  # not lost: it goes again
        box.sent_path.rmdir()
        assert wait_for(lambda: sink.status()["destinations"][0]["sent"] == 1, 30), sink.status()
        assert all(w["alive"] for w in sink.status()["workers"])
        text = render({"state": "running", "sending": sink.status()})  # what /metrics shows from status.json
        assert 'edgecxr_sr_worker_up{worker="SR builder"} 1' in text
        assert f'edgecxr_sr_worker_restarts_total{{worker="sender to {pacs.destination}"}}' in text
        assert any("restarting in" in m for m in logs), logs
    finally:
        sink.close()
        pacs.stop()
    assert len(srs_in(pacs.start())) == 2  # the re-sent object carried the same UID: no duplicate
    pacs.discard()


def test_objects_the_pacs_keeps_refusing_neither_block_newer_ones_nor_stay_forever(tmp_path):
    refuse_list = tmp_path / "refuse.txt"
    pacs = refusing_pacs(tmp_path / "orthanc", refuse_list).start()
    dest = parse_destination(pacs.destination)
    out = tmp_path / "out"
    box = DestinationBox(out / "outbox", dest)
    source = pydicom.dcmread(sorted(SAMPLES.glob("*.dcm"))[0], stop_before_pixels=True)
    finding_record = {"status": "ok", "label": "NORMAL", "probabilities": {"NORMAL": 0.9, "PNEUMONIA": 0.1}}
    from edgecxr.dicomnet.finding import finding_from_record

    finding = finding_from_record(finding_record, MANIFEST)
    stuck = []
    for n in range(35):  # more than one batch (32) of objects the PACS answers "try again" about
        sr = build_sr(source, finding, Algorithm("stuck", f"checksum-{n}", "onnxruntime/fp32"))
        data = io.BytesIO()
        sr.save_as(data, enforce_file_format=True)
        box.add(str(sr.SOPInstanceUID), data.getvalue())
        os.utime(box.pending_dir / f"{sr.SOPInstanceUID}.dcm", (time.time() - 60 + n,) * 2)
        stuck.append(str(sr.SOPInstanceUID))
    os.utime(box.pending_dir / f"{stuck[0]}.dcm", (time.time() - 7200,) * 2)  # 2 h old: the age rule
    refuse_list.write_text("\n".join(stuck))
    fresh = build_sr(source, finding, Algorithm("fresh", "checksum-fresh", "onnxruntime/fp32"))
    data = io.BytesIO()
    fresh.save_as(data, enforce_file_format=True)
    box.add(str(fresh.SOPInstanceUID), data.getvalue())
    options = SendOptions(first_retry_s=0.2, max_retry_s=0.5, timeout_s=10, max_attempts=3, max_age_s=3600)
    sender = SenderThread(box, options, lambda m: None)
    sender.start()
    try:
        pacs.wait_for(lambda: srs_in(pacs) == [str(fresh.SOPInstanceUID)], 30, "the newer object")
        assert wait_for(lambda: summary(out)[0]["failed"] == 35 and summary(out)[0]["pending"] == 0, 60), summary(out)
    finally:
        sender.stop.set()
        sender.wake.set()
        sender.join(30)
    reasons = {p.stem: json.loads(p.read_text())["reason"] for p in box.failed_dir.glob("*.json")}
    assert "not delivered within 1 h" in reasons[stuck[0]] and "0xA700" in reasons[stuck[0]]
    assert all("gave up after 3" in reasons[uid] and "0xA700" in reasons[uid] for uid in stuck[1:])

    result = CliRunner().invoke(app, ["outbox", "retry", str(out), "--destination", pacs.destination])
    assert result.exit_code == 0, result.output
    assert f"PACS {pacs.destination}: 35 failed object(s) moved back to pending" in result.output
    assert (summary(out)[0]["failed"], summary(out)[0]["pending"]) == (0, 35)
    refuse_list.unlink()  # the PACS has room again
    sender = SenderThread(DestinationBox(out / "outbox", dest), options, lambda m: None)
    sender.start()
    try:
        pacs.wait_for(lambda: len(srs_in(pacs)) == 36, 60, "every object once")
    finally:
        sender.stop.set()
        sender.wake.set()
        sender.join(30)
        pacs.discard()
    assert summary(out)[0]["sent"] == 36
    wrong = CliRunner().invoke(app, ["outbox", "retry", str(out), "--destination", "OTHER@127.0.0.1:1"])
    assert wrong.exit_code == 2 and "has no destination OTHER@127.0.0.1:1" in wrong.output


def test_recovery_finds_unsent_results_after_the_ledger_dropped_a_damaged_line_before_them(inbox, tmp_path):
    pacs = Orthanc(tmp_path / "orthanc").start()
    out = tmp_path / "out"
    out.mkdir()
    dest = [parse_destination(pacs.destination)]
    names = sorted(p.name for p in inbox.glob("*.dcm"))
    lines = [result_line(inbox, n) for n in names]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines[:2]))
    try:
        DicomSendSink(out, inbox, dest, MANIFEST, options=FAST, log=lambda m: None).close()  # sending switched on
        with open(out / "results.jsonl", "a") as handle:  # recorded, then the crash: never queued
            handle.write(json.dumps(lines[2]) + "\n")
        text = (out / "results.jsonl").read_text().splitlines(keepends=True)
        (out / "results.jsonl").write_text("{damaged\n" + "".join(text[1:]))  # a disk error in line 1
        Ledger(out).close()  # the watcher's start sets the damaged line aside: the later lines move up
        assert [r["path"] for r in read_results(out)] == names[1:]
        logs: list[str] = []
        DicomSendSink(out, inbox, dest, MANIFEST, options=FAST, log=logs.append).close()
        assert any("queued 1 result(s)" in m for m in logs), logs
        assert srs_in(pacs) == [sr_uid(lines[2]["dicom"]["SOPInstanceUID"], MANIFEST["checksum"])]
    finally:
        pacs.discard()


def test_every_object_sent_from_a_scanners_invalid_header_passes_dciodvfy(tmp_path):
    from tests.test_dicom_sr import dciodvfy_errors, scanner_file

    pacs = Orthanc(tmp_path / "orthanc").start()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for path in sorted(SAMPLES.glob("*.dcm")):  # Patient's Age "58", a UTF-8 name with no character set
        scanner_file(path, inbox)
    declared = scanner_file(sorted(SAMPLES.glob("*.dcm"))[0], tmp_path, charset="ISO_IR 192", name="Çelik^Ayşe")
    ds = pydicom.dcmread(declared)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()  # a second instance, from a scanner that declares UTF-8
    ds.save_as(inbox / "declared.dcm")
    logs: list[str] = []
    sink = DicomSendSink(tmp_path / "out", inbox, [parse_destination(pacs.destination)], MANIFEST, send_sc=True,
                         options=FAST, log=logs.append)
    try:
        for path in sorted(inbox.glob("*.dcm")):
            sink.accept(result_line(inbox, path.name), None, path)
        pacs.wait_for(lambda: len(pacs.instances()) == 8, 120, "4 SRs and 4 SCs")
        for tags in pacs.instances():
            stored = tmp_path / f"{tags['SOPInstanceUID']}.dcm"
            stored.write_bytes(pacs.file(tags["SOPInstanceUID"]))
            assert dciodvfy_errors(stored) == [], tags["Modality"]
            back = pydicom.dcmread(stored)
            assert "PatientAge" not in back
            if back.get("SpecificCharacterSet") == "ISO_IR 192":
                assert str(back.PatientName) == "Çelik^Ayşe"
            else:
                assert not back.PatientName
        assert sum(i.get("SpecificCharacterSet") == "ISO_IR 192" for i in pacs.instances()) == 2  # SR and SC
    finally:
        sink.close()
        pacs.discard()
    said = "\n".join(logs)
    assert "PatientAge in the source header" in said and "PatientName in the source header" in said, said
    assert "Müller" not in said and "Çelik" not in said and "Übersicht" not in said


def test_an_object_removed_by_hand_leaves_no_backoff_behind(tmp_path):
    """Else the sender would keep waking for an object that is gone (a busy loop at 20 Hz)."""
    box = DestinationBox(tmp_path / "outbox", parse_destination("PACS@127.0.0.1:104"))
    box.add("1.2.3", b"not sent yet")
    box.note_retry(box.pending_dir / "1.2.3.dcm", "PACS@127.0.0.1:104: C-STORE status 0xA700", 60)
    assert box.due() == [] and box.next_due() is not None  # waiting its own backoff
    (box.pending_dir / "1.2.3.dcm").unlink()
    assert box.due() == [] and box.next_due() is None
    assert json.loads(box.attempts_path.read_text()) == {}
    assert DestinationBox(tmp_path / "outbox", parse_destination("PACS@127.0.0.1:104")).attempts == {}


def test_the_sink_starts_on_a_year_of_results_without_holding_them(inbox, tmp_path):
    """Crash recovery at start streams results.jsonl (twice at most) instead of loading it: 60,000 lines
    (about 30 MB) cost the sink's start a few MB of Python memory, not the hundreds a list of them would."""
    import tracemalloc

    out = tmp_path / "out"
    out.mkdir()
    dest = [parse_destination("PACS@127.0.0.1:9")]  # nothing is sent: only the start is measured
    DicomSendSink(out, inbox, dest, MANIFEST, options=FAST, log=lambda m: None, drain_seconds=0).close()
    line = result_line(inbox, sorted(p.name for p in inbox.glob("*.dcm"))[0])
    with open(out / "results.jsonl", "a") as handle:  # after sending began: every line is a recovery candidate
        for i in range(60_000):
            handle.write(json.dumps({**line, "path": f"gone/{i}.dcm"}) + "\n")  # their inputs are gone
    tracemalloc.start()
    try:
        DicomSendSink(out, inbox, dest, MANIFEST, options=FAST, log=lambda m: None, drain_seconds=0).close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.0f} MB"
