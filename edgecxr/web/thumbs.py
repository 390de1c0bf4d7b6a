"""Thumbnails for the status page, made from the model input the watcher already holds.

A result sink (edgecxr/runtime/sinks.py): the watcher hands it each new record with its
prepared tensor; the PNG is encoded on this sink's own thread so classification never waits
for it. The picture is what the model saw (`spec.to_image`), never a DICOM header field, and
it is named by the input's sha256, so the same content has one thumbnail.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

from edgecxr.web.feed import THUMBS

SIDE = 96  # pixels: a row of the page shows it at 48 CSS px, sharp on a 2x screen


class ThumbnailSink:
    def __init__(self, out: Path, spec, log=print, backlog: int = 64):
        self.folder = out / THUMBS
        self.folder.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.log = log
        self.skipped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=backlog)
        self._thread = threading.Thread(target=self._work, name="thumbnails", daemon=True)
        self._thread.start()

    def accept(self, record: dict, item, source: Path) -> None:
        sha = record.get("sha256")
        if record.get("status") != "ok" or item is None or item.tensor is None or not sha:
            return  # a refused file has no model input to show
        try:
            self._queue.put_nowait((sha, item.tensor))
        except queue.Full:  # a burst faster than PNG encoding: the row shows no picture, nothing else is lost
            self.skipped += 1

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        if self.skipped:
            self.log(f"status page: {self.skipped} thumbnail(s) skipped during bursts")

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            sha, tensor = job
            target = self.folder / f"{sha}.png"
            if target.exists():
                continue
            try:
                self._write(tensor, target)
            except Exception as exc:  # a thumbnail must never stop the page or the watcher
                self.log(f"status page: thumbnail {target.name} not written: {type(exc).__name__}: {exc}")

    def _write(self, tensor, target: Path) -> None:
        image = self.spec.to_image(tensor).convert("L")
        image.thumbnail((SIDE, SIDE))
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        image.save(partial, format="PNG", optimize=False)
        os.replace(partial, target)
