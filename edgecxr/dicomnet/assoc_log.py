"""One JSON-able log line per association: who called (AE title, address), what came, what was refused.

Only counts, sizes, statuses and reasons are logged, never an attribute of a received
instance, so the log holds no patient data. Connections refused before they became an
association (an address outside --allow-ip, a failed TLS handshake) get a line too.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

# A-ASSOCIATE-RJ (source, diagnostic) -> reason, as pynetdicom's acceptor sends them; a reply
# without them (None) is looked up too and falls back to "rejected".
REJECT_REASONS: dict[tuple[int | None, int | None], str] = {
    (1, 3): "calling_ae_not_allowed", (1, 7): "called_ae_unknown", (3, 2): "too_many_associations",
    (2, 1): "user_identity_refused"}

Say = Callable[..., None]  # say(message, event=..., **fields), as the CLI's logger


@dataclass
class AssocStats:
    ip: str
    port: int
    tls: bool
    started: float = field(default_factory=time.monotonic)
    calling_ae: str | None = None
    outcome: str = "closed"  # released | aborted | refused | closed (the connection ended otherwise)
    reason: str | None = None
    instances: int = 0  # stored and acknowledged, duplicates included
    duplicates: int = 0
    echoes: int = 0
    bytes: int = 0
    refused: Counter = field(default_factory=Counter)  # per-instance refusals by reason
    receiving: int = 0  # bytes received since the last request was answered: the message in flight


class AssociationLog:
    def __init__(self, say: Say, tls: bool):
        self.say = say
        self.tls = tls
        self._open: dict[int, AssocStats] = {}
        self._lock = threading.Lock()
        self.totals: Counter[str] = Counter()

    def stats(self, assoc) -> AssocStats:
        with self._lock:
            key = id(assoc)
            if key not in self._open:
                address = assoc.requestor.address or "?"
                self._open[key] = AssocStats(ip=str(address), port=int(assoc.requestor.port or 0), tls=self.tls)
            return self._open[key]

    # -- pynetdicom event handlers ---------------------------------------------------------------
    def on_open(self, event) -> None:
        self.stats(event.assoc)

    def on_accepted(self, event) -> None:
        self.stats(event.assoc).calling_ae = str(event.assoc.requestor.ae_title).strip()

    def on_rejected(self, event) -> None:
        stats = self.stats(event.assoc)
        stats.calling_ae = str(event.assoc.requestor.ae_title or "").strip() or None
        reply = event.assoc.acceptor.primitive
        stats.outcome = "refused"
        stats.reason = REJECT_REASONS.get((getattr(reply, "result_source", None), getattr(reply, "diagnostic", None)),
                                          "rejected")

    def on_echo(self, event) -> int:
        stats = self.stats(event.assoc)
        stats.echoes += 1
        stats.receiving = 0
        return 0x0000

    def on_released(self, event) -> None:
        self.stats(event.assoc).outcome = "released"

    def on_aborted(self, event) -> None:
        stats = self.stats(event.assoc)
        if stats.reason is None:  # not our own abort of an instance over the size limit
            stats.outcome = "aborted"

    def on_close(self, event) -> None:
        with self._lock:
            stats = self._open.pop(id(event.assoc), None)
        if stats is not None:
            self._emit(stats)

    # -- what the store handler and the server report ---------------------------------------------
    def stored(self, assoc, outcome: str, size: int) -> None:
        stats = self.stats(assoc)
        stats.receiving = 0
        if outcome in ("stored", "duplicate"):
            stats.instances += 1
            stats.bytes += size
            stats.duplicates += outcome == "duplicate"
        else:
            stats.refused[outcome] += 1

    def refused_connection(self, ip: str, port: int, reason: str, calling_ae: str | None = None) -> None:
        self._emit(AssocStats(ip=ip, port=port, tls=self.tls, calling_ae=calling_ae, outcome="refused", reason=reason))

    def _emit(self, s: AssocStats) -> None:
        self.totals[s.outcome] += 1
        self.totals["instances"] += s.instances
        who = f"{s.calling_ae or '?'} at {s.ip}"
        if s.outcome == "refused" and s.reason == "instance_too_large":
            message = f"aborted {who}: an instance over the size limit ({s.instances} stored before it)"
        elif s.outcome == "refused":
            message = f"refused {who}: {s.reason}"
        else:
            refused = sum(s.refused.values())
            message = (f"association {s.outcome}: {who}, {s.instances} instance(s), {s.bytes} bytes"
                       + (f", {s.echoes} echo(es)" if s.echoes else "")
                       + (f", {s.duplicates} already received" if s.duplicates else "")
                       + (f", {refused} refused ({', '.join(sorted(s.refused))})" if refused else ""))
        self.say(message, event="association", calling_ae=s.calling_ae, ip=s.ip, port=s.port, tls=s.tls,
                 outcome=s.outcome, reason=s.reason, instances=s.instances, duplicates=s.duplicates,
                 echoes=s.echoes, bytes=s.bytes, refused=dict(s.refused) or None,
                 seconds=round(time.monotonic() - s.started, 3))
