"""`OUT/status.json` as the watcher writes it: its heartbeat, rewritten atomically every two seconds.

The heartbeat follows the clock, not the rescan interval, so `edgecxr status` can tell a
healthy idle watcher from a hung one whatever `--rescan-seconds` is. It also carries what an
operator must see without reading the log: an inbox that vanished or was unmounted, damaged
ledger lines set aside, the pid holding the results folder's lock. `/metrics` (edgecxr/web/metrics.py)
reads the same file, so the counters below are what Prometheus sees: refusals by reason, the
intended-use gate's refusals by code, and a histogram of per-image inference time.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from edgecxr import __version__
from edgecxr.core.provenance import utc_now
from edgecxr.core.results import ERROR, HEARTBEAT_SECONDS, OK, OUT_OF_SCOPE, STATUS_SCHEMA

# Upper bounds (ms) of the inference-time histogram: from a GPU's few ms to a slow CPU's seconds
LATENCY_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def new_histogram() -> dict:
    """`counts[i]` images took at most `le_ms[i]` (and more than the bound before); the last, more than all."""
    return {"le_ms": list(LATENCY_BOUNDS_MS), "counts": [0] * (len(LATENCY_BOUNDS_MS) + 1), "sum_ms": 0.0,
            "count": 0}


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
    out_of_scope: int = 0  # refused by the intended-use gate (all of results.jsonl, as processed and refused)
    duplicates: int = 0  # judged before and sent again: one "duplicate" line each (all of results.jsonl)
    # since this watcher started (Prometheus counters may restart): gate refusals and unreadable files by code
    out_of_scope_by_code: dict[str, int] = field(default_factory=dict)
    refused_by_code: dict[str, int] = field(default_factory=dict)
    inference_ms: dict = field(default_factory=new_histogram)  # per image: a batch's time over its images

    def observe(self, record: dict) -> None:
        """Count one durable result line by reason, and its inference time (classified lines only).
        `processed` and `refused` are counted where the lines are made; this adds what they do not say."""
        status = record.get("status")
        if status == OUT_OF_SCOPE:
            self.out_of_scope += 1
            code = str((record.get("gate") or {}).get("code") or "unknown")
            self.out_of_scope_by_code[code] = self.out_of_scope_by_code.get(code, 0) + 1
        elif status == ERROR:
            code = str((record.get("error") or {}).get("code") or "unknown")
            self.refused_by_code[code] = self.refused_by_code.get(code, 0) + 1
        elif status == OK:
            ms = (record.get("timings_ms") or {}).get("inference")
            if isinstance(ms, (int, float)) and ms >= 0:
                _add(self.inference_ms, float(ms))


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


def _add(histogram: dict, ms: float) -> None:
    bounds = histogram["le_ms"]
    slot = next((i for i, bound in enumerate(bounds) if ms <= bound), len(bounds))
    histogram["counts"][slot] += 1
    histogram["sum_ms"] = round(histogram["sum_ms"] + ms, 3)
    histogram["count"] += 1


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=0).isoformat()
