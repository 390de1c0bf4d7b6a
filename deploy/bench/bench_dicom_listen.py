"""DICOM receive benchmark for this machine: instances/s into the inbox, against dcmtk's storescp.

    python deploy/bench/bench_dicom_listen.py [--count 300] [--rounds 3]

A benchmark, not a test: dcmtk's `storescu` sends COUNT small DX instances (copies of the
bundled samples with fresh UIDs, 10-100 kB) over one association on 127.0.0.1, first to
`edgecxr dicom-listen`, then to dcmtk's own `storescp` (C++, no fsync) writing to a folder;
it prints the median instances/s and MB/s of each and their ratio. edgecxr's listener
fsyncs every instance and its folder before answering, which the reference does not.
See docs/dicom-conformance.md for the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from edgecxr.samples import SAMPLE_DIR


def make_instances(folder: Path, count: int) -> list[Path]:
    sources = sorted(SAMPLE_DIR.glob("*.dcm"))
    paths = []
    for i in range(count):
        ds = pydicom.dcmread(sources[i % len(sources)])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = generate_uid() if i % 10 == 0 else ds.StudyInstanceUID
        path = folder / f"{i:05d}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")


def send(port: int, files: list[Path]) -> float:
    start = time.perf_counter()
    sent = subprocess.run(["storescu", "-aec", "EDGECXR", "-xy", "127.0.0.1", str(port), *map(str, files)],
                          capture_output=True, text=True, timeout=600)
    if sent.returncode != 0:
        raise RuntimeError(f"storescu failed: {sent.stderr[-2000:]}")
    return time.perf_counter() - start


def one_round(kind: str, files: list[Path], work: Path) -> float:
    inbox = work / f"{kind}-inbox"
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir()
    port = free_port()
    if kind == "edgecxr":
        command = [sys.executable, "-m", "edgecxr", "dicom-listen", "--inbox", str(inbox), "--port", str(port),
                   "--host", "127.0.0.1", "--min-free-mb", "10", "--allow-any-ae"]
    else:
        command = ["storescp", "+xa", "--aetitle", "EDGECXR", "--output-directory", str(inbox), str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        seconds = send(port, files)
    finally:
        server.terminate()
        server.wait(timeout=30)
    received = sum(1 for p in inbox.rglob("*") if p.is_file())
    if received != len(files):
        raise RuntimeError(f"{kind}: {received} of {len(files)} instances arrived")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "send").mkdir()
        files = make_instances(work / "send", args.count)
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        rows = {}
        for kind in ("edgecxr", "storescp"):
            seconds = statistics.median(one_round(kind, files, work) for _ in range(args.rounds))
            rows[kind] = {"instances_per_s": round(args.count / seconds, 1), "mb_per_s": round(megabytes / seconds, 2),
                          "median_s": round(seconds, 3)}
    ratio = rows["edgecxr"]["instances_per_s"] / rows["storescp"]["instances_per_s"]
    print(json.dumps({"count": args.count, "megabytes": round(megabytes, 1), **rows,
                      "ratio_edgecxr_to_storescp": round(ratio, 2)}, indent=2))


if __name__ == "__main__":
    main()
