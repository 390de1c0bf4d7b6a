"""The audit trail: every event type written by the real commands, every message valid against the
DICOM audit message schema (PS3.15 A.5.1, tests/data/dicom-audit-message.rng), no patient data."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.core.results import read_results
from edgecxr.dicomnet.sr import sr_uid
from tests.dicom_net import SAMPLES, run_dcmtk, spawn_listener
from tests.orthanc import Orthanc, free_port
from tests.tools import require_module, stop_process

etree = require_module("lxml") and __import__("lxml.etree").etree
pydicom = require_module("pydicom")
require_module("pynetdicom")
SCHEMA = Path(__file__).parent / "data" / "dicom-audit-message.rng"
PATIENT = ("Doe", "Jane", "PID-SECRET")  # the sample's patient name and ID (fake values): never in the trail


def messages(path: Path) -> list:
    """Each line parsed and validated; the parsed messages."""
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    parsed = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        doc = etree.fromstring(line.encode())
        assert schema.validate(doc), f"line {number} is not a valid DICOM audit message: {schema.error_log}\n{line}"
        parsed.append(doc)
    text = path.read_text()
    assert not any(value in text for value in PATIENT), text
    return parsed


def kind(doc) -> tuple[str, str | None, str]:
    """(EventID, EventTypeCode or None, EventOutcomeIndicator)."""
    event = doc.find("EventIdentification")
    etype = event.find("EventTypeCode")
    return (event.find("EventID").get("csd-code"), None if etype is None else etype.get("csd-code"),
            event.get("EventOutcomeIndicator"))


def participant(doc, role: str):
    return next(p for p in doc.findall("ActiveParticipant") if p.find(f"RoleIDCode[@csd-code='{role}']") is not None)


def test_schema_rejects_what_the_standard_does_not_allow():
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    no_original_text = (b'<AuditMessage><EventIdentification EventDateTime="2030-01-01T00:00:00Z" '
                        b'EventOutcomeIndicator="0"><EventID csd-code="110100" codeSystemName="DCM"/>'
                        b'</EventIdentification><ActiveParticipant UserID="A" UserIsRequestor="true"/>'
                        b'<AuditSourceIdentification AuditSourceID="S"/></AuditMessage>')
    assert not schema.validate(etree.fromstring(no_original_text))
    fixed = no_original_text.replace(b'codeSystemName="DCM"/>', b'codeSystemName="DCM" originalText="x"/>')
    assert schema.validate(etree.fromstring(fixed))
    assert not schema.validate(etree.fromstring(fixed.replace(b'"0"', b'"3"')))  # outcome 0, 4, 8 or 12 only


def test_watch_audits_start_classification_refusals_send_failure_and_stop(tmp_path):
    require_module("onnxruntime")
    pacs = Orthanc(tmp_path / "orthanc").start()
    inbox, out, trail = tmp_path / "inbox", tmp_path / "out", tmp_path / "audit" / "audit.log"
    inbox.mkdir()
    shutil.copyfile(SAMPLES[0], inbox / "dx.dcm")
    ct = pydicom.dcmread(SAMPLES[0])
    ct.Modality, ct.SOPInstanceUID = "CT", pydicom.uid.generate_uid()
    ct.file_meta.MediaStorageSOPInstanceUID = ct.SOPInstanceUID
    ct.save_as(inbox / "ct.dcm")
    (inbox / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not the rest of a PNG")
    dead = f"DEAD@127.0.0.1:{free_port()}"
    try:
        result = CliRunner().invoke(app, ["watch", str(inbox), "--once", "--settle-seconds", "0", "--backend",
                                          "onnxruntime", "--out", str(out), "--send-sr", pacs.destination,
                                          "--send-sr", dead, "--send-echo-interval", "0", "--audit-log", str(trail)])
    finally:
        pacs.discard()
    assert result.exit_code == 0, result.output
    records = {r["path"]: r for r in read_results(out)}
    assert {r["status"] for r in records.values()} == {"ok", "out_of_scope", "error"}, records
    docs = messages(trail)
    kinds = [kind(d) for d in docs]
    assert kinds[0] == ("110100", "110120", "0") and kinds[-1] == ("110100", "110121", "0")  # start ... stop
    assert kinds.count(("110103", "CLASSIFIED", "0")) == 1
    refusals = [d for d in docs if kind(d) == ("110103", "REFUSED", "4")]
    described = sorted(d.findtext("EventIdentification/EventOutcomeDescription") for d in refusals)
    gate, error = records["ct.dcm"]["gate"], records["broken.png"]["error"]
    assert described == sorted([f"error: {error['code']}",
                                f"out_of_scope: {gate['code']} at the {gate['stage']} check"])
    study = str(pydicom.dcmread(SAMPLES[0], stop_before_pixels=True).StudyInstanceUID)
    sr = sr_uid(records["dx.dcm"]["dicom"]["SOPInstanceUID"], records["dx.dcm"]["bundle_checksum"])
    sent = [d for d in docs if kind(d) == ("110104", None, "0")]
    assert len(sent) == 1 and participant(sent[0], "110152").get("UserID") == "ORTHANC"
    assert participant(sent[0], "110153").get("UserID") == "EDGECXR"
    assert sent[0].find("ParticipantObjectIdentification").get("ParticipantObjectID") == study
    assert sent[0].find(".//Instance").get("UID") == sr
    failed = [d for d in docs if kind(d) == ("110104", None, "4")]
    assert failed and participant(failed[0], "110152").get("UserID") == "DEAD"
    why = failed[0].findtext("EventIdentification/EventOutcomeDescription")
    assert why.startswith("not delivered, will retry:") and "connection refused" in why
    assert all(d.find("EventIdentification").get("EventActionCode") == "R" for d in sent + failed)
    assert "dx.dcm" not in trail.read_text() and "broken.png" not in trail.read_text()  # no file names


def test_dicom_listen_audits_receipt_rejection_start_and_stop(tmp_path):
    inbox, trail = tmp_path / "inbox", tmp_path / "audit.log"
    inbox.mkdir()
    proc, port = spawn_listener(inbox, "--allow-ae", "SCANNER", "--audit-log", str(trail))
    try:
        stored = run_dcmtk("storescu", "-aet", "SCANNER", "-aec", "EDGECXR", "127.0.0.1", str(port), str(SAMPLES[0]))
        refused = run_dcmtk("echoscu", "-aet", "INTRUDER", "-aec", "EDGECXR", "127.0.0.1", str(port))
    finally:
        stop_process(proc)
    assert stored.returncode == 0, stored.stderr
    assert refused.returncode != 0  # the association was rejected
    docs = messages(trail)
    kinds = [kind(d) for d in docs]
    assert kinds[0] == ("110100", "110120", "0") and kinds[-1] == ("110100", "110121", "0"), kinds
    received = [d for d in docs if kind(d) == ("110104", None, "0")]
    assert len(received) == 1 and received[0].find("EventIdentification").get("EventActionCode") == "C"
    source = participant(received[0], "110153")
    assert (source.get("UserID"), source.get("NetworkAccessPointID")) == ("SCANNER", "127.0.0.1")
    assert participant(received[0], "110152").get("UserID") == "EDGECXR"
    header = pydicom.dcmread(SAMPLES[0], stop_before_pixels=True)
    assert received[0].find("ParticipantObjectIdentification").get("ParticipantObjectID") == header.StudyInstanceUID
    assert received[0].find(".//Instance").get("UID") == header.SOPInstanceUID
    alerts = [d for d in docs if kind(d) == ("110113", "110126", "4")]
    assert len(alerts) == 1, kinds
    assert alerts[0].find("ActiveParticipant").get("UserID") == "INTRUDER"
    assert "association refused" in alerts[0].findtext("EventIdentification/EventOutcomeDescription")


def test_audit_messages_also_go_to_a_syslog_collector_as_rfc5424(tmp_path):
    import re
    import socket

    inbox, trail = tmp_path / "inbox", tmp_path / "audit.log"
    inbox.mkdir()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.settimeout(10)
        proc, port = spawn_listener(inbox, "--allow-ae", "SCANNER", "--audit-log", str(trail), "--audit-syslog",
                                    f"127.0.0.1:{collector.getsockname()[1]}")
        try:
            run_dcmtk("echoscu", "-aet", "INTRUDER", "-aec", "EDGECXR", "127.0.0.1", str(port))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        datagrams = [collector.recv(65535) for _ in range(3)]  # start, the refused association, stop
    header = re.compile(rb"^<85>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+ edgecxr \d+ IHE\+RFC-3881 - \xef\xbb\xbf")
    xml = []
    for data in datagrams:
        match = header.match(data)
        assert match, data[:120]
        xml.append(data[match.end():].decode("utf-8"))
    assert xml == trail.read_text().splitlines()  # the same messages as the file, in order
    assert [kind(d)[:2] for d in messages(trail)] == [("110100", "110120"), ("110113", "110126"),
                                                      ("110100", "110121")]


def test_audit_options_are_checked_at_start(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    base = ["dicom-listen", "--inbox", str(inbox), "--port", "0", "--allow-ae", "SCANNER"]
    alone = CliRunner().invoke(app, [*base, "--audit-syslog", "127.0.0.1:514"])
    assert alone.exit_code != 0 and "--audit-syslog needs --audit-log" in alone.output, alone.output
    bad = CliRunner().invoke(app, [*base, "--audit-log", str(tmp_path / "a.log"), "--audit-syslog", "collector"])
    assert bad.exit_code != 0 and "is not HOST:PORT" in bad.output, bad.output
