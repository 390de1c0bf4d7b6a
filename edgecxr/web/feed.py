"""What the page may show, read from the watcher's results folder and cached between requests.

Every poll of an open page lands here, inside the watcher's process, so a request costs only
what changed: results.jsonl is read from where the last request stopped, status.json only
when its mtime moves. Records pass through `public_record`, a whitelist: DICOM fields and
anything else a future record carries never reach the browser unless named here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections import deque
from pathlib import Path

from edgecxr.core.jsonl import parse_line
from edgecxr.core.results import (
    DUPLICATE,
    MAPS,
    OK,
    OUT_OF_SCOPE,
    RESULTS,
    STATUS,
    THUMBS,
    decision_record_text,
    heartbeat_age,
    is_stale,
    p_positive,
)

SHA256 = re.compile(r"^[0-9a-f]{64}$")
STATUS_FIELDS = ("state", "updated", "started", "uptime_s", "processed", "refused", "out_of_scope", "backlog",
                 "waiting", "moved", "last_error", "inbox_error", "bundle", "backend", "precision", "reason", "edgecxr")
GATE_TEXT = ("stage", "code", "reason")
GATE_NUMBERS = ("score", "threshold")
PICTURED = (OK, OUT_OF_SCOPE)  # an unreadable file has no model input to picture
MAX_TEXT = 500  # characters of one reason shown: a message is a sentence, not a traceback


def decision_text(decision) -> str | None:
    """The bundle's decision rule as status.json gives it: a line from `DecisionRule.describe()`,
    or the manifest's dict that watchers before it wrote (worded as `describe()` words it)."""
    if isinstance(decision, str) or decision is None:
        return decision
    return decision_record_text(decision) if isinstance(decision, dict) else "argmax"


def public_record(seq: int, record: dict) -> dict:
    """The fields of one result line that the page shows; never DICOM attributes.

    `status` is "ok", "out_of_scope" (the intended-use gate refused it: `gate` says why), "duplicate"
    (sent again after it was analysed: `reason` names the earlier file) or "refused" (the file could
    not be read: `error_code`, and `reason`/`fix` in words).
    """
    status = record.get("status")
    ok = status == OK
    shown = OK if ok else OUT_OF_SCOPE if status == OUT_OF_SCOPE else DUPLICATE if status == DUPLICATE else "refused"
    positive, p = p_positive(record) if ok else (None, None)  # an older line's as the SR reads it
    gate = gate_view(record.get("gate"))
    reason, fix = None, None
    if shown == OUT_OF_SCOPE:
        reason = (gate or {}).get("reason") or "outside the intended use (no reason recorded)"
    elif shown == DUPLICATE:  # sent again: its result is the earlier line's
        earlier = record.get("duplicate_of")
        earlier = earlier if isinstance(earlier, dict) else {}
        reason = _text(f"sent again: this image was already analysed as {earlier.get('path', '?')}")
        fix = "nothing: the earlier result stands, and no second result went to the PACS"
    elif shown == "refused":
        reason, fix = plain_error(record.get("error"), str(record.get("path", "")))
    error = record["error"] if isinstance(record.get("error"), dict) else {}
    return {
        "seq": seq, "path": str(record.get("path", "")), "status": shown,
        "sha256": record.get("sha256", "") if SHA256.match(str(record.get("sha256", ""))) else "",
        "label": record.get("label") if ok else None, "positive_class": positive, "p_positive": p,
        "decision": record.get("decision") if ok else None,
        "probabilities": record.get("probabilities") if ok else None,
        "engine": f"{record.get('backend', '?')}/{record.get('precision', '?')}",
        "completed_at": record.get("completed_at"),
        "error_code": error.get("code", "unknown") if shown == "refused" else None,
        "reason": reason, "fix": fix, "gate": gate, "flags": flags_view(record.get("flags")),
    }


def gate_view(gate) -> dict | None:
    """The gate's verdict: stage, code and reason as text, score and threshold as numbers; nothing else."""
    if not isinstance(gate, dict):
        return None
    view: dict = {k: _text(gate[k]) for k in GATE_TEXT if isinstance(gate.get(k), str)}
    for key in GATE_NUMBERS:
        value = gate.get(key)
        view[key] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return view


