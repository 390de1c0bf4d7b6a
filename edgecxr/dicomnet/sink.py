"""`watch --send-sr`: the result sink that turns DICOM results into SR (and SC) objects for each PACS.

accept() only keeps what the result needs, durably: a hard link to the input (which the
watcher archives right after) and the result line, in OUT/outbox/queue. A builder thread
makes the objects and a sender thread per destination delivers them, so neither a slow
build nor an unreachable PACS ever holds up classification. On start, results recorded
after sending was switched on but never queued (the watcher killed between writing the
line and queueing) are queued again from the inbox, where such an input still lies.
Both threads run under a Supervisor (a full disk restarts them, it does not end them), and
status() reports their liveness, the queue depth and the oldest waiting item's age.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from edgecxr.core.data.fingerprint import sha256_file
from edgecxr.core.optional import require
from edgecxr.core.results import OK, iter_results
from edgecxr.dicomnet.destination import Destination
from edgecxr.dicomnet.finding import finding_from_record
from edgecxr.dicomnet.identity import stamp_dataset
from edgecxr.dicomnet.outbox import DestinationBox, Outbox, since_sending_began
from edgecxr.dicomnet.retention import Retention, Rotator
from edgecxr.dicomnet.sender import SenderThread, SendOptions
from edgecxr.dicomnet.sr import Algorithm, build_sr, sr_uid
from edgecxr.dicomnet.supervise import Supervisor


class DicomSendSink:
    status_key = "sending"  # the watcher's status.json carries status() under this key (and /metrics reads it)

    def __init__(self, out: Path, inbox: Path, destinations: list[Destination], manifest: dict, *,
                 send_sc: bool = False, options: SendOptions | None = None,
                 log: Callable[[str], None] = print, drain_seconds: float = 10.0,
                 retention: Retention | None = None):
        for module in ("pydicom", "highdicom", "pynetdicom"):
            require(module, "sending results to a PACS (--send-sr)")  # refuse at start, not per result
        self.manifest, self.send_sc, self.log, self.drain_seconds = manifest, send_sc, log, drain_seconds
        results = partial(iter_results, out)  # streamed: a year of results is never held here
        self.outbox = Outbox(out, destinations, results)
        self._recover(since_sending_began(self.outbox.since, results), inbox)
        self.rotator = Rotator(self.outbox, retention or Retention(), log)
        self.rotator.maybe()  # after recovery: the horizon it may set must not hide a result not yet queued
        self.stop, self.wake = threading.Event(), threading.Event()
        self.senders = [SenderThread(box, options or SendOptions(), log) for box in self.outbox.boxes]
        self.build_supervisor = Supervisor("SR builder", self.stop, log)
        self.builder = threading.Thread(target=self.build_supervisor.run, args=(self._build_loop,), name="build-sr",
                                        daemon=True)
        for thread in (self.builder, *self.senders):
            thread.start()

    # -- the ResultSink interface -------------------------------------------------------
    def accept(self, record: dict, item: object | None, source: Path) -> None:
        """runtime.sinks.ResultSink's: `item` (the prepared input) is not needed, the result line and
        the source file are, so dicomnet never imports the loop."""
        uid = self._job_uid(record)
        if uid is None or self.outbox.known(uid):
            return
        self.outbox.enqueue(uid, record, source)
        self.wake.set()

    def close(self) -> None:
        """Give queued work a short while to go out (e.g. after `watch --once`); the rest stays queued."""
        deadline = time.monotonic() + self.drain_seconds
        self.wake.set()
        while time.monotonic() < deadline and self._work_left():
            time.sleep(0.1)
        self.stop.set()
        self.wake.set()
        for sender in self.senders:
            sender.stop.set()
            sender.wake.set()
        for thread in (self.builder, *self.senders):
            thread.join(timeout=max(1.0, deadline - time.monotonic()))
        commit = self.senders[0].options.commit if self.senders else None
        if commit is not None:  # what still awaits commitment is asked for again after the restart
            commit.receiver.stop()

    def status(self) -> dict:
        """Objects sent, pending and failed per PACS, the oldest pending object's age, and whether the
        builder and senders are running, for the heartbeat: counted from what the sender threads keep
        in memory and the pending/failed folders (small), never by reading sent.jsonl."""
        queued = self.outbox.queued()
        ages = [a for a in map(DestinationBox.age_of, queued) if a is not None]  # the queue is small: built in seconds
        return {"queued": len(queued), "oldest_queued_s": round(max(ages), 1) if ages else None,
                "workers": [self._worker(self.builder, self.build_supervisor),
                            *(self._worker(s, s.supervisor) for s in self.senders)],
                "destinations": [
                    {"destination": str(box.destination), "sent": box.sent_total, "pending": len(box.pending()),
                     "awaiting_commitment": len(box.awaiting()), "committed": box.committed,
                     "failed": sum(1 for _ in box.failed_dir.glob("*.dcm")),
                     "oldest_pending_s": box.oldest_pending_s()} for box in self.outbox.boxes]}

    @staticmethod
    def _worker(thread: threading.Thread, supervisor: Supervisor) -> dict:
        return {**supervisor.status(), "alive": thread.is_alive() and not supervisor.gave_up}

    # -- building -------------------------------------------------------------------------
    @staticmethod
    def _job_uid(record: dict) -> str | None:
        """The SR's UID for a DICOM result; None for refusals and for PNG/JPEG inputs (no study to join)."""
        dicom = record.get("dicom") or {}
        if record.get("status") != OK or not dicom.get("SOPInstanceUID") or not dicom.get("StudyInstanceUID"):
            return None
        return sr_uid(dicom["SOPInstanceUID"], record.get("bundle_checksum", ""))

    def _work_left(self) -> bool:
        if self.outbox.queued():
            return self.builder.is_alive()
        return any((s.box.pending() or (s.commit and s.box.awaiting())) and not s.failing and s.is_alive()
                   for s in self.senders)

    def _build_loop(self) -> None:
        while not self.stop.is_set():
            self.wake.clear()
            self.rotator.maybe()
            jobs = self.outbox.queued()
            for job in jobs:
                self._build(job)
            if not jobs:
                self.wake.wait(5.0)

    def _build(self, job: Path) -> None:
        from edgecxr.core.warning_log import reading

        try:
            with reading(f"SR {job.stem}", self.log):  # highdicom and pydicom quote patient values in warnings
                objects = self._objects(json.loads(job.read_text())["record"], job.with_suffix(".dcm"))
        except Exception as exc:  # a damaged header or an odd value must not stop the node
            self.outbox.refuse(job, f"{type(exc).__name__}: {exc}")
            self.log(f"no SR for {job.stem}: {type(exc).__name__}: {exc} (kept in outbox/unbuildable)")
            return
        for box, sender in zip(self.outbox.boxes, self.senders):
            if any([box.add(uid, data) for uid, data in objects]):
                sender.wake.set()
        self.outbox.drop(job)

    def _objects(self, record: dict, source_path: Path) -> list[tuple[str, bytes]]:
        from pydicom import dcmread

        source = dcmread(source_path, stop_before_pixels=not self.send_sc)
        finding, algorithm = finding_from_record(record, self.manifest), Algorithm.from_record(record)
        built = [build_sr(source, finding, algorithm, log=self._header_log(source_path))]
        if self.send_sc:
            from edgecxr.core.data.dicom import decode_dicom
            from edgecxr.dicomnet.sc import build_sc

            # the watcher accepted this input under --max-pixels already: no second, different limit here
            pixels = decode_dicom(source_path.read_bytes(), str(source_path), max_pixels=10**9).pixels
            built.append(build_sc(source, pixels, finding, algorithm))  # its header was checked and logged once
        return [(str(ds.SOPInstanceUID), _encode(ds)) for ds in built]

    def _header_log(self, source_path: Path) -> Callable[[str], None]:
        """Says which input an attribute came from (its outbox job name: the SR's UID), never its value."""
        return lambda message: self.log(f"SR {source_path.stem}: {message}")

    # -- crash recovery -------------------------------------------------------------------
    def _recover(self, records: Iterable[dict], inbox: Path) -> None:
        recovered = 0
        for record in records:
            uid = self._job_uid(record)
            if uid is None or self.outbox.known(uid):
                continue
            source = inbox / record["path"]
            if source.is_file() and sha256_file(source) == record.get("sha256"):
                self.outbox.enqueue(uid, record, source)
                recovered += 1
        if recovered:
            self.log(f"queued {recovered} result(s) for sending that were recorded but not queued "
                     "(the watcher stopped in between)")


def _encode(ds) -> bytes:
    buffer = io.BytesIO()
    stamp_dataset(ds)  # edgecxr, not pydicom, as the file's writer
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
