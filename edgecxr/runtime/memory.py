"""Holding the watcher's memory flat over months: reach the working set at start, give freed pages back.

Two effects made a long-lived watcher's RSS climb in the soak (docs/bench.md): the engine and the
allocates its batch-sized working set only when the first full batch arrives, and glibc keeps the
pages that a burst freed (per thread arena) instead of returning them. So the watcher runs a full
batch of zeros before it scans, and asks glibc to trim after each burst. Both are
no-ops where they do not apply (another libc, `--once`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from typing import TYPE_CHECKING

import numpy as np

from edgecxr.core.errors import EdgecxrError

if TYPE_CHECKING:
    from edgecxr.runtime.classifier import Classifier

TRIM_EVERY_S = 30.0  # at most one trim per this many seconds, so a steady trickle does not pay for it


def warm_up(classifier: Classifier, batch_size: int) -> float:
    """Run a full batch of zeros, then one image, through the engine (and the gate's features); returns the
    seconds. The results are thrown away: no line, counter, drift window or metric sees them. A full batch
    allocates the engine's working set before the first burst; one image prepares the shape of the
    trickle (engines that compile per shape: OpenVINO, TensorRT)."""
    spec, artifact = classifier.bundle.spec, classifier.artifact
    started = time.perf_counter()
    try:
        for n in dict.fromkeys((batch_size, 1)):
            classifier.submit(np.zeros((n, 3, spec.height, spec.width), np.float32))()
    except Exception as exc:  # the engine itself: every file would fail the same way
        raise EdgecxrError(f"the inference engine {artifact.name} failed its start-up run on {batch_size} blank "
                           f"images ({type(exc).__name__}: {exc}); no file was read", path=artifact.path,
                           fix="check the bundle and the device (edgecxr info, edgecxr parity-check), or choose "
                               "another engine with --backend") from exc
    return time.perf_counter() - started


class Trimmer:
    """glibc's malloc_trim(0) after a burst, at most once per `every_s`: a burst that ends sooner is trimmed
    when the time comes (`tick`, from the idle loop), not skipped. Nothing on a libc without it."""

    def __init__(self, every_s: float = TRIM_EVERY_S):
        self.every_s = every_s
        self._last = float("-inf")
        self._due = False
        self._trim = _malloc_trim()

    @property
    def available(self) -> bool:
        return self._trim is not None

    def after_burst(self) -> bool:
        self._due = True
        return self.tick()

    def tick(self) -> bool:
        """Trim now if a burst is waiting for it and the last trim is old enough; True when it trimmed."""
        now = time.monotonic()
        if not self._due or self._trim is None or now - self._last < self.every_s:
            return False
        self._due, self._last = False, now
        self._trim(0)
        return True


def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):  # musl, macOS: no malloc_trim
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim
