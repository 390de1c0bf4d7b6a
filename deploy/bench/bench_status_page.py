"""Does an open status page slow classification? Burst throughput of `watch --once` with
`--http` and pages polling it, against the same burst without the page.

    python deploy/bench/bench_status_page.py [BUNDLE] [--images DIR] [--burst 240] [--rounds 5] [--pages 1]

Each round runs both modes back to back (order alternating) on a fresh inbox; the pages are a
separate process that requests exactly what the page's script does (status, new results,
the thumbnails of the rows in view: the newest VISIBLE, as the page's lazy loading does) every
POLL_SECONDS, like a browser on another computer in the room.
Prints the median images/s of each mode and their ratio (goal: at least 0.95).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_runtime import _classifier, _fill  # this folder: the runtime benchmark's inbox and engine

from edgecxr.core.data.decode import SUPPORTED_SUFFIXES
from edgecxr.runtime.default_bundle import resolve_bundle
from edgecxr.runtime.watcher import Watcher, WatchOptions
from edgecxr.samples import SAMPLE_DIR
from edgecxr.web.server import POLL_SECONDS, StatusServer
from edgecxr.web.thumbs import ThumbnailSink

VISIBLE = 20  # rows of a 1080-line screen
PAGE = """
import json, sys, threading, time, urllib.request
url, pages, every, visible = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
def get(path):
    with urllib.request.urlopen(url + path, timeout=10) as r:
        return r.read()
def page():
    since, seen = 0, set()
    while True:
        get("api/status")
        data = json.loads(get(f"api/results?since={since}"))
        since = data["next"]
        newest = sorted(data["media"].items(), key=lambda kv: -int(kv[0]))[:visible]
        for _, media in newest:
            for key in ("thumb", "map"):
                if media.get(key) and media[key] not in seen:
                    seen.add(media[key])
                    get(media[key].lstrip("/"))
        time.sleep(every)
for _ in range(pages):
    threading.Thread(target=page, daemon=True).start()
sys.stdin.read()  # until the benchmark closes our stdin
"""


def one_burst(classifier, images: list[Path], n: int, batch: int, pages: int) -> tuple[float, float, int]:
    """Images per second and this process's CPU milliseconds per image of one `watch --once` burst,
    with `pages` open pages (0: no --http)."""
    with tempfile.TemporaryDirectory() as tmp:
        inbox, out = Path(tmp) / "in", Path(tmp) / "out"
        _fill(inbox, images, n)
        server, sinks, poller = None, [], None
        if pages:
            sinks = [ThumbnailSink(out, classifier.bundle.spec)]
            server = StatusServer(out, thumbs=sinks[0]).start()
            poller = subprocess.Popen([sys.executable, "-c", PAGE, server.url, str(pages), str(POLL_SECONDS),
                                       str(VISIBLE)],
                                      stdin=subprocess.PIPE)
            time.sleep(1.0)  # the pages are open before the burst lands
        watcher = Watcher(classifier, WatchOptions(inbox=inbox, out=out, once=True, settle_seconds=0,
                                                   batch_size=batch), log=lambda m: None, sinks=sinks)
        start, cpu = time.perf_counter(), time.process_time()
        counters = watcher.run(threading.Event())
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        thumbs = len(list((out / "thumbs").glob("*.png"))) if pages else 0
        if poller is not None:
            poller.stdin.close()
            poller.wait(10)
        if server is not None:
            server.stop()
    return counters.processed / seconds, 1000 * cpu / counters.processed, thumbs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, nargs="?", default=None)
    parser.add_argument("--images", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--burst", type=int, default=240)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pages", type=int, default=1, help="open pages polling the server")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    images = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES - {".dcm"})
    classifier = _classifier(resolve_bundle(args.bundle), args.backend, args.precision, args.threads)
    one_burst(classifier, images, 2 * args.batch, args.batch, 0)  # warm-up
    rates: dict[int, list[float]] = {0: [], args.pages: []}
    cpu: dict[int, list[float]] = {0: [], args.pages: []}
    for k in range(args.rounds):
        for pages in ((0, args.pages) if k % 2 == 0 else (args.pages, 0)):
            rate, ms, thumbs = one_burst(classifier, images, args.burst, args.batch, pages)
            rates[pages].append(rate)
            cpu[pages].append(ms)
            print(f"round {k + 1}: {'page open' if pages else 'no page  '} {rate:6.1f} img/s, {ms:5.1f} CPU ms/img"
                  + (f" ({thumbs} thumbnails viewed)" if pages else ""), flush=True)
    classifier.close()
    without, with_page = statistics.median(rates[0]), statistics.median(rates[args.pages])
    cpu_without, cpu_with = statistics.median(cpu[0]), statistics.median(cpu[args.pages])
    print(f"burst of {args.burst} files, {classifier.artifact.name}, batch {args.batch}, {args.pages} page(s) "
          f"polling every {POLL_SECONDS:g} s, medians of {args.rounds} rounds:")
    print(f"  throughput {without:.1f} img/s without the page, {with_page:.1f} with it -> ratio "
          f"{with_page / without:.3f} (goal >= 0.95)")
    print(f"  watcher CPU {cpu_without:.1f} ms/img without the page, {cpu_with:.1f} with it -> ratio "
          f"{cpu_with / cpu_without:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"burst": args.burst, "engine": classifier.artifact.name,
                                         "pages": args.pages, "images_per_s": {str(k): v for k, v in rates.items()},
                                         "cpu_ms_per_image": {str(k): v for k, v in cpu.items()},
                                         "ratio": with_page / without, "cpu_ratio": cpu_with / cpu_without},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
