"""The durable outbox in the results folder: what still has to reach each PACS, across restarts.

    OUT/outbox/since.json              the last result line recorded when sending began (its path and sha256,
                                       and the time): recovery starts after it, wherever the ledger keeps it;
                                       `recover_after`: results older are not recovered (retention.py)
    OUT/outbox/queue/<uid>.json|.dcm   a result and a hard link (or copy) of its DICOM input, not yet built
    OUT/outbox/<dest>/pending/*.dcm    built SR/SC objects waiting for that destination
    OUT/outbox/<dest>/awaiting/*.dcm   with --send-commit: stored by C-STORE, waiting for the PACS's storage
                                       commitment (a .json beside each: C-STORE status, requests so far)
    OUT/outbox/<dest>/sent.jsonl       one fsynced line per object the PACS accepted (and, with --send-commit,
                                       committed: its commitment time and Transaction UID)
    OUT/outbox/<dest>/failed/          objects the PACS refused for good, or given up on, each with a .json reason
    OUT/outbox/<dest>/attempts.json    per object the PACS answered "try again": how often, and when next
    OUT/outbox/<dest>/state.json       destination, last attempt, last error (for `edgecxr status`)

Every file appears by an fsynced rename, so a crash leaves either the old or the new state.
An object is marked sent before its pending file is removed; a crash between the two is
cleaned up on start, and a re-send would carry the same SOP Instance UID (idempotent in PACS).
An object's age is its pending file's mtime (when it was built, or re-queued by `outbox retry`).
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from edgecxr.core.fsutil import atomic_write_bytes, atomic_write_json, fsync_dir
from edgecxr.core.jsonl import append_durably, cut_torn_tail, iter_lines
from edgecxr.core.provenance import utc_now
from edgecxr.dicomnet.destination import Destination

OUTBOX = "outbox"
QUEUE = "queue"


class DestinationBox:
    """One destination's folders; its sender thread and the builder thread share it."""

    def __init__(self, root: Path, destination: Destination):
        self.destination = destination
        self.folder = root / destination.folder_name
        self.pending_dir = self.folder / "pending"
        self.failed_dir = self.folder / "failed"
        self.awaiting_dir = self.folder / "awaiting"  # stored, not yet committed (only with --send-commit)
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self.awaiting_dir.mkdir(parents=True, exist_ok=True)
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        self.sent_path = self.folder / "sent.jsonl"
        cut_torn_tail(self.sent_path)
        self.sent: set[str] = set()
        # Counts for status.json and /metrics: every object ever sent (committed), lines retention removed
        # included (state.json keeps their count), so a counter never goes down when sent.jsonl is rotated.
        state = _read_json(self.folder / "state.json") or {}
        self.sent_total, self.committed = int(state.get("rotated_sent", 0)), int(state.get("rotated_committed", 0))
        for line in iter_lines(self.sent_path):
            self.sent.add(line["sop_instance_uid"])
            self.sent_total += 1
            self.committed += bool(line.get("committed_at"))
        self._lock = threading.Lock()
        for path in self.pending() + self.awaiting():  # sent, then killed before the file was removed
            if path.stem in self.sent:
                self._remove(path)
        for sidecar in self.awaiting_dir.glob("*.json"):  # its object committed, failed or moved by hand
            if not sidecar.with_suffix(".dcm").exists():
                sidecar.unlink(missing_ok=True)
        self.attempts_path = self.folder / "attempts.json"
        names = {p.stem for p in self.pending()}
        self.attempts: dict[str, dict] = {k: v for k, v in (_read_json(self.attempts_path) or {}).items()
                                          if k in names and isinstance(v, dict)}
        self.write_state(last_error=None)

    def pending(self) -> list[Path]:
        return sorted((p for p in self.pending_dir.glob("*.dcm") if not p.name.startswith(".")), key=_age)

    def due(self, now: float | None = None) -> list[Path]:
        """Pending objects whose turn it is, oldest first: one the PACS asked to retry later waits its
        own backoff, so objects stuck behind a refusal never hold back newer ones."""
        now = time.time() if now is None else now
        pending = self.pending()
        gone = set(self.attempts) - {p.stem for p in pending}  # removed by hand: no backoff to wait for
        for uid in gone:
            self._forget(uid)
        return [p for p in pending if float(self.attempts.get(p.stem, {}).get("next_try", 0)) <= now]

    def next_due(self) -> float | None:
        """When the earliest object waiting out its own backoff is due (Unix seconds), or None."""
        times = [float(a.get("next_try", 0)) for a in self.attempts.values()]
        return min(times) if times else None

    def note_retry(self, path: Path, detail: str, wait_s: float) -> int:
        """One more "try again" answer for this object; its attempt count, kept across restarts."""
        entry = self.attempts.setdefault(path.stem, {"attempts": 0})
        entry.update(attempts=int(entry.get("attempts", 0)) + 1, next_try=time.time() + wait_s, last=detail)
        self._save_attempts()
        return entry["attempts"]

    def attempts_of(self, path: Path) -> int:
        return int(self.attempts.get(path.stem, {}).get("attempts", 0))

    @staticmethod
    def age_of(path: Path) -> float | None:
        """Seconds since this pending object was built (or re-queued); None when it is gone."""
        try:
            return max(time.time() - path.stat().st_mtime, 0.0)
        except OSError:
            return None

    def oldest_pending_s(self) -> float | None:
        """Seconds since the oldest pending object was built (None when nothing is pending)."""
        ages = [time.time() - _age(p)[0] / 1e9 for p in self.pending()[:1]]
        return round(max(ages[0], 0.0), 1) if ages else None

    def _save_attempts(self) -> None:
        with self._lock:
            atomic_write_json(self.attempts_path, self.attempts)

    def _forget(self, uid: str) -> None:
        if self.attempts.pop(uid, None) is not None:
            self._save_attempts()

    def known(self, uid: str) -> bool:
        return uid in self.sent or any((folder / f"{uid}.dcm").exists()
                                       for folder in (self.pending_dir, self.awaiting_dir, self.failed_dir))

    def awaiting(self) -> list[Path]:
        """Objects the PACS stored and has not yet committed, oldest first."""
        return sorted((p for p in self.awaiting_dir.glob("*.dcm") if not p.name.startswith(".")), key=_age)

    def mark_stored(self, path: Path, info: dict) -> None:
        """C-STORE success where the destination commits: the object waits in awaiting/ (a rename, so a
        crash leaves it either pending, sent again with the same UID, or awaiting) until the PACS commits."""
        target = self.awaiting_dir / path.name
        os.replace(path, target)
        fsync_dir(self.awaiting_dir)
        atomic_write_json(target.with_suffix(".json"), {"stored_at": utc_now(), "requests": 0, **info})
        self._forget(path.stem)

    def awaiting_info(self, path: Path) -> dict:
        """What the C-STORE said and how often commitment was asked (missing after a crash: nothing yet)."""
        return _read_json(path.with_suffix(".json")) or {"requests": 0}

    def note_commit_request(self, path: Path, detail: str) -> int:
        """One more commitment request the PACS did not answer in time; the count, kept across restarts."""
        info = self.awaiting_info(path)
        info.update(requests=int(info.get("requests", 0)) + 1, last=detail)
        atomic_write_json(path.with_suffix(".json"), info)
        return info["requests"]

    def _remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        if path.parent == self.awaiting_dir:
            path.with_suffix(".json").unlink(missing_ok=True)

    def add(self, uid: str, data: bytes) -> bool:
        """Queue one built object; False when this destination already has it."""
        if self.known(uid):
            return False
        atomic_write_bytes(self.pending_dir / f"{uid}.dcm", data)
        return True

    def mark_sent(self, path: Path, info: dict) -> None:
        line = {"sop_instance_uid": path.stem, "sent_at": utc_now(), **info}
        with self._lock:
            append_durably(self.sent_path, (json.dumps(line, separators=(",", ":")) + "\n").encode())
            self.sent.add(path.stem)
            self.sent_total += 1
            self.committed += bool(line.get("committed_at"))
        self._remove(path)
        self._forget(path.stem)

    def mark_failed(self, path: Path, reason: str) -> None:
        atomic_write_json(self.failed_dir / f"{path.stem}.json", {"failed_at": utc_now(), "reason": reason})
        os.replace(path, self.failed_dir / path.name)
        fsync_dir(self.failed_dir)
        if path.parent == self.awaiting_dir:
            path.with_suffix(".json").unlink(missing_ok=True)
        self._forget(path.stem)

    def write_state(self, **fields) -> None:
        path = self.folder / "state.json"
        with self._lock:  # the sender and the retention pass (builder thread) both update it
            state = _read_json(path) or {}
            state.update(destination=str(self.destination), updated=utc_now(), **fields)
            atomic_write_json(path, state)


