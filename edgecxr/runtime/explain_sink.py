"""The watcher's explanation sink: an occlusion map for each classified image, made on its own
thread after the result line is durable, so a map never delays a result.

Maps go to OUT/maps/<sha256>.png (the overlay) with <sha256>.json beside it (the numbers, or
the reason there is no map); the status page finds them by the hash in results.jsonl. The queue
is bounded: when maps fall behind a burst, the newest images go without one (logged and
counted) rather than holding classification back or growing without limit.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecxr.backends.base import Runner
from edgecxr.core.fsutil import atomic_write_json
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.core.provenance import utc_now
from edgecxr.core.results import MAPS
from edgecxr.explain.occlusion import DEFAULT_GRID, FLAT_INPUT, FLAT_MAP, MIN_MAP_RANGE, Grid, occlusion_map
from edgecxr.explain.overlay import SCALE_POINTS, save_overlay
from edgecxr.runtime.prepare import Prepared

EXPLAIN_SCHEMA = "edgecxr.explain/1"
IDLE_POLL = 0.05  # seconds between looks at `busy` while maps wait for a burst to end
MAP_SECONDS = 60.0  # the longest close() waits for the map in hand once the queue is given up
REASONS = {
    FLAT_INPUT: "the image has almost no contrast: there is nothing to localise",
    FLAT_MAP: f"covering any part of the image moves P(label) by under {100 * MIN_MAP_RANGE:.0f} points: "
              "no region stands out",
}


class ExplainSink:
    """Takes the runner (a second session of the deployed engine) and closes it when done.

    `busy` (e.g. "the watcher has a backlog") holds maps back while it is true, so on a small box
    a burst is classified at full speed and its maps follow; the bounded queue drops the rest.
    """

    def __init__(self, runner: Runner, spec: PreprocessSpec, out: Path, class_names: list[str], engine: str, *,
                 grid: Grid = DEFAULT_GRID, queue_size: int = 32, drain_seconds: float = 120.0,
                 log: Callable[[str], None] = print, busy: Callable[[], bool] | None = None, temperature: float = 1.0):
        self.runner, self.spec, self.class_names, self.engine = runner, spec, list(class_names), engine
        self.folder = Path(out) / MAPS
        self.grid, self.drain_seconds, self.log = grid, drain_seconds, log
        self.temperature = temperature  # the bundle's: p_explained is the calibrated P the result carries
        self.busy = busy or (lambda: False)
        self.closing = threading.Event()
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.counts: Counter = Counter()
        self.thread = threading.Thread(target=self._work, name="explain", daemon=True)
        self.thread.start()

    # -- the watcher's side: never blocks ----------------------------------------------------
    def accept(self, record: dict, item: Prepared | None, source: Path) -> None:
        if record.get("status") != "ok" or item is None or item.tensor is None:
            return
        if (self.folder / f"{record['sha256']}.json").is_file():
            return  # this content was explained before (a re-sent image)
        try:
            self.queue.put_nowait((record["sha256"], record["path"], record["label"], self._explained(record),
                                   item.tensor))
        except queue.Full:
            self.counts["dropped"] += 1
            self.log(f"explain: {self.queue.maxsize} maps already waiting; no map for {record['path']} "
                     f"({self.counts['dropped']} dropped so far)")

    def _explained(self, record: dict) -> str:
        """The label's class; for UNCERTAIN the positive class, whose probability the band is about."""
        return record["label"] if record["label"] in self.class_names else record["positive_class"]

    def close(self) -> None:
        """Finish the queued maps for up to `drain_seconds`, then stop; what is left is logged, not lost silently."""
        self.closing.set()  # the watcher has stopped: no more waiting for it to be idle
        deadline = time.monotonic() + self.drain_seconds
        with self.queue.all_tasks_done:
            while self.queue.unfinished_tasks and (left := deadline - time.monotonic()) > 0:
                self.queue.all_tasks_done.wait(left)
        left_over = 0
        while True:
            try:
                self.queue.get_nowait()
                self.queue.task_done()
                left_over += 1
            except queue.Empty:
                break
        self.queue.put(None)
        self.thread.join(MAP_SECONDS)  # the map in hand, at most
        if self.thread.is_alive():
            self.log(f"explain: a map still running after {MAP_SECONDS} s; leaving it")
        else:
            self.runner.close()
        self.counts["unfinished"] += left_over
        self.log(self.summary())

    def summary(self) -> str:
        c = self.counts
        return (f"explain: {c['maps']} map(s) written, {c['no_map']} without a map (reason in maps/*.json), "
                f"{c['dropped']} dropped (queue full), {c['unfinished']} unfinished at stop, {c['failed']} failed")

    # -- the worker ----------------------------------------------------------------------------
    def _work(self) -> None:
        _yield_cpu()
        while (job := self.queue.get()) is not None:
            while self.busy() and not self.closing.wait(IDLE_POLL):
                pass  # classification first
            try:
                self._explain(*job)
            except Exception as exc:  # one bad map must not end the maps for every later image
                self.counts["failed"] += 1
                self.log(f"explain: no map for {job[1]}: {type(exc).__name__}: {exc}")
            finally:
                self.queue.task_done()

    def _explain(self, sha256: str, path: str, label: str, explained: str, tensor: np.ndarray) -> None:
        found = occlusion_map(self.runner.infer, tensor, target=self.class_names.index(explained), grid=self.grid,
                              temperature=self.temperature)
        _, height, width = tensor.shape
        meta = {
            "schema": EXPLAIN_SCHEMA, "sha256": sha256, "path": path, "label": label, "explained": explained,
            "p_explained": round(found.p_target, 6), "engine": self.engine, "method": "occlusion",
            "grid": {"patch": self.grid.patch, "stride": self.grid.stride, **self.grid.describe(height, width)},
            "fill": "the image's mean", "scale": {"unit": "fall in P(label), points", "full_colour_at": SCALE_POINTS},
            "max_fall": round(float(found.falls.max()), 4),
            "falls": np.round(found.falls, 4).tolist(),
            "map": None, "reason": found.reason, "reason_text": REASONS.get(found.reason or ""),
            "ms": round(found.ms, 1), "created": utc_now(),
        }
        if found.reason is None:
            save_overlay(self.spec.to_image(tensor), found.heat, self.folder / f"{sha256}.png")
            meta["map"] = f"{sha256}.png"
            self.counts["maps"] += 1
        else:
            self.counts["no_map"] += 1
        atomic_write_json(self.folder / f"{sha256}.json", meta)


def _yield_cpu() -> None:
    """Lower this thread's priority (Linux: per thread), so classification keeps the cores first."""
    with contextlib.suppress(AttributeError, OSError):  # elsewhere the bounded queue alone keeps results first
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
