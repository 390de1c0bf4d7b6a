"""Storage Commitment (Push Model) SCU: ask a PACS to take responsibility for objects it received, and
hear its answer.

`request()` sends the N-ACTION (Action Type 1, Request Storage Commitment) with a fresh Transaction
UID and the objects' SOP Class/Instance UIDs. The PACS answers later by N-EVENT-REPORT: on the same
association when it is still open, or, as most PACS do (Orthanc among them), on an association it
opens to us, so `CommitmentReceiver` listens for it (the PACS must know our AE title, host and
port). `commit()` does both and waits, bounded, for the answer: each object ends committed, failed
with the PACS's reason, or unknown when the PACS never answers (`error` says so).

`commit_outbox.py` wires it into the outbox (`watch --send-commit`): there an object counts as
delivered only once committed.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field

from edgecxr.core.errors import EdgecxrError
from edgecxr.dicomnet.destination import Destination
from edgecxr.dicomnet.identity import UID_ROOT, new_ae
from edgecxr.dicomnet.reach import tls_args, why_unreachable

PUSH_MODEL = "1.2.840.10008.1.20.1"
PUSH_MODEL_INSTANCE = "1.2.840.10008.1.20.1.1"  # the well-known SOP instance the N-ACTION addresses
REQUEST_COMMITMENT = 1  # Action Type ID
UNCLAIMED = 256  # results kept for nobody waiting (late, or for a transaction of an earlier run); a waiter claims
#                  its own within moments, and at most one waits per destination
FAILURE_REASONS = {  # PS3.3 C.14.1.1 Failure Reason
    0x0110: "processing failure", 0x0112: "no such object instance", 0x0213: "resource limitation",
    0x0122: "referenced SOP class not supported", 0x0119: "class / instance conflict",
    0x0131: "duplicate transaction UID",
}


@dataclass
class CommitResult:
    transaction_uid: str
    committed: list[str] = field(default_factory=list)  # SOP Instance UIDs the PACS took responsibility for
    failed: dict[str, str] = field(default_factory=dict)  # SOP Instance UID -> the PACS's reason, in words
    error: str | None = None  # set when nothing is known: request refused, or no answer in time
    refused: bool = False  # the PACS answered the N-ACTION with a failure status (not a lost connection)


class CommitmentRefused(EdgecxrError):
    """The PACS took the association but answered the commitment request with a failure status."""


class CommitmentReceiver:
    """An SCP for the N-EVENT-REPORTs that carry commitment results; one per node, any number of requests."""

    def __init__(self, ae_title: str, host: str = "0.0.0.0", port: int = 0, context: ssl.SSLContext | None = None):
        from pynetdicom import evt

        self.ae = new_ae(ae_title)
        self.ae.add_supported_context(PUSH_MODEL, scu_role=False, scp_role=True)  # the PACS reports as SCP
        self._results: dict[str, CommitResult] = {}
        self._done = threading.Condition()
        self._stopped = False
        try:
            self.server = self.ae.start_server((host, port), block=False, ssl_context=context,
                                               evt_handlers=[(evt.EVT_N_EVENT_REPORT, self.on_report)])
        except OSError as exc:
            raise EdgecxrError(f"cannot listen for storage commitment results on {host}:{port} "
                               f"({exc.strerror or exc})", fix="choose a free port for the commitment results") from exc
        self.port = self.server.server_address[1]

    def on_report(self, event) -> tuple[int, None]:
        """N-EVENT-REPORT: Event Type 1 (all committed) or 2 (some failed); answered with success."""
        info = event.event_information
        uid = str(info.get("TransactionUID", ""))
        result = CommitResult(uid)
        for item in info.get("ReferencedSOPSequence", []):
            result.committed.append(str(item.ReferencedSOPInstanceUID))
        for item in info.get("FailedSOPSequence", []):
            code = int(item.get("FailureReason", 0x0110))
            result.failed[str(item.ReferencedSOPInstanceUID)] = (
                f"PACS did not commit: {FAILURE_REASONS.get(code, 'failure')} (0x{code:04X})")
        with self._done:
            self._results[uid] = result
            while len(self._results) > UNCLAIMED:  # late results of requests given up on: the oldest go
                del self._results[next(iter(self._results))]
            self._done.notify_all()
        return 0x0000, None

    def wait(self, transaction_uid: str, timeout_s: float) -> CommitResult | None:
        with self._done:
            self._done.wait_for(lambda: transaction_uid in self._results, timeout=timeout_s)
            return self._results.pop(transaction_uid, None)

    def stop(self) -> None:
        """Stop listening; a second call (the sink's close, then its owner's) does nothing."""
        if not self._stopped:
            self._stopped = True
            self.server.shutdown()


def request(destination: Destination, objects: list[tuple[str, str]], receiver: CommitmentReceiver, *,
            calling_ae: str, timeout_s: float = 30.0, context: ssl.SSLContext | None = None) -> str:
    """N-ACTION for `objects` ((SOP Class UID, SOP Instance UID) pairs); the Transaction UID, or an
    EdgecxrError saying why the PACS did not take the request."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid
    from pynetdicom import evt

    ae = new_ae(calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = min(timeout_s, 10.0)
    ae.add_requested_context(PUSH_MODEL)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title,
                         tls_args=tls_args(destination, context),
                         evt_handlers=[(evt.EVT_N_EVENT_REPORT, receiver.on_report)])  # a same-association report
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else \
            f"no association ({why_unreachable(destination, context, min(timeout_s, 10.0))})"
        raise EdgecxrError(f"storage commitment request to {destination}: {why}",
                           fix="check the PACS knows our AE title and offers Storage Commitment Push Model")
    transaction = generate_uid(prefix=f"{UID_ROOT}.2.")  # arc 2 under edgecxr's root: commitment transactions
    ds = Dataset()
    ds.TransactionUID = transaction
    ds.ReferencedSOPSequence = []
    for sop_class, sop in objects:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop
        ds.ReferencedSOPSequence.append(item)
    try:
        status, _reply = assoc.send_n_action(ds, REQUEST_COMMITMENT, PUSH_MODEL, PUSH_MODEL_INSTANCE)
    finally:
        if assoc.is_established:
            assoc.release()
    code = getattr(status, "Status", None)
    if code is None or int(code) != 0:
        said = "no answer" if code is None else f"status 0x{int(code):04X}"
        raise (CommitmentRefused if code is not None else EdgecxrError)(
            f"{destination} did not accept the storage commitment request ({said})",
            fix="check the PACS supports Storage Commitment as SCP for our AE title")
    return transaction


def commit(destination: Destination, objects: list[tuple[str, str]], receiver: CommitmentReceiver, *,
           calling_ae: str, wait_s: float = 60.0, timeout_s: float = 30.0,
           context: ssl.SSLContext | None = None) -> CommitResult:
    """Request commitment and wait up to `wait_s` for the answer; never raises for a PACS's answer."""
    try:
        transaction = request(destination, objects, receiver, calling_ae=calling_ae, timeout_s=timeout_s,
                              context=context)
    except EdgecxrError as exc:
        return CommitResult("", error=str(exc), refused=isinstance(exc, CommitmentRefused))
    result = receiver.wait(transaction, wait_s)
    if result is None:
        return CommitResult(transaction, error=f"{destination} sent no storage commitment result within "
                                               f"{wait_s:g} s (transaction {transaction})")
    asked = {sop for _, sop in objects}
    for sop in asked - set(result.committed) - set(result.failed):  # the PACS left an object out: not committed
        result.failed[sop] = "PACS did not mention this object in its commitment result"
    return result
