"""`edgecxr watch`: classify every complete file that lands in the inbox, exactly once.

The loop: find files (file-system events wake it, a periodic full rescan catches what
events miss on NFS/SMB or while an observer was down), wait until each has settled,
decode the next chunk in threads while the engine infers on the current one, append the
results durably, then archive or quarantine the inputs. SIGTERM/SIGINT stop it after the
chunk in flight.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecxr import __version__
from edgecxr.errors import EdgecxrError
from edgecxr.fsutil import atomic_write_json
from edgecxr.provenance import utc_now
from edgecxr.runtime.classifier import Classifier
from edgecxr.runtime.heartbeat import STATUS
from edgecxr.runtime.ledger import RESULT_SCHEMA, Ledger
from edgecxr.runtime.moves import move
from edgecxr.runtime.prepare import MISSING_DEPENDENCY, InputLimits, Prepared, prepare
from edgecxr.runtime.scanner import Entry, Settler, scan
from edgecxr.runtime.sinks import ResultSink


@dataclass
class WatchOptions:
    inbox: Path
    out: Path
    recursive: bool = False
    settle_seconds: float = 2.0
    rescan_seconds: float = 10.0
    batch_size: int = 8
    once: bool = False
    poll: bool = False
    archive: Path | None = None
    quarantine: Path | None = None
    limits: InputLimits = field(default_factory=InputLimits)
    status_seconds: float = 2.0
    decode_threads: int = 2


@dataclass
class Counters:
    processed: int = 0
    refused: int = 0
    last_error: str | None = None
    backlog: int = 0
    waiting: int = 0
    moved: int = 0


class Watcher:
    def __init__(self, classifier: Classifier, options: WatchOptions, log: Callable[[str], None] = print,
                 on_result: Callable[[dict], None] | None = None, sinks: Sequence[ResultSink] = ()):
        self.classifier = classifier
        self.options = options
        self.log = log
        self.on_result = on_result
        self.sinks = list(sinks)
        self.counters = Counters()
        self.started = time.time()
        self.wake = threading.Event()
        # files this box cannot read yet (a missing decoder): no line, so they are read after the fix
        self.deferred: dict[str, tuple[int, int]] = {}
        self._check_folders()

    # -- setup ------------------------------------------------------------------------
    def _check_folders(self) -> None:
        o = self.options
        if not o.inbox.is_dir():
            raise EdgecxrError("inbox folder not found", path=o.inbox,
                               fix="create it or give the scanner's output folder")
        for name, folder in (("--out", o.out), ("--archive", o.archive), ("--quarantine", o.quarantine)):
            if folder is not None and folder.resolve() == o.inbox.resolve():
                raise EdgecxrError(f"{name} cannot be the inbox itself", path=folder, fix=f"give {name} its own folder")
        self.excluded = [p for p in (o.out, o.archive, o.quarantine) if p is not None]

    # -- the loop -------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> Counters:
        o = self.options
        self.ledger = Ledger(o.out)
        if self.ledger.repaired_bytes:
            self.log(f"repaired results.jsonl: cut a torn last line of {self.ledger.repaired_bytes} bytes "
                     "(its input will be processed again)")
        self.counters.processed = self.ledger.counts.get("ok", 0)
        self.counters.refused = self.ledger.counts.get("error", 0)
        settler = Settler(o.settle_seconds)
        observer = None if o.once else self._start_observer()
        self._next_status = 0.0
        warned_links: set[str] = set()
        burst = False
        try:
            with ThreadPoolExecutor(o.decode_threads, thread_name_prefix="decode") as pool:
                while not stop.is_set():
                    self.wake.clear()
                    found = scan(o.inbox, recursive=o.recursive, exclude=self.excluded)
                    for rel in set(found.outside_links) - warned_links:
                        self.log(f"not following {rel}: a symbolic link that leads outside the inbox")
                        warned_links.add(rel)
                    settler.forget_missing(set(found.files))
                    now, wall = time.monotonic(), time.time()
                    ready, waiting = [], 0
                    for entry in found.files.values():
                        if self.ledger.seen_unchanged(entry.rel, entry.size, entry.mtime_ns):
                            self._move_done(entry)
                        elif self.deferred.get(entry.rel) == (entry.size, entry.mtime_ns):
                            continue
                        elif settler.ready(entry, now, wall):
                            ready.append(entry)
                        else:
                            waiting += 1
                    self.counters.backlog = len(ready)
                    self.counters.waiting = waiting + found.temporary
                    if ready:
                        self._process(sorted(ready, key=lambda e: e.rel), pool, stop)
                        burst = True
                        continue  # rescan at once: more may have arrived meanwhile
                    self._heartbeat(force=burst)  # a finished burst shows its final counts at once
                    burst = False
                    if o.once and waiting == 0:
                        if self.deferred:
                            self.log(f"{len(self.deferred)} file(s) left unread until a missing library is installed "
                                     "(see the messages above); they have no result line yet")
                        if found.temporary:
                            self.log(f"{found.temporary} file(s) with temporary names left waiting for a rename")
                        break
                    if observer is not None and not observer.is_alive():
                        self.log("file-system observer stopped; restarting it (rescans continue meanwhile)")
                        observer = self._start_observer()
                    tick = min(0.25, max(o.settle_seconds / 4, 0.05)) if waiting else o.rescan_seconds
                    self.wake.wait(tick)
        finally:
            if observer is not None:
                observer.stop()
            self.write_status("stopped")
            self.ledger.close()
            for sink in self.sinks:
                self._guard(sink, sink.close)
        return self.counters

    def _start_observer(self):
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
            from watchdog.observers.polling import PollingObserver
        except ImportError:
            self.log("watchdog is not installed: relying on periodic rescans")
            return None
        wake = self.wake

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                wake.set()

        observer = (PollingObserver(timeout=1.0) if self.options.poll else Observer())
        observer.schedule(Handler(), str(self.options.inbox), recursive=self.options.recursive)
        observer.daemon = True
        observer.start()
        return observer

    # -- one burst --------------------------------------------------------------------------
    def _process(self, entries: list[Entry], pool: ThreadPoolExecutor, stop: threading.Event) -> None:
        o = self.options
        spec = self.classifier.bundle.spec
        chunks = [entries[i:i + o.batch_size] for i in range(0, len(entries), o.batch_size)]
        submitted = [pool.submit(prepare, e.path, spec, o.limits) for e in chunks[0]]
        for k, chunk in enumerate(chunks):
            prepared = [f.result() for f in submitted]
            if k + 1 < len(chunks) and not stop.is_set():  # decode the next chunk while this one infers
                submitted = [pool.submit(prepare, e.path, spec, o.limits) for e in chunks[k + 1]]
            records, moves = self._classify(chunk, prepared)
            self.ledger.append(records)  # durable: from here on these inputs are done
            self.counters.backlog = sum(len(c) for c in chunks[k + 1:])
            if self.on_result is not None:
                for record in records:
                    self.on_result(record)
            self._feed_sinks(moves)
            for entry, record, _ in moves:
                self._move(entry, record)
            self._heartbeat()  # a long backlog still refreshes status.json every few seconds
            if stop.is_set():
                break

    def _feed_sinks(self, done: list[tuple[Entry, dict, Prepared]]) -> None:
        for sink in self.sinks:
            for entry, record, item in done:
                self._guard(sink, sink.accept, record, item, entry.path)

    def _guard(self, sink: ResultSink, method: Callable, *args) -> None:
        """A sink's failure is logged, never raised: the result line is already durable."""
        try:
            method(*args)
        except Exception as exc:  # any sink bug must not stop classification
            name = type(sink).__name__
            self.counters.last_error = f"{name}: {exc}"
            self.log(f"result sink {name} failed: {type(exc).__name__}: {exc}")

    def _classify(self, chunk: list[Entry], prepared: list[Prepared]):
        records, moves, batch, batch_items = [], [], [], []
        for entry, item in zip(chunk, prepared):
            try:
                st = entry.path.stat()
            except OSError:
                continue  # gone (moved away by someone else): nothing to record
            if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
                continue  # still being written: it will settle again and come back
            if item.sha256 and self.ledger.has_version(entry.rel, item.sha256):
                self.ledger.remember_stat(entry.rel, entry.size, entry.mtime_ns, item.sha256)
                continue  # same content as a version already recorded
            if item.error is not None and item.error.code == MISSING_DEPENDENCY:
                if entry.rel not in self.deferred:
                    self.log(f"cannot read {entry.rel} yet: {item.error}")
                self.deferred[entry.rel] = (entry.size, entry.mtime_ns)
                self.counters.last_error = f"{entry.rel}: {item.error.cause}"
                continue
            if item.error is not None:
                record = self._record(entry, item, status="error")
                record["error"] = {"code": item.error.code, "message": str(item.error)}
                records.append(record)
                moves.append((entry, record, item))
                self.counters.refused += 1
                self.counters.last_error = f"{entry.rel}: {item.error.code}"
            else:
                batch.append(item.tensor)
                batch_items.append((entry, item))
        if batch:
            # prepare() sets the tensor whenever it sets no error
            probs, infer_ms = self.classifier.probabilities(np.stack(batch))  # type: ignore[arg-type]
            for (entry, item), p in zip(batch_items, probs):
                record = self._record(entry, item, status="ok")
                record.update(self.classifier.result_fields(p))
                record["probabilities"] = {n: round(float(v), 6) for n, v in zip(self.classifier.class_names, p)}
                record["timings_ms"] = {"decode": round(item.decode_ms, 2), "preprocess": round(item.preprocess_ms, 2),
                                        "inference": round(infer_ms / len(batch), 2),
                                        "batch_inference": round(infer_ms, 2), "batch_size": len(batch)}
                records.append(record)
                moves.append((entry, record, item))
                self.counters.processed += 1
        return records, moves

    def _record(self, entry: Entry, item: Prepared, *, status: str) -> dict:
        c = self.classifier
        record = {
            "schema": RESULT_SCHEMA, "path": entry.rel, "size": item.size, "sha256": item.sha256,
            "mtime_ns": entry.mtime_ns, "status": status,
            "bundle": c.bundle.name, "bundle_checksum": c.bundle.checksum,
            "backend": c.artifact.backend, "precision": c.artifact.precision, "artifact": c.artifact.name,
            "modified_at": _iso(entry.mtime_ns / 1e9), "completed_at": utc_now(),
        }
        if item.meta:
            record["dicom"] = item.meta
        return record

    # -- after the line is durable ---------------------------------------------------------
    def _move(self, entry: Entry, record: dict) -> None:
        root = self.options.archive if record["status"] == "ok" else self.options.quarantine
        if root is None:
            return
        try:
            move(entry.path, root, entry.rel, record["sha256"])
            self.counters.moved += 1
        except OSError as exc:
            self.counters.last_error = f"{entry.rel}: move failed: {exc}"
            self.log(f"could not move {entry.rel} to {root}: {exc} (it stays in the inbox, already recorded)")

    def _move_done(self, entry: Entry) -> None:
        """A recorded file still in the inbox (e.g. a crash between line and move): move it now."""
        if self.options.archive is None and self.options.quarantine is None:
            return
        _, _, sha, status = self.ledger.stats[entry.rel]
        self._move(entry, {"status": status, "sha256": sha})

    def _heartbeat(self, force: bool = False) -> None:
        if force or time.monotonic() >= self._next_status:
            self.write_status("running")
            self._next_status = time.monotonic() + self.options.status_seconds

    def write_status(self, state: str) -> None:
        c, cl = self.counters, self.classifier
        atomic_write_json(self.options.out / STATUS, {
            "schema": "edgecxr.status/1", "state": state, "pid": os.getpid(), "edgecxr": __version__,
            "updated": utc_now(), "started": _iso(self.started), "uptime_s": round(time.time() - self.started, 1),
            "inbox": str(self.options.inbox), "processed": c.processed, "refused": c.refused,
            "backlog": c.backlog, "waiting": c.waiting, "moved": c.moved, "last_error": c.last_error,
            "bundle": cl.bundle.name, "backend": cl.artifact.backend, "precision": cl.artifact.precision,
            "reason": cl.choice.reason, "decision": cl.rule.describe(),
        })


def _iso(seconds: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=0).isoformat()
