"""Holding the watcher's memory flat over months: reach the working set at start, give freed pages back.

Two effects made a long-lived watcher's RSS climb in the soak (docs/bench.md): the engine and the
decoders allocate their batch-sized working set only when the first full batch arrives, and glibc
keeps the pages that a burst freed (per thread arena) instead of returning them. So the watcher
runs one full batch of zeros before it scans, and asks glibc to trim after each burst. Both are
no-ops where they do not apply (another libc, `--once`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

import numpy as np

TRIM_EVERY_S = 30.0  # at most one trim per this many seconds, so a steady trickle does not pay for it


def warm_up(submit: Callable, batch_size: int, height: int, width: int) -> float:
    """Run one full batch of zeros through the engine (and the gate's features); returns its seconds.
    The result is thrown away: it only allocates the engine's working set before the first image."""
    started = time.perf_counter()
    submit(np.zeros((batch_size, 3, height, width), np.float32))()
    return time.perf_counter() - started


class Trimmer:
    """glibc's malloc_trim(0) after a burst, rate-limited; nothing on a libc without it."""

    def __init__(self, every_s: float = TRIM_EVERY_S):
        self.every_s = every_s
        self._last = float("-inf")
        self._trim = _malloc_trim()

    @property
    def available(self) -> bool:
        return self._trim is not None

    def after_burst(self) -> bool:
        now = time.monotonic()
        if self._trim is None or now - self._last < self.every_s:
            return False
        self._last = now
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
