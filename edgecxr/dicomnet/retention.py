"""Retention of the outbox's records: `sent.jsonl` and `failed/` per destination shrink by age and size
(`watch --send-keep DAYS MB`, default 90 days and 50 MB each, per destination).

- sent.jsonl: lines older than DAYS go; while the file is over MB, the oldest lines go too (down to
  three quarters of MB, so it is not rewritten for every new line). The lines of the last rotation are
  kept in sent.1.jsonl (replaced by the next), so at most about 2 x MB is on disk.
- failed/: objects (and their reasons) failed more than DAYS ago go; while the folder is over MB, the
  oldest go too.
- Only records more than MARGIN_S old are ever removed.

Exactly-once still holds: the sender needs a sent UID only to tell that a result recorded in
results.jsonl was already sent, when crash recovery looks at results at start. So after removing
anything the outbox moves recovery's horizon (since.json's `recover_after`) to now - MARGIN_S: every
removed record is older, and every result older than that was either checked by this start's
recovery or queued durably by this process. A result line whose input is still in the inbox is
therefore never sent again because its sent line was rotated.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from edgecxr.core.fsutil import atomic_write_bytes, fsync_dir
from edgecxr.dicomnet.outbox import DestinationBox

MARGIN_S = 3600.0  # records younger than this are never removed (see the module's note)
EVERY_S = 3600.0  # how often a running watcher applies the limits


@dataclass(frozen=True)
class Retention:
    keep_days: float = 90.0
    keep_mb: float = 50.0

    @property
    def max_bytes(self) -> int:
        return int(self.keep_mb * 1024 * 1024)


def rotate(box: DestinationBox, retention: Retention, now: float | None = None) -> int:
    """Apply the limits to one destination's records; how many were removed."""
    now = time.time() if now is None else now
    return _rotate_sent(box, retention, now) + _rotate_failed(box, retention, now)


def _rotate_sent(box: DestinationBox, retention: Retention, now: float) -> int:
    if not box.sent_path.exists():
        return 0
    too_old, settled = now - retention.keep_days * 86400, now - MARGIN_S
    with box._lock:  # the sender appends under this lock: no line is lost while the file is rewritten
        raw = box.sent_path.read_bytes().splitlines(keepends=True)
        times = [_line_time(line) for line in raw]
        cut = 0  # lines are in the order they were sent: drop a prefix
        while cut < len(raw) and times[cut] < too_old:
            cut += 1
        size = sum(map(len, raw[cut:]))
        if size > retention.max_bytes:
            while cut < len(raw) and size > retention.max_bytes * 3 // 4 and times[cut] < settled:
                size -= len(raw[cut])
                cut += 1
        if not cut:
            return 0
        atomic_write_bytes(box.folder / "sent.1.jsonl", b"".join(raw[:cut]))
        atomic_write_bytes(box.sent_path, b"".join(raw[cut:]))
        for line in raw[:cut]:
            box.sent.discard(_field(line, "sop_instance_uid"))
    try:
        state = json.loads((box.folder / "state.json").read_text())
    except (OSError, ValueError):
        state = {}
    box.write_state(rotated_sent=int(state.get("rotated_sent", 0)) + cut,  # the counts stay whole
                    rotated_committed=int(state.get("rotated_committed", 0))
                    + sum(1 for line in raw[:cut] if _field(line, "committed_at")))
    return cut


def _rotate_failed(box: DestinationBox, retention: Retention, now: float) -> int:
    objects = []
    for path in box.failed_dir.glob("*.dcm"):
        try:
            size = path.stat().st_size
            reason = path.with_suffix(".json")
            when = reason.stat().st_mtime if reason.exists() else path.stat().st_mtime
        except OSError:
            continue
        objects.append((when, size, path))
    objects.sort()
    total = sum(size for _, size, _ in objects)
    removed = 0
    for when, size, path in objects:
        over = total > retention.max_bytes
        if when >= now - MARGIN_S or (when >= now - retention.keep_days * 86400 and not over):
            break
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
        total -= size
        removed += 1
    if removed:
        fsync_dir(box.failed_dir)
    return removed


class Rotator:
    """Applies the limits at start (after recovery) and then every EVERY_S, from the builder thread."""

    def __init__(self, outbox, retention: Retention, log):
        self.outbox, self.retention, self.log = outbox, retention, log
        self.last = 0.0
        self._lock = threading.Lock()

    def maybe(self) -> None:
        if time.monotonic() - self.last < EVERY_S and self.last:
            return
        with self._lock:
            self.last = time.monotonic()
            removed = {str(box.destination): rotate(box, self.retention) for box in self.outbox.boxes}
            if any(removed.values()):
                self.outbox.set_recovery_horizon(time.time() - MARGIN_S)
                self.log(f"outbox retention ({self.retention.keep_days:g} days, {self.retention.keep_mb:g} MB): "
                         + ", ".join(f"{d}: {n} record(s) removed" for d, n in removed.items() if n))


def _line_time(line: bytes) -> float:
    """The line's sent time (Unix seconds); a line without one counts as new (never removed by age)."""
    try:
        return datetime.fromisoformat(str(json.loads(line)["sent_at"])).timestamp()
    except (ValueError, KeyError, TypeError):
        return float("inf")


def _field(line: bytes, key: str) -> str:
    try:
        return str(json.loads(line).get(key) or "")
    except (ValueError, AttributeError):
        return ""

