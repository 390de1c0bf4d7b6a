"""The durable outbox in the results folder: what still has to reach each PACS, across restarts.

    OUT/outbox/since.json              results.jsonl line count when sending began (recovery starts there)
    OUT/outbox/queue/<uid>.json|.dcm   a result and a hard link (or copy) of its DICOM input, not yet built
    OUT/outbox/<dest>/pending/*.dcm    built SR/SC objects waiting for that destination
    OUT/outbox/<dest>/sent.jsonl       one fsynced line per object the PACS accepted
    OUT/outbox/<dest>/failed/          objects the PACS refused for good, each with a .json reason
    OUT/outbox/<dest>/state.json       destination, last attempt, last error (for `edgecxr status`)

Every file appears by an fsynced rename, so a crash leaves either the old or the new state.
An object is marked sent before its pending file is removed; a crash between the two is
cleaned up on start, and a re-send would carry the same SOP Instance UID (idempotent in PACS).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
from pathlib import Path

from edgecxr.dicomnet.destination import Destination
from edgecxr.fsutil import atomic_write_bytes, atomic_write_json, fsync_dir
from edgecxr.provenance import utc_now

OUTBOX = "outbox"
QUEUE = "queue"


class DestinationBox:
    """One destination's folders; its sender thread and the builder thread share it."""

    def __init__(self, root: Path, destination: Destination):
        self.destination = destination
        self.folder = root / destination.folder_name
        self.pending_dir = self.folder / "pending"
        self.failed_dir = self.folder / "failed"
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        self.sent_path = self.folder / "sent.jsonl"
        _cut_torn_tail(self.sent_path)
        self.sent = {line["sop_instance_uid"] for line in _read_jsonl(self.sent_path)}
        self._lock = threading.Lock()
        for path in self.pending():  # sent, then killed before the pending file was removed
            if path.stem in self.sent:
                path.unlink(missing_ok=True)
        self.write_state(last_error=None)

    def pending(self) -> list[Path]:
        return sorted((p for p in self.pending_dir.glob("*.dcm") if not p.name.startswith(".")), key=_age)

    def known(self, uid: str) -> bool:
        return uid in self.sent or (self.pending_dir / f"{uid}.dcm").exists() or (
            self.failed_dir / f"{uid}.dcm").exists()

    def add(self, uid: str, data: bytes) -> bool:
        """Queue one built object; False when this destination already has it."""
        if self.known(uid):
            return False
        atomic_write_bytes(self.pending_dir / f"{uid}.dcm", data)
        return True

    def mark_sent(self, path: Path, info: dict) -> None:
        line = {"sop_instance_uid": path.stem, "sent_at": utc_now(), **info}
        with self._lock:
            _append_line(self.sent_path, line)
            self.sent.add(path.stem)
        path.unlink(missing_ok=True)

    def mark_failed(self, path: Path, reason: str) -> None:
        atomic_write_json(self.failed_dir / f"{path.stem}.json", {"failed_at": utc_now(), "reason": reason})
        os.replace(path, self.failed_dir / path.name)
        fsync_dir(self.failed_dir)

    def write_state(self, **fields) -> None:
        path = self.folder / "state.json"
        state = _read_json(path) or {}
        state.update(destination=str(self.destination), updated=utc_now(), **fields)
        atomic_write_json(path, state)


class Outbox:
    def __init__(self, out: Path, destinations: list[Destination], ledger_lines: int):
        self.root = Path(out) / OUTBOX
        self.queue_dir = self.root / QUEUE
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        since = self.root / "since.json"
        line = (_read_json(since) or {}).get("results_line")
        if not isinstance(line, int):  # first start (or a damaged file): results recorded until now are never sent
            line = ledger_lines
            atomic_write_json(since, {"results_line": line, "created": utc_now()})
        self.since_line = line
        self.boxes = [DestinationBox(self.root, d) for d in destinations]

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


def summary(out: Path) -> list[dict]:
    """Pending / sent / failed per destination, read from the folders (no sender needed)."""
    root = Path(out) / OUTBOX
    rows: list[dict] = []
    if not root.is_dir():
        return rows
    queued = len([p for p in (root / QUEUE).glob("*.json") if not p.name.startswith(".")])
    for folder in sorted(p for p in root.iterdir() if (p / "pending").is_dir()):
        state = _read_json(folder / "state.json") or {}
        rows.append({
            "destination": state.get("destination", folder.name),
            "pending": len([p for p in (folder / "pending").glob("*.dcm") if not p.name.startswith(".")]),
            "sent": sum(1 for _ in _read_jsonl(folder / "sent.jsonl")),
            "failed": len(list((folder / "failed").glob("*.dcm"))),
            "queued": queued, "last_error": state.get("last_error"), "last_sent": state.get("last_sent"),
            "next_attempt": state.get("next_attempt"),
        })
    return rows


def _append_line(path: Path, line: dict) -> None:
    data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _age(path: Path) -> tuple[int, str]:
    """Oldest first; a file the sender removed meanwhile sorts anywhere, it is skipped later."""
    try:
        return path.stat().st_mtime_ns, path.name
    except OSError:
        return 0, path.name


def _cut_torn_tail(path: Path) -> None:
    """A crash mid-append leaves an unterminated last line; cut it so the next line starts clean."""
    if not path.exists():
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)
            os.fsync(handle.fileno())


def _read_jsonl(path: Path):
    if not path.exists():
        return
    for raw in path.read_text().splitlines():
        try:
            yield json.loads(raw)
        except json.JSONDecodeError:
            continue  # a torn last line from a crash: that object is still pending and goes again


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
