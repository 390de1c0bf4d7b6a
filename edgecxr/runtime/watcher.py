"""`edgecxr watch`: classify every complete file that lands in the inbox, exactly once.

The loop: find files (file-system events wake it, a periodic full rescan catches what
events miss on NFS/SMB or while an observer was down), wait until each has settled,
decode the next chunk in threads while the engine infers on the current one, hand it to
the engine before recording the current one (the engine never waits on the ledger), append the
results durably, then archive or quarantine the inputs. SIGTERM/SIGINT stop it once the
chunks already handed to the engine (at most two) are recorded.

No input file can stop it: `prepare` turns anything a file does to a decoder into a refusal
line. Only two things stop it, as an `EdgecxrError` (exit 2): the engine failing, and the
results folder refusing a write. A vanished or unmounted inbox is reported and waited out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecxr.core.errors import EdgecxrError
from edgecxr.core.fsutil import atomic_write_json
from edgecxr.core.results import DUPLICATE, ERROR, HEARTBEAT_SECONDS, OK, OUT_OF_SCOPE, STATUS
from edgecxr.runtime.checks import check_folders
from edgecxr.runtime.classifier import Classifier
from edgecxr.runtime.ledger import Ledger
from edgecxr.runtime.lock import ResultsLock
from edgecxr.runtime.memory import Trimmer, warm_up
from edgecxr.runtime.moves import Mover
from edgecxr.runtime.observer import start_observer
from edgecxr.runtime.prepare import INTERNAL_ERROR, MISSING_DEPENDENCY, InputLimits, Prepared, prepare
from edgecxr.runtime.records import classified_record, duplicate_record, out_of_scope_record, refusal_record
from edgecxr.runtime.scanner import Entry, Settler, scan
from edgecxr.runtime.sinks import ResultSink
from edgecxr.runtime.status import Counters, status_payload


@dataclass
class WatchOptions:
    inbox: Path
    out: Path
    recursive: bool = True
    settle_seconds: float = 2.0
    rescan_seconds: float = 10.0
    batch_size: int = 8
    once: bool = False
    poll: bool = False
    archive: Path | None = None
    quarantine: Path | None = None
    limits: InputLimits = field(default_factory=InputLimits)
    status_seconds: float = HEARTBEAT_SECONDS
    decode_threads: int = 2
    empty_folder_seconds: float = 60.0  # an emptied study/series folder is removed once unchanged this long


@dataclass
class Flight:
    """One chunk between the engine and the ledger: its refusals and classified lines so far,
    the images the engine has, and the function that waits for their probabilities."""

    done: list[tuple[Entry, dict, Prepared]] = field(default_factory=list)
    batch: list[tuple[Entry, Prepared]] = field(default_factory=list)
    collect: Callable[[], tuple[np.ndarray, list, float]] | None = None


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
        self.trimmer = Trimmer()
        # files this box cannot read yet (a missing decoder): no line, so they are read after the fix
        self.deferred: dict[str, tuple] = {}
        self._check_folders()

    # -- setup ------------------------------------------------------------------------
    def _check_folders(self) -> None:
        """Everything the watcher needs is proved before the first file (exit 2 naming it otherwise)."""
        o = self.options
        self.inbox_check = check_folders(o.inbox, {"--out": o.out, "--archive": o.archive,
                                                   "--quarantine": o.quarantine}, self.log)
        self.excluded = [p for p in (o.out, o.archive, o.quarantine) if p is not None]
        self.mover = Mover(o.archive, o.quarantine, self.counters, self.log, o.inbox, o.empty_folder_seconds)

    # -- the loop -------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> Counters:
        lock = ResultsLock(self.options.out)
        lock.acquire()
        try:
            self._open_ledger()
            try:
                self._loop(stop)
            finally:
                self.ledger.close()
        finally:
            lock.release()
        return self.counters

    def _open_ledger(self) -> None:
        try:
            self.ledger = Ledger(self.options.out)
        except OSError as exc:
            raise EdgecxrError(f"cannot open results.jsonl ({exc.strerror or exc})", path=self.options.out,
                               fix="restore write access to the results folder (--out)") from exc
        for note in self.ledger.start_notes():
            self.log(note)
        self.counters.damaged_ledger_lines = len(self.ledger.damaged_lines)
        self.counters.processed = self.ledger.counts.get(OK, 0)
        self.counters.refused = self.ledger.counts.get(ERROR, 0)
        self.counters.out_of_scope = self.ledger.counts.get(OUT_OF_SCOPE, 0)
        self.counters.duplicates = self.ledger.counts.get(DUPLICATE, 0)

    def _loop(self, stop: threading.Event) -> None:
        o = self.options
        settler = Settler(o.settle_seconds)
        observer = None if o.once else self._observer()
        self._next_status = 0.0
        warned_links: set[str] = set()
        burst = False
        try:
            if not o.once:  # a service: reach the engine's batch working set now, not at the first burst
                seconds = warm_up(self.classifier, o.batch_size)
                self.log(f"engine ready in {seconds:.1f} s (a start-up run at batch sizes {o.batch_size} and 1)")
            with ThreadPoolExecutor(o.decode_threads, thread_name_prefix="decode") as pool:
                while not stop.is_set():
                    self.wake.clear()
                    if not self._inbox_ok():
                        self._idle(o.rescan_seconds, stop)
                        continue
                    found = scan(o.inbox, recursive=o.recursive, exclude=self.excluded, stop=stop)
                    if found.stopped:
                        break
                    self.mover.sweep()
                    for rel in set(found.outside_links) - warned_links:
                        self.log(f"not following {rel}: a symbolic link that leads outside the inbox")
                        warned_links.add(rel)
                    settler.forget_missing(set(found.files))
                    now, wall = time.monotonic(), time.time()
                    ready, waiting = [], 0
                    for entry in found.files.values():
                        if self.ledger.seen_unchanged(entry.rel, entry.identity):
                            self._move_done(entry)
                        elif self.deferred.get(entry.rel) == entry.identity:
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
                    if burst and not o.once:
                        self.trimmer.after_burst()  # give the burst's freed pages back to the system
                    burst = False
                    if o.once and waiting == 0:
                        self._once_summary(found.temporary)
                        break
                    if observer is not None and not observer.is_alive():
                        self.log("file-system observer stopped; restarting it (rescans continue meanwhile)")
                        observer = self._observer()
                    tick = min(0.25, max(o.settle_seconds / 4, 0.05)) if waiting else o.rescan_seconds
                    self._idle(tick, stop)
        finally:
            if observer is not None:
                observer.stop()
            self._final_status()
            for sink in self.sinks:
                self._guard(sink, sink.close)

    def _observer(self):
        o = self.options
        return start_observer(o.inbox, recursive=o.recursive, poll=o.poll, wake=self.wake, log=self.log)

    def _idle(self, seconds: float, stop: threading.Event) -> None:
        """Wait for an event or the rescan, writing the heartbeat every couple of seconds meanwhile."""
        deadline = time.monotonic() + seconds
        while not stop.is_set() and not self.wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.wake.wait(min(left, self.options.status_seconds))
            self._heartbeat()
            self.trimmer.tick()  # a burst that ended within 30 s of the last trim is trimmed now

    def _inbox_ok(self) -> bool:
        """A vanished, unreadable or unmounted inbox is an error in the log and status.json, not quiet."""
        problem = self.inbox_check.problem()
        if problem != self.counters.inbox_error:
            self.log(f"error: {problem}; waiting for it to come back" if problem else
                     f"the inbox {self.options.inbox} is readable again")
            self.counters.inbox_error = problem
            if problem:
                self.counters.last_error = problem
            self._next_status = 0.0  # show the change at once
        if problem and self.options.once:
            raise EdgecxrError(problem, path=self.options.inbox, fix="mount or create the inbox, then run again")
        return problem is None

    def _once_summary(self, temporary: int) -> None:
        if self.deferred:
            self.log(f"{len(self.deferred)} file(s) left unread until a missing library is installed "
                     "(see the messages above); they have no result line yet")
        if temporary:
            self.log(f"{temporary} file(s) with temporary names left waiting for a rename")

    # -- one burst --------------------------------------------------------------------------
    def _process(self, entries: list[Entry], pool: ThreadPoolExecutor, stop: threading.Event) -> None:
        """Chunks flow through the engine one behind the other: chunk k is decoded while k-1
        infers, and handed to the engine before k-1's results are recorded and its files
        moved, so the engine's streams have work while the watcher writes."""
        o = self.options
        spec = self.classifier.bundle.spec
        chunks = [entries[i:i + o.batch_size] for i in range(0, len(entries), o.batch_size)]
        gate = self.classifier.gate
        submitted = [pool.submit(prepare, e.path, spec, o.limits, gate) for e in chunks[0]]
        in_flight: Flight | None = None
        for k, chunk in enumerate(chunks):
            prepared = [f.result() for f in submitted]
            if k + 1 < len(chunks) and not stop.is_set():  # decode the next chunk while the engine works
                submitted = [pool.submit(prepare, e.path, spec, o.limits, gate) for e in chunks[k + 1]]
            started = self._start(chunk, prepared)
            if in_flight is not None:
                self._finish(in_flight, backlog=sum(len(c) for c in chunks[k:]))
            in_flight = started
            if stop.is_set():
                break
        if in_flight is not None:
            self._finish(in_flight, backlog=sum(len(c) for c in chunks[k + 1:]))

    def _start(self, chunk: list[Entry], prepared: list[Prepared]) -> Flight:
        """Refusals for this chunk, and its readable images handed to the engine."""
        flight = Flight()
        for entry, item in zip(chunk, prepared):
            if not self._still_current(entry, item):
                continue
            if item.refusal is not None:  # the gate's tags or pixels stage: not for this model
                flight.done.append((entry, out_of_scope_record(self.classifier, entry, item, item.refusal), item))
                continue
            if item.error is None:
                flight.batch.append((entry, item))
                continue
            record = refusal_record(self.classifier, entry, item)
            flight.done.append((entry, record, item))
            self.counters.refused += 1
            self.counters.last_error = f"{entry.rel}: {item.error.code}"
            if item.error.code == INTERNAL_ERROR:
                self.log(f"refused {entry.rel} on an unexpected error (internal_error):\n{item.traceback}")
        if flight.batch:
            # prepare() sets the tensor whenever it sets no error
            tensors = np.stack([item.tensor for _, item in flight.batch])  # type: ignore[misc]
            flight.collect = self._engine(self.classifier.submit, tensors)
        return flight

    def _finish(self, flight: Flight, backlog: int) -> None:
        """Wait for the chunk's results, make its lines durable, then feed the sinks and move the files."""
        if flight.collect is not None:
            probs, judged, infer_ms = self._engine(flight.collect)
            for (entry, item), p, (score, refusal) in zip(flight.batch, probs, judged):
                if refusal is not None:  # the learned stage: unlike the images the model was made for
                    flight.done.append((entry, out_of_scope_record(self.classifier, entry, item, refusal), item))
                    continue
                record = classified_record(self.classifier, entry, item, p, infer_ms, len(flight.batch), score)
                flight.done.append((entry, record, item))
                self.counters.processed += 1
        records = [record for _, record, _ in flight.done]
        self._append(records)  # durable: from here on these inputs are done
        self.counters.backlog = backlog
        if self.on_result is not None:
            for record in records:
                self.on_result(record)
        self._feed_sinks(flight.done)
        for entry, record, _ in flight.done:
            self.mover.move(entry.path, entry.rel, record["status"], record["sha256"])
        self._heartbeat()  # a long backlog still refreshes status.json every few seconds

    def _append(self, records: list[dict]) -> None:
        try:
            self.ledger.append(records)
        except OSError as exc:  # full disk, read-only remount: stop rather than classify without recording
            raise EdgecxrError(f"cannot write results.jsonl ({exc.strerror or exc}); stopping so that no result "
                               "is lost", path=self.options.out, fix="free space or restore write access to the "
                               "results folder; files not yet recorded are processed on the next start") from exc

    def _feed_sinks(self, done: list[tuple[Entry, dict, Prepared]]) -> None:
        for _, record, _ in done:
            self.counters.observe(record)  # by reason and inference time, for status.json and /metrics
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

    def _still_current(self, entry: Entry, item: Prepared) -> bool:
        """False for a file gone, still being written, already recorded, unreadable on this box yet,
        or judged before under another name (its "duplicate" line is written here)."""
        try:
            st = entry.path.stat()
        except OSError:
            return False  # gone (moved away by someone else): nothing to record
        if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
            return False  # still being written: it will settle again and come back
        if item.sha256 and self.ledger.has_version(entry.rel, item.sha256):
            self.ledger.remember_stat(entry.rel, entry.identity, item.sha256)
            return False  # same content as a version already recorded
        if item.error is not None and item.error.code == MISSING_DEPENDENCY:
            if entry.rel not in self.deferred:
                self.log(f"cannot read {entry.rel} yet: {item.error}")
            self.deferred[entry.rel] = entry.identity
            self.counters.last_error = f"{entry.rel}: {item.error.cause}"
            return False
        return not self._duplicate(entry, item)

    def _duplicate(self, entry: Entry, item: Prepared) -> bool:
        """An image judged before (resent, or archived and copied back) gets one "duplicate" line here."""
        uid = item.meta.get("SOPInstanceUID")
        earlier = self.ledger.earlier(item.sha256, uid)
        if earlier is None:
            if item.error is None:
                self.ledger.reserve(item.sha256, uid, entry.rel)  # a copy later in this burst is its duplicate
            return False
        record = duplicate_record(self.classifier, entry, item, earlier)
        self._append([record])
        self.counters.duplicates += 1
        if self.on_result is not None:
            self.on_result(record)
        self.mover.move(entry.path, entry.rel, record["status"], record["sha256"])
        return True

    def _engine(self, call: Callable, *args):
        try:
            return call(*args)
        except Exception as exc:  # the engine itself failed: every later file would fail the same way
            raise EdgecxrError(f"the inference engine {self.classifier.artifact.name} failed "
                               f"({type(exc).__name__}: {exc})", path=self.classifier.artifact.path,
                               fix="check the bundle and the device (edgecxr info, edgecxr parity-check); "
                                   "unrecorded files are processed on the next start") from exc

    # -- after the line is durable ---------------------------------------------------------
    def _move_done(self, entry: Entry) -> None:
        """A recorded file still in the inbox (e.g. a crash between line and move): move it now."""
        sha, status = self.ledger.recorded(entry.rel)
        self.mover.move(entry.path, entry.rel, status, sha)

    def _heartbeat(self, force: bool = False) -> None:
        if force or time.monotonic() >= self._next_status:
            self.write_status("running")
            self._next_status = time.monotonic() + self.options.status_seconds

    def write_status(self, state: str) -> None:
        payload = status_payload(state, self.counters, self.classifier, self.options.inbox, self.started,
                                 self.options.status_seconds)
        for sink in self.sinks:  # a sink with a status() (drift, sending) adds its figures under its status_key
            key, report = getattr(sink, "status_key", None), getattr(sink, "status", None)
            if isinstance(key, str) and callable(report) and key not in payload:
                try:
                    payload[key] = report()
                except Exception as exc:  # a sink's report must not stop the heartbeat
                    payload[key] = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            atomic_write_json(self.options.out / STATUS, payload)
        except OSError as exc:
            raise EdgecxrError(f"cannot write {STATUS} ({exc.strerror or exc})", path=self.options.out,
                               fix="free space or restore write access to the results folder") from exc

    def _final_status(self) -> None:
        try:
            self.write_status("stopped")
        except EdgecxrError as exc:  # already stopping: do not hide the error that stopped it
            self.log(f"could not write the final status: {exc}")
