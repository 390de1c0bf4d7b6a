"""Storage commitment in the outbox (`watch --send-commit`): an object counts as delivered only once the
PACS has committed it.

After C-STORE success the sender moves the object to OUT/outbox/<dest>/awaiting/ (durable: it survives
a restart) and then asks for commitment of what waits there, a batch per N-ACTION, waiting up to
`wait_s` for the N-EVENT-REPORT, which our CommitmentReceiver takes on the association the PACS opens
to us (or on the request's own association). Then, per object:

- committed: a line in sent.jsonl with `committed_at` and the Transaction UID;
- refused by the PACS (a Failed SOP item, or the N-ACTION answered with a failure status): failed/,
  with the PACS's reason in words;
- no answer within `wait_s`: asked again next round; after `max_requests` unanswered requests,
  failed/ ("sent no storage commitment result ...");
- the PACS cannot be reached for the N-ACTION: the object stays awaiting and the destination backs
  off as for C-STORE (the give-up age, `--send-give-up`, still applies).

A re-request after a restart carries the same SOP Instance UIDs, so the PACS still holds one copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgecxr.core.provenance import utc_now
from edgecxr.dicomnet.commitment import CommitmentReceiver, commit
from edgecxr.dicomnet.outbox import DestinationBox

BATCH = 32  # objects per N-ACTION, as per C-STORE association


@dataclass
class CommitOptions:
    receiver: CommitmentReceiver  # one listening port for every destination's N-EVENT-REPORTs
    wait_s: float = 60.0  # how long one request waits for the PACS's result
    max_requests: int = 3  # unanswered requests about an object before it moves to failed/


def settle_commitments(box: DestinationBox, commit_options: CommitOptions, *, calling_ae: str, timeout_s: float,
                       tls, max_age_s: float, log: Callable[[str], None], audit=None) -> str | None:
    """One commitment round for the oldest awaiting objects. Returns why the PACS could not be asked
    (the destination should back off), or None."""
    files = box.awaiting()[:BATCH]
    if not files:
        return None
    objects, by_uid = [], {}
    for path in files:
        sop_class = _sop_class(path)
        if sop_class is None:
            box.mark_failed(path, "unreadable object in the outbox while awaiting storage commitment")
            continue
        objects.append((sop_class, path.stem))
        by_uid[path.stem] = path
    if not objects:
        return None
    result = commit(box.destination, objects, commit_options.receiver, calling_ae=calling_ae,
                    wait_s=commit_options.wait_s, timeout_s=timeout_s, context=tls)
    if audit is not None:  # before the files leave awaiting/: the audit reads their headers
        audit(box.destination, [by_uid[u] for u in result.committed if u in by_uid],
              {by_uid[u]: why for u, why in result.failed.items() if u in by_uid})
    for uid in result.committed:
        if uid in by_uid:
            info = box.awaiting_info(by_uid[uid])
            box.mark_sent(by_uid[uid], {"status": info.get("status"), "stored_at": info.get("stored_at"),
                                        "committed_at": utc_now(), "transaction_uid": result.transaction_uid})
    for uid, reason in result.failed.items():
        if uid in by_uid:
            box.mark_failed(by_uid[uid], f"{box.destination}: {reason}")
            log(f"{box.destination} did not commit {uid}: {reason}")
    if result.committed:
        box.write_state(last_sent=utc_now(), last_committed=utc_now(), last_error=None, next_attempt=None)
    if result.error is None:
        return None
    if result.refused:  # the PACS answered the request itself with a failure: it will not commit these
        for path in by_uid.values():
            box.mark_failed(path, result.error)
        log(f"{result.error}: {len(by_uid)} object(s) moved to failed/")
        return None
    if not result.transaction_uid:  # no association for the N-ACTION: the PACS is down
        return _too_old(box, list(by_uid.values()), max_age_s, result.error) or result.error
    for path in by_uid.values():  # asked, not answered in time
        if box.note_commit_request(path, result.error) >= commit_options.max_requests:
            box.mark_failed(path, f"not committed: {result.error}; asked {commit_options.max_requests} time(s), "
                                  "check the PACS sends storage commitment results to our AE title, host and port")
    log(f"{result.error}; the object(s) wait in awaiting/ and are asked for again "
        f"(at most {commit_options.max_requests} requests)")
    return None


def _too_old(box: DestinationBox, paths: list[Path], max_age_s: float, detail: str) -> str | None:
    for path in paths:
        age = box.age_of(path)
        if age is not None and age >= max_age_s:
            box.mark_failed(path, f"gave up: not committed within {max_age_s / 3600:g} h; last: {detail}")
    return None


def _sop_class(path: Path) -> str | None:
    from pydicom import dcmread

    try:
        return str(dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).SOPClassUID)
    except Exception:  # damaged on disk: set aside, never asked about forever
        return None
