"""`OUT/status.json`, the watcher's heartbeat, as its readers (the CLI, the status page) see it.

One place decides when a heartbeat is stale, so `edgecxr status` and the page never disagree.
Imports nothing of the loop or the engines: readers run beside a watcher, not inside its loop.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

STATUS = "status.json"
# The idle loop rewrites status.json at least every --rescan-seconds (10 s by default);
# three missed beats mean the loop is stopped or hung.
STALE_AFTER_S = 30.0


def read_status(out: Path) -> dict | None:
    """The last heartbeat, or None when no watcher has written one (or it is being replaced)."""
    try:
        return json.loads((out / STATUS).read_text())
    except (OSError, ValueError):
        return None


def heartbeat_age(status: dict, now: float | None = None) -> float:
    """Seconds since the watcher last wrote `status`."""
    updated = datetime.fromisoformat(status["updated"]).timestamp()
    return max(0.0, (time.time() if now is None else now) - updated)


def is_stale(status: dict, age: float) -> bool:
    """A watcher that says it runs but has not written for STALE_AFTER_S is stopped or hung."""
    return status.get("state") == "running" and age > STALE_AFTER_S
