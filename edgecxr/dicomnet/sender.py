"""C-STORE of built objects to one destination, and the thread that retries until the PACS takes them.

One association carries a batch. A destination that cannot be reached (refused, rejected,
aborted, timed out, out of resources) is retried with exponential backoff, per destination,
so one PACS being down never holds back another. A PACS that answers with a failure meant
for the object itself (it does not match its SOP class, cannot be understood, the class is
not supported, not authorized) will not change its mind: that object moves to failed/.

A PACS that answers "try again" (out of resources, processing failure, a status it does not
document) about one object puts that object, not the destination, on its own backoff, so the
next batch carries newer objects. Give-up rules end the retrying: after `max_attempts` such
answers, or once an object is older than `max_age_s` (even while the PACS is unreachable), it
moves to failed/ with the last reason; `edgecxr outbox retry` queues it again.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgecxr.core.optional import require
from edgecxr.core.provenance import utc_now
from edgecxr.dicomnet.destination import Destination, WebDestination
from edgecxr.dicomnet.identity import new_ae
from edgecxr.dicomnet.outbox import DestinationBox
from edgecxr.dicomnet.reach import tls_args, why_unreachable
from edgecxr.dicomnet.supervise import Supervisor

if TYPE_CHECKING:
    from edgecxr.dicomnet.commit_outbox import CommitOptions

SENT, FAILED, RETRY = "sent", "failed", "retry"
PERMANENT = (0x0117, 0x0122, 0x0124)
BATCH = 32


@dataclass
class Outcome:
    path: Path
    result: str  # sent | failed | retry
    detail: str
    answered: bool = False  # the PACS gave a status about this very object (not a lost connection)


@dataclass
class SendOptions:
    calling_ae_title: str = "EDGECXR"
    timeout_s: float = 30.0
    first_retry_s: float = 2.0
    max_retry_s: float = 300.0
    tls: ssl.SSLContext | None = None  # send_tls.client_context: TLS to every destination
    audit: Callable[[Destination, list[Outcome]], None] | None = None  # AuditLog.send_outcomes
    commit_audit: Callable | None = None  # AuditLog.commit_outcomes: the PACS's commitment answers
    max_attempts: int = 20  # "try again" answers about one object before it moves to failed/
    max_age_s: float = 7 * 86400.0  # an object still not delivered after this long moves to failed/
    commit: CommitOptions | None = None  # --send-commit: delivered means committed (commit_outbox.py)


def classify_status(status: int) -> str:
    """C-STORE status (PS3.4 B.2.3) to sent / failed (for good) / retry."""
    if status == 0x0000 or status in (0xB000, 0xB006, 0xB007):  # success, or stored with a warning
        return SENT
    if status in PERMANENT or (status & 0xFF00) == 0xA900 or (status & 0xF000) == 0xC000:
        return FAILED
    return RETRY  # 0xA7xx out of resources, 0x0110 processing failure, anything unknown


def store(destination: Destination, files: list[Path], options: SendOptions) -> list[Outcome]:
    """Send `files` over one association; one Outcome per file, in order."""
    if isinstance(destination, WebDestination):  # DICOMweb: STOW-RS, same outcomes, same outbox
        from edgecxr.dicomnet import stow

        return stow.store(destination, files, options)
    require("pynetdicom", "sending results to a PACS")
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    classes, unreadable = {}, []
    for f in files:
        try:
            classes[f] = str(dcmread(f, stop_before_pixels=True, specific_tags=["SOPClassUID"]).SOPClassUID)
        except Exception as exc:  # a damaged object in the outbox: set aside, never retried forever
            unreadable.append(Outcome(f, FAILED, f"unreadable object in the outbox: {type(exc).__name__}: {exc}"))
    files = list(classes)
    if not files:
        return unreadable
    ae = new_ae(options.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = options.timeout_s
    ae.connection_timeout = min(options.timeout_s, 10.0)
    for uid in sorted(set(classes.values())):
        ae.add_requested_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title,
                         tls_args=tls_args(destination, options.tls))
    if not assoc.is_established:
        why = "association rejected" if assoc.is_rejected else \
            f"no association ({why_unreachable(destination, options.tls, min(options.timeout_s, 10.0))})"
        return unreadable + [Outcome(f, RETRY, f"{destination}: {why}") for f in files]
    outcomes = []
    try:
        for f in files:
            outcomes.append(_store_one(assoc, f, destination))
            if not assoc.is_established:  # aborted mid-batch: the rest goes next time
                outcomes += [Outcome(g, RETRY, f"{destination}: association lost") for g in files[len(outcomes):]]
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return unreadable + outcomes


def _store_one(assoc, path: Path, destination: Destination) -> Outcome:
    try:
        status = assoc.send_c_store(path)
    except (ValueError, RuntimeError) as exc:  # no accepted presentation context for this SOP class
        return Outcome(path, FAILED, f"{destination} does not accept this object: {exc}")
    code = getattr(status, "Status", None)
    if code is None:
        return Outcome(path, RETRY, f"{destination}: no C-STORE response (timeout or abort)")
    result = classify_status(int(code))
    return Outcome(path, result, f"{destination}: C-STORE status 0x{int(code):04X}", answered=True)


class SenderThread(threading.Thread):
    """Drains one destination's pending folder; woken when the builder adds objects. Its loop runs
    under a Supervisor: an error (a full disk while writing sent.jsonl) restarts it, visibly."""

    def __init__(self, box: DestinationBox, options: SendOptions, log: Callable[[str], None]):
        super().__init__(name=f"send-{box.destination}", daemon=True)
        self.box, self.options, self.log = box, options, log
        self.wake, self.stop = threading.Event(), threading.Event()
        self.delay = 0.0
        self.failing = False  # the last attempt could not deliver: close() need not wait for it
        # Storage commitment is a DIMSE service: a DICOMweb (STOW-RS) destination, a subclass, delivers on store
        self.commit = options.commit if type(box.destination) is Destination else None
        self.supervisor = Supervisor(f"sender to {box.destination}", self.stop, log)

    def run(self) -> None:
        self.supervisor.run(self._loop)

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.wake.clear()
            files = self.box.due()
            committing = self.commit is not None and bool(self.box.awaiting())
            if not files and not committing:
                self.failing = False
                following = self.box.next_due()
                self.wake.wait(5.0 if following is None else min(5.0, max(following - time.time(), 0.05)))
                continue
            if files:
                try:
                    outcomes = store(self.box.destination, files[:BATCH], self.options)
                except Exception as exc:  # a library error: the batch waits, the destination backs off
                    outcomes = [Outcome(f, RETRY, f"{type(exc).__name__}: {exc}") for f in files[:BATCH]]
                if self._settle(outcomes):
                    self.stop.wait(self.delay)
                    continue
            if self.commit is not None and self._commit():
                self.stop.wait(self.delay)

    def _commit(self) -> bool:
        """Ask the PACS to commit what it stored; True when it could not be asked (back off)."""
        from edgecxr.dicomnet.commit_outbox import settle_commitments

        if self.commit is None:
            return False
        down = settle_commitments(self.box, self.commit, calling_ae=self.options.calling_ae_title,
                                  timeout_s=self.options.timeout_s, tls=self.options.tls,
                                  max_age_s=self.options.max_age_s, log=self.log, audit=self.options.commit_audit)
        if down is not None:
            return self._back_off(down)
        self.failing, self.delay = False, 0.0
        return False

    def _settle(self, outcomes: list[Outcome]) -> bool:
        """Record each outcome; True when the destination should be left alone for a while."""
        if self.options.audit is not None:  # before the files leave pending/: the audit reads their headers
            self.options.audit(self.box.destination, outcomes)
        sent = 0
        for o in outcomes:
            if o.result == RETRY:
                o = self._give_up_or_wait(o)
            if o.result == SENT and self.commit is not None:  # delivered once committed
                self.box.mark_stored(o.path, {"status": o.detail.rsplit(" ", 1)[-1]})
            elif o.result == SENT:
                self.box.mark_sent(o.path, {"status": o.detail.rsplit(" ", 1)[-1]})
                sent += 1
            elif o.result == FAILED:
                self.box.mark_failed(o.path, o.detail)
                self.log(f"{self.box.destination} refused {o.path.name} for good: {o.detail}")
        if sent:
            self.box.write_state(last_sent=utc_now(), last_error=None, next_attempt=None)
        down = [o for o in outcomes if o.result == RETRY and not o.answered]
        if not down:
            if self.failing:
                self.log(f"{self.box.destination} reachable again")
            self.failing, self.delay = False, 0.0
            return False
        return self._back_off(down[0].detail)

    def _back_off(self, detail: str) -> bool:
        """The destination could not be reached: wait longer each time, say so once, note it for status."""
        self.delay = min(max(self.delay * 2, self.options.first_retry_s), self.options.max_retry_s)
        if not self.failing:
            self.log(f"cannot deliver to {self.box.destination}: {detail}; retrying with backoff "
                     f"(up to {self.options.max_retry_s:.0f} s), results stay in the outbox")
        self.failing = True
        self.box.write_state(last_error=detail, last_attempt=utc_now(), next_attempt=_iso_in(self.delay))
        return True

    def _give_up_or_wait(self, o: Outcome) -> Outcome:
        """A "try again": the object's own backoff, or failed/ when a give-up rule says so."""
        age = self.box.age_of(o.path)
        attempts = self.box.attempts_of(o.path) + int(o.answered)
        if age is not None and age >= self.options.max_age_s:
            return Outcome(o.path, FAILED, f"gave up: not delivered within {self.options.max_age_s / 3600:g} h "
                                           f"({attempts} refusal(s)); last: {o.detail}")
        if not o.answered:
            return o  # the destination is down: it backs off as a whole
        if attempts >= self.options.max_attempts:
            return Outcome(o.path, FAILED, f"gave up after {attempts} \"try again\" answers; last: {o.detail}")
        wait = min(self.options.first_retry_s * 2 ** (attempts - 1), self.options.max_retry_s)
        self.box.note_retry(o.path, o.detail, wait)
        return o


def _iso_in(seconds: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(time.time() + seconds, timezone.utc).replace(microsecond=0).isoformat()
