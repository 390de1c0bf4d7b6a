"""The audit trail: DICOM audit messages (PS3.15 A.5, the format IHE ATNA uses) in a local file.

One message per line (the XML of one <AuditMessage>, no line break inside), appended and flushed
as each event happens, so `tail -f`, logrotate and a syslog forwarder can each take whole lines.
Events: application start/stop (110100), receipt of an instance and each send to a PACS or its
failure (110104 DICOM Instances Transferred), classification and refusal of an image (110103 DICOM
Instances Accessed, with an edgecxr event type), and a rejected association (110113 Security Alert,
110126 Node Authentication).

Only identifiers the schema asks for are written: AE titles, addresses, Study/SOP Instance UIDs,
SOP classes, reason codes. Never a patient name, patient ID, file name or free text taken from a
header: a refusal says its reason code, not the message that may quote a value.
"""

from __future__ import annotations

import os
import socket
import threading
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from edgecxr.core.errors import EdgecxrError

DCM = "DCM"
LOCAL = "99EDGECXR"  # edgecxr's own coding scheme, for event types the standard does not name
SUCCESS, MINOR, SERIOUS = "0", "4", "8"
APPLICATION_ACTIVITY = ("110100", DCM, "Application Activity")
INSTANCES_ACCESSED = ("110103", DCM, "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = ("110104", DCM, "DICOM Instances Transferred")
SECURITY_ALERT = ("110113", DCM, "Security Alert")
APPLICATION_START = ("110120", DCM, "Application Start")
APPLICATION_STOP = ("110121", DCM, "Application Stop")
NODE_AUTHENTICATION = ("110126", DCM, "Node Authentication")
ROLE_APPLICATION = ("110150", DCM, "Application")
ROLE_LAUNCHER = ("110151", DCM, "Application Launcher")
ROLE_DESTINATION = ("110152", DCM, "Destination Role ID")
ROLE_SOURCE = ("110153", DCM, "Source Role ID")
STUDY_UID = ("110180", DCM, "Study Instance UID")
CLASSIFICATION = ("CLASSIFIED", LOCAL, "AI classification")
REFUSAL = ("REFUSED", LOCAL, "Input refused")
COMMITMENT = ("COMMITTED", LOCAL, "Storage commitment")  # the PACS's answer to our N-ACTION (--send-commit)
MAX_DESCRIPTION = 512


def _coded(parent: ET.Element, tag: str, code: tuple[str, str, str]) -> ET.Element:
    value, scheme, meaning = code
    return ET.SubElement(parent, tag, {"csd-code": value, "codeSystemName": scheme, "originalText": meaning})


class AuditLog:
    """Appends one audit message per line to `path`; safe to call from the listener's and senders' threads."""

    def __init__(self, path: Path, source_id: str, forward=None):
        """`forward`: also called with each message (audit_syslog.SyslogForwarder), after the file has it."""
        self.path, self.source_id, self.forward = path, source_id, forward
        self.host = socket.gethostname()
        self._lock = threading.Lock()
        # a failing audit write must never stop a sender or the listener: counted here, shown by the caller
        self.failures = 0
        self.last_error: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the process's life)
        except OSError as exc:
            raise EdgecxrError(f"cannot open the audit trail file ({exc.strerror or exc})", path=path,
                               fix="give --audit-log a writable path, e.g. /var/lib/edgecxr/audit.log") from exc

    def close(self) -> None:
        with self._lock:
            self._file.close()
            if self.forward is not None and hasattr(self.forward, "close"):
                self.forward.close()

    # -- events ---------------------------------------------------------------------------
    def application(self, started: bool, ae_title: str) -> None:
        message, _ = self._message(APPLICATION_ACTIVITY, "E", SUCCESS,
                                   APPLICATION_START if started else APPLICATION_STOP)
        self._us(message, ae_title, ROLE_APPLICATION, requestor=False)
        launcher = ET.SubElement(message, "ActiveParticipant", {"UserID": _user(), "UserIsRequestor": "true"})
        _coded(launcher, "RoleIDCode", ROLE_LAUNCHER)
        self._write(message)

    def received(self, calling_ae: str, ip: str, ae_title: str, study: str, sop_class: str, sop: str) -> None:
        """An instance stored by the listener (C-STORE from a scanner or PACS)."""
        message, _ = self._message(INSTANCES_TRANSFERRED, "C", SUCCESS)
        self._peer(message, calling_ae, ip, ROLE_SOURCE, requestor=True)
        self._us(message, ae_title, ROLE_DESTINATION, requestor=False)
        self._study(message, study, {sop_class: [sop]})
        self._write(message)

    def sent(self, destination, ae_title: str, studies: dict[str, dict[str, list[str]]], outcome: str = SUCCESS,
             why: str | None = None, event_type=None) -> None:
        """Objects a PACS accepted (outcome 0), refused for good (8) or could not be given (4, `why`);
        with event_type COMMITMENT, its storage-commitment answer for them."""
        message, event = self._message(INSTANCES_TRANSFERRED, "R", outcome, event_type)
        if why:
            ET.SubElement(event, "EventOutcomeDescription").text = _one_line(why)
        self._us(message, ae_title, ROLE_SOURCE, requestor=True)
        self._peer(message, destination.ae_title, destination.host, ROLE_DESTINATION, requestor=False)
        for study, classes in studies.items():
            self._study(message, study, classes)
        self._write(message)

    def send_outcomes(self, ae_title: str):
        """The sender's hook (SendOptions.audit): one message per batch and result (sent, refused, retry),
        read from the objects' headers before they leave pending/."""

        def hook(destination, outcomes) -> None:
            try:
                record(destination, outcomes)
            except Exception as exc:  # never let the audit stop a sender thread
                self.failures, self.last_error = self.failures + 1, f"{type(exc).__name__}: {exc}"

        def record(destination, outcomes) -> None:
            groups: dict[str, dict[str, dict[str, list[str]]]] = {}
            reasons: dict[str, str] = {}
            for o in outcomes:
                study, sop_class = _header(o.path)
                groups.setdefault(o.result, {}).setdefault(study, {}).setdefault(sop_class, []).append(o.path.stem)
                reasons.setdefault(o.result, o.detail)
            if "sent" in groups:
                self.sent(destination, ae_title, groups["sent"])
            if "failed" in groups:
                self.sent(destination, ae_title, groups["failed"], SERIOUS, f"refused for good: {reasons['failed']}")
            if "retry" in groups:
                self.sent(destination, ae_title, groups["retry"], MINOR,
                          f"not delivered, will retry: {reasons['retry']}")

        return hook

    def commit_outcomes(self, ae_title: str):
        """The commitment hook (SendOptions.commit_audit): one message for the objects a PACS committed
        (outcome 0) and one per reason it did not (8), read from the objects before they leave awaiting/."""

        def hook(destination, committed: list[Path], failed: dict[Path, str]) -> None:
            try:
                record(destination, committed, failed)
            except Exception as exc:  # never let the audit stop a sender thread
                self.failures, self.last_error = self.failures + 1, f"{type(exc).__name__}: {exc}"

        def studies(paths: list[Path]) -> dict[str, dict[str, list[str]]]:
            groups: dict[str, dict[str, list[str]]] = {}
            for path in paths:
                study, sop_class = _header(path)
                groups.setdefault(study, {}).setdefault(sop_class, []).append(path.stem)
            return groups

        def record(destination, committed: list[Path], failed: dict[Path, str]) -> None:
            if committed:  # the PACS took responsibility for these
                self.sent(destination, ae_title, studies(committed), event_type=COMMITMENT)
            by_reason: dict[str, list[Path]] = {}
            for path, why in failed.items():
                by_reason.setdefault(why, []).append(path)
            for why, paths in by_reason.items():
                self.sent(destination, ae_title, studies(paths), SERIOUS, f"not committed: {why}", COMMITMENT)

        return hook

    def result(self, record: dict, ae_title: str) -> None:
        """A classification (status ok), or a refusal (out_of_scope, error) with its reason code."""
        status = record.get("status")
        dicom = record.get("dicom") or {}
        ok = status == "ok"
        message, event = self._message(INSTANCES_ACCESSED, "R", SUCCESS if ok else MINOR,
                                       CLASSIFICATION if ok else REFUSAL)
        if not ok:
            refusal = record.get("gate") or record.get("error") or {}
            stage = f" at the {refusal['stage']} check" if refusal.get("stage") else ""
            ET.SubElement(event, "EventOutcomeDescription").text = f"{status}: {refusal.get('code', 'unknown')}{stage}"
        self._us(message, ae_title, ROLE_APPLICATION, requestor=True)
        if dicom.get("StudyInstanceUID"):
            sop = dicom.get("SOPInstanceUID")
            self._study(message, dicom["StudyInstanceUID"],
                        {dicom.get("SOPClassUID", ""): [sop] if sop else []})
        self._write(message)

    def rejected(self, calling_ae: str | None, ip: str, ae_title: str, reason: str) -> None:
        """An association refused: unknown AE title, address not allowed, TLS failed."""
        message, event = self._message(SECURITY_ALERT, "E", MINOR, NODE_AUTHENTICATION)
        ET.SubElement(event, "EventOutcomeDescription").text = _one_line(f"association refused: {reason}")
        self._peer(message, calling_ae or "unknown", ip, None, requestor=True)
        self._us(message, ae_title, ROLE_APPLICATION, requestor=False)
        self._write(message)

    # -- building ---------------------------------------------------------------------------
    def _message(self, event_id, action: str, outcome: str, event_type=None) -> tuple[ET.Element, ET.Element]:
        message = ET.Element("AuditMessage")
        event = ET.SubElement(message, "EventIdentification", {
            "EventActionCode": action, "EventDateTime": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "EventOutcomeIndicator": outcome})
        _coded(event, "EventID", event_id)
        if event_type is not None:
            _coded(event, "EventTypeCode", event_type)
        return message, event

    def _us(self, message: ET.Element, ae_title: str, role, requestor: bool) -> None:
        us = ET.SubElement(message, "ActiveParticipant", {
            "UserID": ae_title, "AlternativeUserID": str(os.getpid()), "UserIsRequestor": _bool(requestor),
            "NetworkAccessPointID": self.host, "NetworkAccessPointTypeCode": "1"})
        _coded(us, "RoleIDCode", role)

    @staticmethod
    def _peer(message: ET.Element, ae_title: str, host: str, role, requestor: bool) -> None:
        peer = ET.SubElement(message, "ActiveParticipant", {
            "UserID": ae_title, "UserIsRequestor": _bool(requestor), "NetworkAccessPointID": host,
            "NetworkAccessPointTypeCode": "2" if _is_ip(host) else "1"})
        if role is not None:
            _coded(peer, "RoleIDCode", role)

    @staticmethod
    def _study(message: ET.Element, study: str, classes: dict[str, list[str]]) -> None:
        obj = ET.SubElement(message, "ParticipantObjectIdentification", {
            "ParticipantObjectID": study, "ParticipantObjectTypeCode": "2", "ParticipantObjectTypeCodeRole": "3"})
        _coded(obj, "ParticipantObjectIDTypeCode", STUDY_UID)
        ET.SubElement(obj, "ParticipantObjectName").text = study  # the schema asks for a name: the UID, no patient
        description = ET.SubElement(obj, "ParticipantObjectDescription")
        for sop_class, instances in classes.items():
            element = ET.SubElement(description, "SOPClass", {"NumberOfInstances": str(len(instances)),
                                                              **({"UID": sop_class} if sop_class else {})})
            for uid in instances:
                ET.SubElement(element, "Instance", {"UID": uid})

    def _write(self, message: ET.Element) -> None:
        source = ET.SubElement(message, "AuditSourceIdentification", {"AuditSourceID": self.source_id})
        # AuditSourceIdentification comes after the participants, before the objects (the schema's order)
        objects = message.findall("ParticipantObjectIdentification")
        for obj in objects:
            message.remove(obj)
            message.append(obj)
        ET.SubElement(source, "AuditSourceTypeCode", {"csd-code": "4"})  # application server process
        line = ET.tostring(message, encoding="unicode")
        with self._lock:
            if self._file.closed:
                return
            try:
                self._file.write(line + "\n")
                self._file.flush()
            except OSError as exc:  # a full disk: counted and shown by the caller, never raised into a sender
                self.failures, self.last_error = self.failures + 1, f"{exc.strerror or exc}"
            if self.forward is not None:
                self.forward(line)


def audited_say(say, audit: AuditLog, ae_title: str):
    """The listener's `say`, plus a Security Alert for each association it refuses."""

    def wrapped(message: str, **fields) -> None:
        say(message, **fields)
        if fields.get("event") == "association" and fields.get("outcome") == "refused" and \
                fields.get("reason") != "instance_too_large":  # that one was accepted, then aborted for size
            audit.rejected(fields.get("calling_ae"), fields.get("ip") or "unknown", ae_title,
                           str(fields.get("reason") or "unknown"))

    return wrapped


def _header(path: Path) -> tuple[str, str]:
    """(Study Instance UID, SOP Class UID) of an object in the outbox; "unknown" for one that cannot be read."""
    try:
        from pydicom import dcmread

        ds = dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SOPClassUID"])
        return str(ds.get("StudyInstanceUID") or "unknown"), str(ds.get("SOPClassUID") or "")
    except Exception:  # a damaged object is audited by its SOP Instance UID (its file name) alone
        return "unknown", ""


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_DESCRIPTION]


class AuditSink:
    """`watch --audit-log`'s result sink: a message per classification or refusal, and Application Stop
    when the watcher stops (it closes after the send sink, so the last sends are in the trail)."""

    def __init__(self, audit: AuditLog, ae_title: str):
        self.audit, self.ae_title = audit, ae_title

    def accept(self, record: dict, item, source) -> None:
        self.audit.result(record, self.ae_title)

    def close(self) -> None:
        self.audit.application(False, self.ae_title)
        self.audit.close()
