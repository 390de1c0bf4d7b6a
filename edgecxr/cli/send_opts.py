"""`watch --send-sr` extras: C-ECHO health checks of each PACS and TLS, as options and the sink they make.

Kept out of runtime_cmd (already long): watch takes these options and hands them here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from edgecxr.core.errors import EdgecxrError

ECHO_TIMEOUT_S = 10.0

SendEchoIntervalOpt = Annotated[float, typer.Option(
    help="Seconds between C-ECHO checks of each --send-sr PACS (reachable, round trip, last error: in status.json "
         "and /metrics); 0 turns them off.")]
AuditLogOpt = Annotated[Path | None, typer.Option(
    help="Append a DICOM audit message (PS3.15 A.5, as IHE ATNA uses) per event to this file, one XML message a "
         "line: start, stop, receipt, classification, refusal, send, commitment, failure, association refused.")]
AuditSyslogOpt = Annotated[str | None, typer.Option(
    metavar="[udp|tcp|tls://]HOST:PORT", help="With --audit-log: also send each audit message to this syslog "
    "collector (RFC 5424 over UDP, or octet-counted over TCP or TLS, as IHE ATNA audit repositories take them).")]
AuditSyslogCaOpt = Annotated[Path | None, typer.Option(
    help="With --audit-syslog tls://: the CA that signed the collector's certificate (default: the system's).")]
SendAllowHttpOpt = Annotated[bool, typer.Option(
    "--send-allow-http", help="Allow a plain http:// DICOMweb --send-sr to another machine (results, with patient ID "
                              "and name, travel unencrypted); without it only loopback may be plain http.")]
SendTlsCertOpt = Annotated[Path | None, typer.Option(
    help="TLS to the PACS: our client certificate (PEM), with --send-tls-key, for a PACS that asks for one.")]
SendTlsKeyOpt = Annotated[Path | None, typer.Option(
    help="TLS to the PACS: the client certificate's private key (PEM, unencrypted).")]
SendTlsCaOpt = Annotated[Path | None, typer.Option(
    help="TLS to the PACS: the CA certificate(s) (PEM) that signed the PACS certificate; turns TLS on for every "
         "--send-sr.")]

SendCommitOpt = Annotated[bool, typer.Option(
    "--send-commit", help="With --send-sr: a result counts as delivered only once the PACS commits it (DICOM Storage "
                          "Commitment, push model); until then it waits in OUT/outbox/<PACS>/awaiting/.")]
SendCommitListenOpt = Annotated[str, typer.Option(
    metavar="[HOST:]PORT", help="With --send-commit: where we listen for the PACS's commitment results "
                                "(N-EVENT-REPORT), under --send-ae-title; the PACS must know this AE title, "
                                "host and port. A bare port listens on every address.")]
SendCommitWaitOpt = Annotated[float, typer.Option(
    help="With --send-commit: seconds to wait for the PACS's commitment result; after 3 requests unanswered "
         "this long, the object moves to outbox failed/.")]

SendKeepOpt = Annotated[tuple[float, float], typer.Option(
    metavar="DAYS MB", help="Retention per PACS: OUT/outbox/<PACS>/sent.jsonl and failed/ keep records younger than "
                            "DAYS and at most MB each; older ones are removed (the last rotated sent lines stay in "
                            "sent.1.jsonl). Results already sent are still never sent again.")]


def commit_options(enabled: bool, listen: str, wait_s: float, ae_title: str, targets: list[str] | None):
    """The commitment listener and its limits for --send-commit, or None without it."""
    if not enabled:
        return None
    if not targets:
        raise EdgecxrError("--send-commit needs --send-sr AET@HOST:PORT", fix="name the PACS with --send-sr")
    if wait_s <= 0:
        raise EdgecxrError(f"--send-commit-wait {wait_s} is not positive", fix="give seconds, e.g. 60")
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise EdgecxrError(f"--send-commit-listen {listen!r}: the port is not a number from 1 to 65535",
                           fix="give [HOST:]PORT, e.g. 11113 or 10.0.0.7:11113")
    from edgecxr.dicomnet.commit_outbox import CommitOptions
    from edgecxr.dicomnet.commitment import CommitmentReceiver

    receiver = CommitmentReceiver(ae_title, host=host.strip("[]") or "0.0.0.0", port=int(port))
    return CommitOptions(receiver, wait_s=wait_s)


def with_health(sinks: list, interval_s: float, log: Callable[[str], None]) -> list:
    """The send sink with a C-ECHO monitor of its destinations (status rows get "health")."""
    if interval_s < 0:
        raise EdgecxrError(f"--send-echo-interval {interval_s} is negative", fix="give seconds, e.g. 60, or 0 for none")
    if not sinks or interval_s == 0:
        return sinks
    from edgecxr.dicomnet.health import HealthMonitor, WithHealth

    sink = sinks[0]
    options = sink.senders[0].options
    monitor = HealthMonitor([box.destination for box in sink.outbox.boxes], options.calling_ae_title,
                            interval_s=interval_s, timeout_s=min(ECHO_TIMEOUT_S, interval_s),
                            context=getattr(options, "tls", None), log=log)
    return [WithHealth(sink, monitor), *sinks[1:]]


def send_tls(targets: list[str] | None, cert: Path | None, key: Path | None, ca: Path | None):
    """The TLS context for every --send-sr destination, or None for plain DICOM."""
    from edgecxr.dicomnet.send_tls import client_context

    context = client_context(cert, key, ca)
    if context is not None and not targets:
        raise EdgecxrError("--send-tls-cert/--send-tls-key/--send-tls-ca need --send-sr AET@HOST:PORT",
                           fix="name the PACS with --send-sr, or leave out the TLS options")
    return context


def open_audit(path: Path | None, ae_title: str, syslog: str | None = None, syslog_ca: Path | None = None):
    """The audit trail, with its Application Start message written; None without --audit-log."""
    if path is None:
        if syslog is not None:
            raise EdgecxrError("--audit-syslog needs --audit-log PATH",
                               fix="give --audit-log too: the local file is the record, syslog a copy")
        return None
    import socket

    from edgecxr.dicomnet.audit import AuditLog
    from edgecxr.dicomnet.audit_syslog import open_forwarder

    forward = open_forwarder(syslog, syslog_ca) if syslog is not None else None
    audit = AuditLog(path, f"{ae_title}@{socket.gethostname()}", forward)
    audit.application(True, ae_title)
    return audit


def with_audit(sinks: list, audit, ae_title: str) -> list:
    """The sinks, then the audit trail's (last: it writes Application Stop once the others are done)."""
    if audit is None:
        return sinks
    from edgecxr.dicomnet.audit import AuditSink

    return [*sinks, AuditSink(audit, ae_title)]