class Outbox:
    def __init__(self, out: Path, destinations: list[Destination],
                 results: Callable[[], Iterable[dict]] = lambda: ()):
        """`results` streams results.jsonl (core.results.iter_results), read only on the first start."""
        self.root = Path(out) / OUTBOX
        self.queue_dir = self.root / QUEUE
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        path = self.root / "since.json"
        since = _read_json(path) or {}
        if not isinstance(since.get("results_line"), int):  # first start (or a damaged file): results
            count, last = 0, None                             # recorded until now are never sent
            for record in results():
                count, last = count + 1, record
            since = {"results_line": count, "created": utc_now(),
                     "after": {"path": last["path"], "sha256": last.get("sha256")} if last else None}
            atomic_write_json(path, since)
        self.since = since
        self.boxes = [DestinationBox(self.root, d) for d in destinations]

    def set_recovery_horizon(self, seconds: float) -> None:
        """Results completed before this (Unix seconds) are no longer looked at by crash recovery: their
        sent records may be gone (retention.py says why that is safe)."""
        from datetime import datetime, timezone

        self.since["recover_after"] = datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=0).isoformat()
        atomic_write_json(self.root / "since.json", self.since)

    # -- the queue: results accepted, objects not yet built ------------------------------
    def enqueue(self, uid: str, record: dict, source: Path) -> None:
        """Keep the input (a hard link costs nothing) and the result line; the .json makes it a job."""
        copy = self.queue_dir / f"{uid}.dcm"
        tmp = self.queue_dir / f".{uid}.dcm.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copyfile(source, tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, copy)
        atomic_write_json(self.queue_dir / f"{uid}.json", {"record": record, "queued_at": utc_now()})
        fsync_dir(self.queue_dir)

    def queued(self) -> list[Path]:
        jobs = [p for p in self.queue_dir.glob("*.json") if not p.name.startswith(".")]
        return sorted(jobs, key=lambda p: p.name)

    def is_queued(self, uid: str) -> bool:
        return (self.queue_dir / f"{uid}.json").exists()

    def known(self, uid: str) -> bool:
        return self.is_queued(uid) or all(box.known(uid) for box in self.boxes)

    def drop(self, job: Path) -> None:
        job.unlink(missing_ok=True)  # the .json first: a leftover .dcm alone is no job
        job.with_suffix(".dcm").unlink(missing_ok=True)
        fsync_dir(self.queue_dir)

    def refuse(self, job: Path, reason: str) -> None:
        """An input no SR can be built from (a damaged header): kept aside with the reason."""
        refused = self.root / "unbuildable"
        refused.mkdir(exist_ok=True)
        atomic_write_json(refused / job.name, {"reason": reason, **(_read_json(job) or {})})
        self.drop(job)


