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

from edgecxr.metrics import positive_class_index
from edgecxr.runtime.heartbeat import STATUS, heartbeat_age, is_stale
from edgecxr.runtime.ledger import RESULTS

THUMBS = "thumbs"
MAPS = "maps"  # explanation overlays: <out>/maps/<sha256>.png, written by `watch --explain`
SHA256 = re.compile(r"^[0-9a-f]{64}$")
STATUS_FIELDS = ("state", "updated", "started", "uptime_s", "processed", "refused", "backlog", "waiting",
                 "moved", "last_error", "bundle", "backend", "precision", "reason", "edgecxr")


def decision_text(decision) -> str | None:
    """The bundle's decision rule as status.json gives it: a line from `DecisionRule.describe()`,
    or the manifest's dict that watchers before it wrote."""
    if isinstance(decision, str) or decision is None:
        return decision
    if isinstance(decision, dict) and decision.get("rule") == "threshold":
        cls = decision.get("class")
        return f"P({cls}) ≥ {decision.get('threshold')}"
    return "argmax"


def positive_probability(record: dict) -> tuple[str | None, float | None]:
    """(positive class, P(positive)): the record's own fields, or for lines written before they
    existed, the class `positive_class_index` picks from its probabilities."""
    probs = record.get("probabilities") or {}
    names = list(probs)
    positive = record.get("positive_class") or (names[positive_class_index(names)] if names else None)
    p = record.get("p_positive", probs.get(positive) if positive else None)
    return positive, None if p is None else float(p)


def public_record(seq: int, record: dict) -> dict:
    """The fields of one result line that the page shows; never DICOM attributes."""
    ok = record.get("status") == "ok"
    positive, p = positive_probability(record) if ok else (None, None)
    error = record.get("error") or {}
    return {
        "seq": seq, "path": str(record.get("path", "")), "status": "ok" if ok else "refused",
        "sha256": record.get("sha256", "") if SHA256.match(str(record.get("sha256", ""))) else "",
        "label": record.get("label") if ok else None, "positive_class": positive, "p_positive": p,
        "decision": record.get("decision") if ok else None,
        "probabilities": record.get("probabilities") if ok else None,
        "engine": f"{record.get('backend', '?')}/{record.get('precision', '?')}",
        "completed_at": record.get("completed_at"),
        "error_code": None if ok else error.get("code", "unknown"),
        "reason": None if ok else error.get("message", "no reason recorded"),
    }


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
            return {r["seq"]: self._media_of(r) for r in list(self._recent)[-last:] if r["status"] == "ok"}

    def _with_media(self, record: dict) -> dict:
        return {**record, **self._media_of(record)} if record["status"] == "ok" else record

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
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a torn line from a crash: the watcher cuts it and writes the input again
            if isinstance(record, dict):
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
