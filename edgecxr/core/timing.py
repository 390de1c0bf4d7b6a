"""Wall-time measurement shared by `bench` and the export's latency record (a core piece, so that
exporters need not import bench: shared/architecture.md forbids that arrow)."""

from __future__ import annotations

import time

import numpy as np


def median_ms(call, runs: int) -> float:
    """Median wall time of `call()` in milliseconds, after one untimed call."""
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))
