"""RSS of a real `edgecxr watch --archive` (no PACS) after each of BURSTS bursts of 30 distinct images.

    python deploy/bench/burst_rss.py --bursts 12 [--env MALLOC_MMAP_THRESHOLD_=1048576] [--out /tmp/burst-rss]

Separates the watcher's own memory under bursts from the SR path's (the soak sends SRs to a PACS;
this does not). The watcher runs with the systemd unit's Environment= lines plus any --env; each
burst is written at once (distinct copies of the bundled samples, as the soak writes them), the
script waits for the inbox to empty (at most 120 s) and 3 s more, then samples VmRSS. Prints the
series; run two variants side by side to compare them within one run.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from soak import Feeder
from soak_peers import UNIT_ENVIRONMENT, edgecxr_command, proc_sample


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=12)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE added to the watcher's environment")
    parser.add_argument("--out", type=Path, default=Path("/tmp/burst-rss"), help="work folder (emptied first)")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    inbox = args.out / "inbox"
    inbox.mkdir(parents=True)
    env = {**os.environ, **UNIT_ENVIRONMENT, **dict(item.split("=", 1) for item in args.env)}
    with open(args.out / "watcher.log", "wb") as log:
        watcher = subprocess.Popen([*edgecxr_command(), "watch", str(inbox), "--out", str(args.out / "out"),
                                    "--backend", "onnxruntime", "--archive", str(args.out / "archive"), "--quiet"],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        feeder = Feeder(inbox, random.Random(5))
        time.sleep(8)
        series = [proc_sample(watcher.pid)["rss_mb"]]
        for burst in range(args.bursts):
            for _ in range(30):
                feeder.image()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and _files_left(inbox):
                time.sleep(1)
            time.sleep(3)
            series.append(proc_sample(watcher.pid)["rss_mb"])
            print(f"burst {burst + 1}: rss {series[-1]} MB", flush=True)
        print(f"env {args.env or 'unit only'}: rss after start and each burst (MB): {series}")
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(30)
    return 0


def _files_left(inbox: Path) -> bool:
    """Any file still in the inbox; os.walk skips the folders the watcher removes meanwhile."""
    return any(files for _, _, files in os.walk(inbox))


if __name__ == "__main__":
    sys.exit(main())
