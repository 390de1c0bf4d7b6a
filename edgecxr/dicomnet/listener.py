"""`edgecxr dicom-listen`: a DICOM Storage SCP that writes what the scanner sends into the watched inbox.

It knows nothing of engines: it only makes each received instance a complete file in the
inbox (see inbox_store), and the folder watcher classifies it like any other file. Every
refusal is a status or an association reject the scanner can log, plus a line here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from edgecxr.core.errors import EdgecxrError
from edgecxr.core.optional import require
from edgecxr.dicomnet.access import AccessPolicy
from edgecxr.dicomnet.assoc_log import AssociationLog, Say
from edgecxr.dicomnet.audit import AuditLog
from edgecxr.dicomnet.contexts import CANDIDATE_SYNTAXES, add_contexts, decodable_syntaxes
from edgecxr.dicomnet.identity import new_ae, stamp
from edgecxr.dicomnet.inbox_store import MIB, InboxStore

CANNOT_DECODE = 0xC210


@dataclass
class ListenOptions:
    inbox: Path
    host: str = "0.0.0.0"
    port: int = 11112
    ae_title: str = "EDGECXR"
    policy: AccessPolicy = field(default_factory=AccessPolicy)
    max_associations: int = 8
    min_free_mb: float = 500.0
    max_instance_mb: float = 512.0  # an instance is held in memory until complete: bound it
    ssl_context: object | None = None  # ssl.SSLContext
    audit: AuditLog | None = None  # a DICOM audit message per stored instance


class Listener:
    def __init__(self, options: ListenOptions, say: Say):
        require("pynetdicom", "the DICOM listener")
        if not options.inbox.is_dir():
            raise EdgecxrError("inbox folder not found", path=options.inbox,
                               fix="create it, or give the folder `edgecxr watch` watches")
        if options.max_associations < 1:
            raise EdgecxrError("--max-associations must be at least 1", fix="use e.g. --max-associations 8")
        if options.max_instance_mb <= 0:
            raise EdgecxrError("--max-instance-mb must be positive", fix="use e.g. --max-instance-mb 512")
        self.options = options
        self.say = say
        self.store = InboxStore(options.inbox, options.min_free_mb)
        self.log = AssociationLog(say, tls=options.ssl_context is not None)
        self.syntaxes = decodable_syntaxes()
        self.server = None

    def start(self) -> int:
        """Bind and serve in the background; the port actually bound (for --port 0)."""
        from pynetdicom import evt

        from edgecxr.dicomnet.guarded_server import GuardedServer

        o = self.options
        stale = self.store.remove_stale_temporaries()
        if stale:
            self.say(f"removed {stale} partial file(s) left by a listener that stopped mid-write", event="cleanup",
                     removed=stale)
        ae = new_ae(o.ae_title)
        ae.maximum_associations = o.max_associations
        ae.require_calling_aet = list(o.policy.allowed_ae)
        ae.require_called_aet = True
        add_contexts(ae, self.syntaxes)
        handlers = [(evt.EVT_CONN_OPEN, self.log.on_open), (evt.EVT_ACCEPTED, self.log.on_accepted),
                    (evt.EVT_REJECTED, self.log.on_rejected), (evt.EVT_RELEASED, self.log.on_released),
                    (evt.EVT_ABORTED, self.log.on_aborted), (evt.EVT_CONN_CLOSE, self.log.on_close),
                    (evt.EVT_C_ECHO, self.log.on_echo), (evt.EVT_C_STORE, self._on_store),
                    (evt.EVT_DATA_RECV, self._on_data)]
        try:
            server = ae.make_server((o.host, o.port), ssl_context=o.ssl_context, evt_handlers=handlers,
                                    server_class=GuardedServer)
        except OSError as exc:
            raise EdgecxrError(f"cannot listen on {o.host}:{o.port} ({exc.strerror or exc})",
                               fix="choose a free --port (ports below 1024 need CAP_NET_BIND_SERVICE)") from exc
        server.policy, server.log = o.policy, self.log
        ae._servers.append(server)
        threading.Thread(target=server.serve_forever, name="dicom-listen", daemon=True).start()
        self.server = server
        port = server.server_address[1]
        names = ", ".join(CANDIDATE_SYNTAXES[s] for s in self.syntaxes)
        self.say(f"listening as {o.ae_title} on {o.host}:{port} ({'TLS' if o.ssl_context else 'no TLS'}) "
                 f"-> {o.inbox}; transfer syntaxes: {names}", event="listening", ae_title=o.ae_title, host=o.host,
                 port=port, tls=o.ssl_context is not None, inbox=str(o.inbox), transfer_syntaxes=self.syntaxes,
                 allow_ae=o.policy.allowed_ae or None,
                 allow_ip=[str(n) for n in o.policy.allowed_networks] or None)
        return port

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop accepting, let associations in flight finish for `grace_seconds`, abort the rest."""
        if self.server is None:
            return
        server, self.server = self.server, None
        active = server.active_associations
        server.shutdown()
        for assoc in active:
            assoc.join(grace_seconds / max(1, len(active)))
            if assoc.is_alive():
                assoc.abort()

    def _on_data(self, event) -> None:
        """Abort an association whose message in flight outgrows --max-instance-mb, before memory runs out."""
        stats = self.log.stats(event.assoc)
        stats.receiving += len(event.data)
        if stats.receiving > self.options.max_instance_mb * MIB and stats.reason != "instance_too_large":
            stats.outcome, stats.reason = "refused", "instance_too_large"
            stats.refused["instance_too_large"] += 1
            event.assoc.abort(block=False)

    def _on_store(self, event):
        """Write the instance as received (no decompression); success only once it is durable."""
        from pydicom.dataset import Dataset

        sop = str(event.request.AffectedSOPInstanceUID or "")
        try:
            header = event.dataset
            study = str(header.get("StudyInstanceUID", "") or "")
            same = str(header.get("SOPInstanceUID", "") or "") == sop
        except Exception:  # pydicom raises many types for a damaged data set
            self.log.stored(event.assoc, "cannot_decode", 0)
            return CANNOT_DECODE
        data = _part10(event)
        if not same:
            self.log.stored(event.assoc, "uid_mismatch", len(data))
            return _status(Dataset, 0xC000, "SOPInstanceUID differs from the request")
        result = self.store.store(study, sop, data)
        self.log.stored(event.assoc, result.outcome, len(data))
        if self.options.audit is not None and result.outcome == "stored":
            requestor = event.assoc.requestor
            self.options.audit.received(str(requestor.ae_title).strip(), str(requestor.address), self.options.ae_title,
                                        study, str(event.request.AffectedSOPClassUID or ""), sop)
        return _status(Dataset, result.status, result.comment) if result.comment else result.status


def _part10(event) -> bytes:
    """The instance as a DICOM file: preamble, file meta naming the sender's AE title and edgecxr as the
    writer, the data set as received."""
    from pynetdicom.dsutils import encode_file_meta

    meta = event.file_meta
    meta.SourceApplicationEntityTitle = str(event.assoc.requestor.ae_title).strip()
    stamp(meta)
    return b"".join((b"\0" * 128, b"DICM", encode_file_meta(meta), event.encoded_dataset(include_meta=False)))


def _status(dataset_class, status: int, comment: str):
    reply = dataset_class()
    reply.Status = status
    reply.ErrorComment = comment[:64]
    return reply
