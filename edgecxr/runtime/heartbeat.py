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
HEARTBEAT_SECONDS = 2.0  # the watcher rewrites status.json this often, idle or busy


def read_status(out: Path) -> dict | None:
    """The last heartbeat, or None when no watcher has written one (or it is not a heartbeat)."""
    try:
        data = json.loads((out / STATUS).read_text())
        datetime.fromisoformat(data["updated"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data


def heartbeat_age(status: dict, now: float | None = None) -> float:
    """Seconds since the watcher last wrote `status`."""
    updated = datetime.fromisoformat(status["updated"]).timestamp()
    return max(0.0, (time.time() if now is None else now) - updated)


def stale_after(status: dict) -> float:
    """Seconds without a heartbeat after which a running watcher counts as stopped or hung.

    Ten heartbeats, and never under 30 s: a chunk of large DICOMs on a slow engine may hold the
    loop for several seconds between two heartbeats.
    """
    return max(30.0, 10 * float(status.get("heartbeat_s", HEARTBEAT_SECONDS)))


def is_stale(status: dict, age: float) -> bool:
    """A watcher that says it runs but has missed its heartbeats is stopped or hung."""
    return status.get("state") == "running" and age > stale_after(status)
