"""Destination health: a C-ECHO to each PACS every `interval_s`, so its reachability is known before a
result waits on it. The latest answer per destination (reachable, when last OK, the last error in
words, round-trip ms) goes into status.json beside the sender's counts, and from there to /metrics.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

from edgecxr.core.provenance import utc_now
from edgecxr.dicomnet.destination import Destination, WebDestination
from edgecxr.dicomnet.reach import EchoResult, echo


@dataclass
class Health:
    reachable: bool | None = None  # None until the first check has answered
    last_ok: str | None = None
    last_checked: str | None = None
    last_error: str | None = None
    rtt_ms: float | None = None

    def as_dict(self) -> dict:
        return {"reachable": self.reachable, "last_ok": self.last_ok, "last_checked": self.last_checked,
                "last_error": self.last_error, "rtt_ms": self.rtt_ms}


class HealthMonitor(threading.Thread):
    """One thread for every destination: checks are short (bounded by `timeout_s`) and minutes apart."""

    def __init__(self, destinations: list[Destination], calling_ae: str, *, interval_s: float, timeout_s: float = 10.0,
                 context: ssl.SSLContext | None = None, log: Callable[[str], None] = print):
        super().__init__(name="pacs-echo", daemon=True)
        self.destinations, self.calling_ae, self.context, self.log = destinations, calling_ae, context, log
        self.interval_s, self.timeout_s = interval_s, min(timeout_s, interval_s)
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._health = {d: Health() for d in destinations}

    def run(self) -> None:
        while not self.stop.is_set():
            for destination in self.destinations:
                if self.stop.is_set():
                    return
                self.check(destination)
            self.stop.wait(self.interval_s)

    def check(self, destination: Destination) -> Health:
        try:
            if isinstance(destination, WebDestination):  # DICOMweb: an HTTP check in place of C-ECHO
                from edgecxr.dicomnet import stow

                result = stow.check(destination, self.timeout_s, self.context)
            else:
                result = echo(destination, self.calling_ae, self.timeout_s, self.context)
        except Exception as exc:  # a library error is a failed check, never the end of the monitor
            result = EchoResult(False, None, f"{type(exc).__name__}: {exc}")
        now = utc_now()
        with self._lock:
            before = self._health[destination]
            after = Health(reachable=result.ok, last_ok=now if result.ok else before.last_ok, last_checked=now,
                           last_error=result.error if not result.ok else before.last_error, rtt_ms=result.rtt_ms)
            self._health[destination] = after
        check = "its DICOMweb check" if isinstance(destination, WebDestination) else "C-ECHO"
        if before.reachable is not False and not result.ok:
            self.log(f"PACS {destination} does not answer {check}: {result.error}")
        elif before.reachable is False and result.ok:
            self.log(f"PACS {destination} answers {check} again ({result.rtt_ms} ms)")
        return after

    def snapshot(self, destination: Destination | str) -> dict | None:
        """The latest answer for a destination (or its AET@HOST:PORT text); None for one not monitored."""
        with self._lock:
            for known, health in self._health.items():
                if known == destination or str(known) == destination:
                    return health.as_dict()
        return None

    def close(self, wait_s: float = 2.0) -> None:
        self.stop.set()
        if self.is_alive():
            self.join(wait_s)


class WithHealth:
    """A result sink (the DICOM send sink) with the monitor's answer added to each destination's status
    row as "health"; the monitor stops when the sink closes."""

    def __init__(self, sink, monitor: HealthMonitor):
        self.sink, self.monitor = sink, monitor
        self.status_key = sink.status_key
        if not monitor.is_alive():
            monitor.start()

    def accept(self, record: dict, item, source) -> None:
        self.sink.accept(record, item, source)

    def close(self) -> None:
        self.monitor.close()
        self.sink.close()

    def status(self) -> dict:
        report = self.sink.status()
        for row in report.get("destinations") or []:
            row["health"] = self.monitor.snapshot(row.get("destination", ""))
        return report
