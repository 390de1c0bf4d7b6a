"""Worker threads that cannot end silently: a loop that raises (a full disk, a library bug) is logged,
restarted after a growing pause, and given up on only after repeated quick deaths, visibly.

The builder and each sender run their loop through `Supervisor.run`; `status()` says, for the
heartbeat, whether the loop is running, how often it was restarted and why it last died
(the exception's type and message: paths and UIDs, never a header value).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

HEALTHY_S = 60.0  # a loop that ran this long before dying counts as a new failure, not a repeat


class Supervisor:
    def __init__(self, name: str, stop: threading.Event, log: Callable[[str], None], *,
                 max_quick_deaths: int = 10, first_pause_s: float = 1.0, max_pause_s: float = 60.0):
        self.name, self.stop, self.log = name, stop, log
        self.max_quick_deaths, self.first_pause_s, self.max_pause_s = max_quick_deaths, first_pause_s, max_pause_s
        self.restarts = 0
        self.running = False
        self.gave_up = False
        self.last_error: str | None = None

    def run(self, loop: Callable[[], None]) -> None:
        """Run `loop` until it returns (asked to stop) or dies too often in a row."""
        quick = 0
        while not self.stop.is_set():
            began = time.monotonic()
            self.running = True
            try:
                loop()
                return
            except Exception as exc:  # whatever ends the loop is reported, then the loop starts again
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                self.running = False
            quick = quick + 1 if time.monotonic() - began < HEALTHY_S else 1
            if quick > self.max_quick_deaths:
                self.gave_up = True
                self.log(f"{self.name} stopped for good after {quick} failures in a row: {self.last_error}; "
                         "results stay in the outbox; fix the cause (free disk space, folder permissions) "
                         "and restart the watcher")
                return
            pause = min(self.first_pause_s * 2 ** (quick - 1), self.max_pause_s)
            self.restarts += 1
            self.log(f"{self.name} failed: {self.last_error}; restarting in {pause:.0f} s "
                     f"(failure {quick} of at most {self.max_quick_deaths} in a row)")
            self.stop.wait(pause)

    def status(self) -> dict:
        return {"name": self.name, "running": self.running, "restarts": self.restarts, "gave_up": self.gave_up,
                "last_error": self.last_error}