def since_sending_began(since: dict, results: Callable[[], Iterable[dict]]) -> Iterator[dict]:
    """The result lines recorded after sending was switched on, streamed from `results` (called once
    or twice, never held whole). Found by the last line then recorded (path and sha256), not by its
    number: the ledger drops damaged lines and so renumbers the rest. When that line is gone itself
    (it was the damaged one), by time; a since.json older than the anchor has only the line number.
    Results completed before `recover_after` (set when retention removed sent or failed records) are
    left out."""
    horizon = str(since.get("recover_after") or "")
    for record in _since_anchor(since, results):
        if not horizon or str(record.get("completed_at") or "") >= horizon:
            yield record


def _since_anchor(since: dict, results: Callable[[], Iterable[dict]]) -> Iterator[dict]:
    after = since.get("after", "missing")
    if after is None:  # sending began with an empty ledger: every line is after it
        yield from results()
        return
    if isinstance(after, dict):
        key = (after.get("path"), after.get("sha256"))
        anchor = None
        for index, record in enumerate(results()):  # first pass: where the anchor line stands now
            if (record.get("path"), record.get("sha256")) == key:
                anchor = index
        if anchor is not None:
            yield from itertools.islice(results(), anchor + 1, None)
            return
        created = str(since.get("created") or "")
        yield from (r for r in results() if str(r.get("completed_at") or "") >= created)
        return
    yield from itertools.islice(results(), int(since.get("results_line", 0)), None)


