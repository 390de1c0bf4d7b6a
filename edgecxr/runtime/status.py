"""`OUT/status.json` as the watcher writes it: its heartbeat, rewritten atomically every two seconds.

The heartbeat follows the clock, not the rescan interval, so `edgecxr status` can tell a
healthy idle watcher from a hung one whatever `--rescan-seconds` is. It also carries what an
operator must see without reading the log: an inbox that vanished or was unmounted, damaged
ledger lines set aside, the pid holding the results folder's lock.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from edgecxr import __version__
from edgecxr.provenance import utc_now
from edgecxr.runtime.heartbeat import HEARTBEAT_SECONDS

STATUS_SCHEMA = "edgecxr.status/1"


@dataclass
class Counters:
    processed: int = 0
    refused: int = 0
    last_error: str | None = None
    backlog: int = 0
    waiting: int = 0
    moved: int = 0
    inbox_error: str | None = None  # set while the inbox is missing, unreadable or unmounted
    damaged_ledger_lines: int = 0


def status_payload(state: str, counters: Counters, classifier, inbox, started: float,
                   heartbeat_s: float = HEARTBEAT_SECONDS) -> dict:
    return {
        "schema": STATUS_SCHEMA, "state": state, "pid": os.getpid(), "edgecxr": __version__,
        "updated": utc_now(), "heartbeat_s": heartbeat_s, "started": iso(started),
        "uptime_s": round(time.time() - started, 1), "inbox": str(inbox), **asdict(counters),
        "bundle": classifier.bundle.name, "backend": classifier.artifact.backend,
        "precision": classifier.artifact.precision, "reason": classifier.choice.reason,
        "decision": classifier.rule.describe(),
    }


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=0).isoformat()
