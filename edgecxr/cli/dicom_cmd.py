"""`edgecxr dicom-listen`: receive images by DICOM C-STORE into the folder `edgecxr watch` classifies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecxr.cli.options import LogFormatOpt
from edgecxr.cli.send_opts import AuditLogOpt, AuditSyslogCaOpt, AuditSyslogOpt


def dicom_listen(
    inbox: Annotated[Path, typer.Option(help="Folder to write received instances to, as INBOX/<StudyInstanceUID>/<SOPInstanceUID>.dcm; watch it with `edgecxr watch INBOX` (subfolders are read by default).")],
    port: Annotated[int, typer.Option(help="TCP port (0: any free port, printed at start).")] = 11112,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface; :: for IPv6).")] = "0.0.0.0",
    ae_title: Annotated[str, typer.Option(help="This node's AE title; associations called to another title are refused.")] = "EDGECXR",
    allow_ae: Annotated[str, typer.Option(help="Calling AE titles allowed, comma-separated (this or --allow-any-ae is required).")] = "",
    allow_any_ae: Annotated[bool, typer.Option("--allow-any-ae", help="Accept any calling AE title (instead of --allow-ae).")] = False,
    allow_ip: Annotated[str, typer.Option(help="Source addresses or CIDR networks allowed, comma-separated (default: any).")] = "",
    max_associations: Annotated[int, typer.Option(help="Simultaneous associations; more are refused (local limit exceeded).")] = 8,
    min_free_mb: Annotated[float, typer.Option(help="Answer 'out of resources' (A700) when the inbox's disk has less free space.")] = 500.0,
    max_instance_mb: Annotated[float, typer.Option(help="Abort an association sending a larger instance (it is held in memory until complete).")] = 512.0,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS: this node's certificate (PEM); with --tls-key.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS: the certificate's private key (PEM, unencrypted).")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="Mutual TLS: only clients with a certificate signed by this CA (PEM) may connect.")] = None,
    audit_log: AuditLogOpt = None,
    audit_syslog: AuditSyslogOpt = None,
    audit_syslog_ca: AuditSyslogCaOpt = None,
    log_format: LogFormatOpt = "text",
):
    """Receive images from the scanner or PACS by DICOM C-STORE (Storage SCP) into a watched folder."""
    import signal
    import threading

    from edgecxr.cli.console import comma_list, err, logger
    from edgecxr.cli.send_opts import open_audit
    from edgecxr.dicomnet.access import AccessPolicy, check_ae_title, require_ae_choice, tls_context
    from edgecxr.dicomnet.audit import audited_say
    from edgecxr.dicomnet.listener import Listener, ListenOptions

    require_ae_choice(comma_list(allow_ae), allow_any_ae)
    say = logger(err, log_format)
    from edgecxr.core.warning_log import set_default_log

    set_default_log(lambda line: say(line, event="warning"))  # pydicom's warnings quote the values they reject
    ae_title = check_ae_title(ae_title, "--ae-title")
    audit = open_audit(audit_log, ae_title, audit_syslog, audit_syslog_ca)
    if audit is not None:
        say = audited_say(say, audit, ae_title)
    options = ListenOptions(
        inbox=inbox, host=host, port=port, ae_title=ae_title, audit=audit,
        policy=AccessPolicy.parse(comma_list(allow_ae), comma_list(allow_ip)), max_associations=max_associations,
        min_free_mb=min_free_mb, max_instance_mb=max_instance_mb, ssl_context=tls_context(tls_cert, tls_key, tls_ca))
    listener = Listener(options, say)
    stop = threading.Event()

    def on_signal(signum, _frame):
        say(f"signal {signal.Signals(signum).name}: finishing associations in flight", event="signal")
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        listener.start()
        stop.wait()
    finally:
        listener.stop()
        if audit is not None:
            audit.application(False, ae_title)
            audit.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    totals = listener.log.totals
    say(f"stopped: {totals['instances']} instance(s) received in {totals['released'] + totals['aborted']} "
        f"association(s), {totals['refused']} refused", event="stopped", instances=totals["instances"],
        refused=totals["refused"])