def retry_failed(out: Path, destination: str | None = None) -> dict[str, int]:
    """Move every failed object (of one destination, or all) back to pending, as a new try: its age
    and attempt count start again. Returns the count per destination folder."""
    root = Path(out) / OUTBOX
    moved: dict[str, int] = {}
    for folder in sorted(p for p in root.iterdir() if (p / "failed").is_dir()) if root.is_dir() else []:
        state = _read_json(folder / "state.json") or {}
        if destination is not None and destination not in (folder.name, state.get("destination")):
            continue
        count = 0
        for obj in sorted((folder / "failed").glob("*.dcm")):
            target = folder / "pending" / obj.name
            os.utime(obj)  # its age starts again, or the age rule would give up on it at once
            os.replace(obj, target)
            obj.with_suffix(".json").unlink(missing_ok=True)
            count += 1
        attempts = _read_json(folder / "attempts.json")
        if count and attempts:
            kept = {k: v for k, v in attempts.items() if not (folder / "pending" / f"{k}.dcm").exists()}
            atomic_write_json(folder / "attempts.json", kept)
        fsync_dir(folder / "pending")
        moved[str(state.get("destination", folder.name))] = count
    return moved


def summary(out: Path) -> list[dict]:
    """Pending / sent / failed per destination, read from the folders (no sender needed)."""
    root = Path(out) / OUTBOX
    rows: list[dict] = []
    if not root.is_dir():
        return rows
    queued = len([p for p in (root / QUEUE).glob("*.json") if not p.name.startswith(".")])
    for folder in sorted(p for p in root.iterdir() if (p / "pending").is_dir()):
        state = _read_json(folder / "state.json") or {}
        sent = committed = 0
        for line in iter_lines(folder / "sent.jsonl"):
            sent, committed = sent + 1, committed + bool(line.get("committed_at"))
        rows.append({
            "destination": state.get("destination", folder.name),
            "pending": len([p for p in (folder / "pending").glob("*.dcm") if not p.name.startswith(".")]),
            "awaiting_commitment": len(list((folder / "awaiting").glob("*.dcm"))),
            "sent": sent + int(state.get("rotated_sent", 0)),
            "committed": committed + int(state.get("rotated_committed", 0)),
            "failed": len(list((folder / "failed").glob("*.dcm"))),
            "queued": queued, "last_error": state.get("last_error"), "last_sent": state.get("last_sent"),
            "next_attempt": state.get("next_attempt"),
        })
    return rows


def _age(path: Path) -> tuple[int, str]:
    """Oldest first; a file the sender removed meanwhile sorts anywhere, it is skipped later."""
    try:
        return path.stat().st_mtime_ns, path.name
    except OSError:
        return 0, path.name


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
