"""Start-up time of the watcher's ledger with a year of results (issue 22: <= 2 s for 100,000 lines).

    python deploy/bench/bench_ledger_start.py [--lines 100000] [--dir /tmp/ledger-bench]

Writes LINES result lines shaped like real ones (every other one a DICOM with its identifiers,
all completed today), then times opening the ledger the way `edgecxr watch` does at start, once
without the saved index (OUT/.results-index.npz: every line parsed) and three times with it, and
prints the time and the memory the index took (Python allocations, tracemalloc).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
import tracemalloc
from pathlib import Path

from edgecxr.core.provenance import utc_now
from edgecxr.core.results import RESULTS
from edgecxr.runtime.ledger import Ledger
from edgecxr.runtime.ledger_index import INDEX


def line(i: int, now: str) -> dict:
    sha = hashlib.sha256(str(i).encode()).hexdigest()
    record = {"schema": "edgecxr.result/1", "path": f"study{i // 50}/series1/IMG{i:06d}", "size": 6_000_000 + i,
              "sha256": sha, "mtime_ns": 1796646512495209282 + i, "inode": 2156009 + i,
              "ctime_ns": 1796646512495209282 + i, "status": "ok", "bundle": "reference-micro-128",
              "bundle_checksum": "52bad1a19b4cbc7065e6e74ae7e965eec8fcffd62acc9b6239348579c2ef9e2d",
              "backend": "onnxruntime", "precision": "int8", "artifact": "onnxruntime-int8",
              "modified_at": now, "completed_at": now, "label": "PNEUMONIA", "positive_class": "PNEUMONIA",
              "p_positive": 0.520962, "decision": "argmax (P(PNEUMONIA) > 0.500)",
              "probabilities": {"NORMAL": 0.479038, "PNEUMONIA": 0.520962},
              "timings_ms": {"decode": 25.78, "preprocess": 0.28, "inference": 7.71, "batch_inference": 7.71,
                             "batch_size": 1}, "gate": {"score": 0.200461, "threshold": 1.000327}}
    if i % 2:
        root = "1.2.826.0.1.3680043.8.498"
        record["dicom"] = {"StudyInstanceUID": f"{root}.1.{i // 50}", "SeriesInstanceUID": f"{root}.2.{i // 50}",
                           "SOPInstanceUID": f"{root}.3.{i}", "AccessionNumber": f"A{i // 50:08d}", "Modality": "CR"}
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/ledger-bench"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    path, now = args.dir / RESULTS, utc_now()
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(args.lines):
            handle.write(json.dumps(line(i, now), separators=(",", ":")) + "\n")
    (args.dir / INDEX).unlink(missing_ok=True)
    t0 = time.perf_counter()
    Ledger(args.dir).close()  # no saved index yet: every line parsed (the first start after an upgrade)
    first = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        Ledger(args.dir).close()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    ledger = Ledger(args.dir)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    found = ledger.earlier(hashlib.sha256(b"7").hexdigest(), None)
    ledger.close()
    print(f"{args.lines} lines, {path.stat().st_size / 1e6:.1f} MB; ledger start with the saved index "
          f"{min(times):.2f} s (best of 3; {', '.join(f'{t:.2f}' for t in times)}), without it {first:.2f} s; "
          f"index held {held / 1e6:.1f} MB; "
          f"lookup finds {found['path'] if found else None}; {platform.processor() or platform.machine()}")


if __name__ == "__main__":
    main()