def flags_view(flags) -> list[dict]:
    """Flags that do not stop the analysis (e.g. an age outside the trained population): code and reason only."""
    if not isinstance(flags, list):
        return []
    return [{"code": _text(f.get("code", "")), "reason": _text(f.get("reason", ""))}
            for f in flags[:10] if isinstance(f, dict) and isinstance(f.get("reason", ""), str)]


def plain_error(error, path: str) -> tuple[str, str | None]:
    """(what went wrong, what to do) from an error's message "PATH: cause. Fix: what to do": the
    row already names the file, and a radiographer needs the cause and the fix, not a code."""
    if not isinstance(error, dict) or not isinstance(error.get("message"), str) or not error["message"].strip():
        return "the file could not be read (no reason recorded)", None
    message = error["message"].strip().splitlines()[0]  # an internal error's traceback stays in the log
    head, colon, rest = message.partition(": ")
    if colon and path and (head == path or head.endswith("/" + path) or head.endswith("/" + Path(path).name)):
        message = rest
    cause, _, fix = message.partition(". Fix: ")
    return _text(cause.rstrip(".") + "."), _text(fix) or None


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _text(value) -> str:
    text = str(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def drift_view(drift) -> dict | None:
    """status.json's drift watch: warnings (plain sentences) and each check's plain values.
    None when the watcher writes no drift (old watchers, bundles without validation figures)."""
    if not isinstance(drift, dict):
        return None
    warnings = [_text(w) for w in _list(drift.get("warnings")) if isinstance(w, str) and w.strip()]
    checks = [{k: v if not isinstance(v, str) else _text(v) for k, v in c.items()
               if isinstance(k, str) and (v is None or isinstance(v, (str, int, float, bool)))}
              for c in _list(drift.get("checks"))[:20] if isinstance(c, dict)]
    whole = {k: drift[k] if isinstance(drift.get(k), int) and not isinstance(drift[k], bool) else None
             for k in ("window", "images")}
    return {**whole, "warnings": warnings[:20], "checks": checks}


def pacs_view(sending) -> list[dict]:
    """Each --send-sr destination as the page shows it: counts (with --send-commit: committed and awaiting
    commitment too) and the C-ECHO health check's answer."""
    if not isinstance(sending, dict):
        return []
    rows = []
    for row in _list(sending.get("destinations"))[:20]:
        if not isinstance(row, dict):
            continue
        health: dict = row["health"] if isinstance(row.get("health"), dict) else {}
        counts = {k: row.get(k) if isinstance(row.get(k), int) else None
                  for k in ("sent", "pending", "failed", "committed", "awaiting_commitment")}
        rtt = health.get("rtt_ms")
        rows.append({"destination": _text(row.get("destination", "")), **counts,
                     "reachable": health.get("reachable") if isinstance(health.get("reachable"), bool) else None,
                     "last_ok": _text(health["last_ok"]) if isinstance(health.get("last_ok"), str) else None,
                     "last_error": _text(health["last_error"]) if isinstance(health.get("last_error"), str) else None,
                     "rtt_ms": rtt if isinstance(rtt, (int, float)) and not isinstance(rtt, bool) else None,
                     "oldest_pending_s": _seconds(row.get("oldest_pending_s"))})
    return rows


def delivery_view(sending) -> list[dict]:
    """The SR builder and sender threads that are not running (a supervisor restarts a thread that
    died; one that failed ten times in a row is given up): what the room must hear about."""
    if not isinstance(sending, dict):
        return []
    stopped = []
    for worker in _list(sending.get("workers"))[:20]:
        if isinstance(worker, dict) and worker.get("alive") is False:
            restarts = worker.get("restarts")
            stopped.append({"name": _text(worker.get("name", "a sending thread")),
                            "restarts": restarts if isinstance(restarts, int) else None,
                            "last_error": _text(worker["last_error"]) if isinstance(worker.get("last_error"), str)
                            else None})
    return stopped


def _seconds(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class ResultsFeed:
    """The latest result lines, numbered from 1 in file order, read incrementally."""

    def __init__(self, out: Path, keep: int = 1000, thumbs=None):
        self.path = out / RESULTS
        self.out = out
        self.thumbs = thumbs  # the ThumbnailSink of this process, which can still make recent ones
        self._lock = threading.Lock()
        self._recent: deque[dict] = deque(maxlen=keep)
        self._count = 0
        self._offset = 0
        self._identity: tuple[int, int] | None = None
        self._media: dict[tuple[str, str], bool] = {}  # (kind, sha256) -> present; present stays present

    def since(self, seq: int, limit: int = 200) -> tuple[list[dict], int]:
        """Records after `seq` (at most the last `limit`) and the number of the last line."""
        with self._lock:
            self._refresh()
            if seq > self._count:  # the file was replaced: the page starts over
                seq = 0
            new = [r for r in self._recent if r["seq"] > seq][-limit:]
            return [self._with_media(r) for r in new], self._count

    def media(self, last: int = 50) -> dict[int, dict]:
        """Thumbnails and maps of the latest records: both are written after the line, so a row
        shown without them gets them on a later poll."""
        with self._lock:
            return {r["seq"]: self._media_of(r) for r in list(self._recent)[-last:] if r["status"] in PICTURED}

    def _with_media(self, record: dict) -> dict:
        return {**record, **self._media_of(record)} if record["status"] in PICTURED else record

    def _media_of(self, record: dict) -> dict:
        sha = record["sha256"]
        return {kind: f"/{folder}/{sha}.png" if sha and self._has(folder, sha) else None
                for kind, folder in (("thumb", THUMBS), ("map", MAPS))}

    def _has(self, folder: str, sha: str) -> bool:
        if self._media.get((folder, sha)):
            return True
        if folder == THUMBS and self.thumbs is not None and self.thumbs.has(sha):
            return True
        present = (self.out / folder / f"{sha}.png").is_file()
        if present:
            self._media[(folder, sha)] = True
        return present

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except OSError:
            return
        if (st.st_dev, st.st_ino) != self._identity or st.st_size < self._offset:
            self._recent.clear()
            self._count, self._offset, self._identity = 0, 0, (st.st_dev, st.st_ino)
        if st.st_size == self._offset:
            return
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read(st.st_size - self._offset)
        complete = data[:data.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        self._offset += len(complete)
        for raw in complete.splitlines():
            if not raw.strip():
                continue
            self._count += 1
            record = parse_line(raw)  # None for a torn line from a crash: the watcher cuts it, writes it again
            if record is not None:
                self._recent.append(public_record(self._count, record))


class StatusView:
    """status.json plus what only the reader can tell: the heartbeat's age and the disk's free space."""

    def __init__(self, out: Path, disk_every_s: float = 5.0):
        self.out = out
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._status: dict | None = None
        self._disk_every = disk_every_s
        self._disk: tuple[float, int | None] = (0.0, None)

    def snapshot(self) -> dict:
        with self._lock:
            status = self._read()
            free = self._disk_free()
        if status is None:
            return {"state": "starting", "stale": False, "age_s": None, "disk_free_bytes": free}
        try:
            age = heartbeat_age(status)
        except (KeyError, TypeError, ValueError):
            age = float("inf")
        view = {k: status.get(k) for k in STATUS_FIELDS}
        return {**view, "decision_rule": decision_text(status.get("decision")),
                "drift": drift_view(status.get("drift")),
                "pacs": pacs_view(status.get("sending")), "delivery": delivery_view(status.get("sending")),
                "age_s": round(age, 1) if age != float("inf") else None,
                "stale": is_stale(status, age), "disk_free_bytes": free}

    def _read(self) -> dict | None:
        path = self.out / STATUS
        try:
            st = path.stat()
        except OSError:
            return None
        if (st.st_mtime_ns, st.st_size) != self._stamp:
            try:
                self._status = json.loads(path.read_text())
                self._stamp = (st.st_mtime_ns, st.st_size)
            except (OSError, ValueError):
                pass  # replaced while read: the previous heartbeat stands until the next poll
        return self._status if isinstance(self._status, dict) else None

    def _disk_free(self) -> int | None:
        checked, free = self._disk
        if time.monotonic() - checked >= self._disk_every:
            try:
                free = shutil.disk_usage(self.out).free
            except OSError:
                free = None
            self._disk = (time.monotonic(), free)
        return free


def media_file(out: Path, folder: str, name: str) -> Path | None:
    """The thumbnail or map `name` in `out`, only for a content-addressed name (no path tricks)."""
    if folder not in (THUMBS, MAPS) or not name.endswith(".png") or not SHA256.match(name[:-4]):
        return None
    path = out / folder / name
    return path if os.path.isfile(path) else None
