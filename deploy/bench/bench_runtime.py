"""Runtime benchmarks for this machine: burst throughput, file-to-line latency, memory.

    python deploy/bench/bench_runtime.py BUNDLE [--images DIR] [--backend openvino --precision fp32]

Benchmarks, not tests: they print ratios against the bare engine.

- burst: sustained images/s of `watch --once` on a burst of N files vs the engine's own
  batch throughput (target: at least 0.9);
- latency: a settled file dropped into a running watcher until its result line, one at a
  time, vs bare single-image inference (target: at most 1.3), per input size;
- memory: peak RSS of `edgecxr watch --once` on a large backlog vs a 10-file one (target: at most 1.2).

See docs/bench.md for the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from edgecxr.backends import RunnerOptions
from edgecxr.bench.measure import median_ms
from edgecxr.core.bundle import load_bundle
from edgecxr.core.data.decode import SUPPORTED_SUFFIXES, decode_file
from edgecxr.runtime.classifier import Classifier
from edgecxr.runtime.selection import choose
from edgecxr.runtime.watcher import Watcher, WatchOptions
from edgecxr.samples import SAMPLE_DIR


def _classifier(bundle_dir: Path, backend: str, precision: str, threads: int | None) -> Classifier:
    bundle = load_bundle(bundle_dir)
    return Classifier(bundle, choose(bundle, backend, precision), RunnerOptions(threads=threads))


def _fill(inbox: Path, images: list[Path], n: int) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    old = time.time() - 60
    for i in range(n):
        src = images[i % len(images)]
        dst = inbox / f"{i:05d}{src.suffix}"
        try:
            os.link(src, dst)  # a backlog of thousands costs no disk
        except OSError:
            shutil.copyfile(src, dst)
        os.utime(dst, (old, old))


def bare_throughput(classifier: Classifier, images: list[Path], batch: int, rounds: int = 20) -> float:
    x = np.stack([classifier.bundle.spec(decode_file(images[i % len(images)]).pixels) for i in range(batch)])
    classifier.probabilities(x)
    start = time.perf_counter()
    for _ in range(rounds):
        classifier.probabilities(x)
    return rounds * batch / (time.perf_counter() - start)


def bare_latency_ms(classifier: Classifier, image: Path, runs: int = 20) -> float:
    x = classifier.bundle.spec(decode_file(image).pixels)[None]
    return median_ms(lambda: classifier.probabilities(x), runs)


def burst(bundle_dir: Path, images: list[Path], *, n: int, batch: int, backend: str, precision: str,
          threads: int | None) -> dict:
    classifier = _classifier(bundle_dir, backend, precision, threads)
    engine = bare_throughput(classifier, images, batch)
    with tempfile.TemporaryDirectory() as tmp:
        inbox, out = Path(tmp) / "in", Path(tmp) / "out"
        _fill(inbox, images, n)
        watcher = Watcher(classifier, WatchOptions(inbox=inbox, out=out, once=True, settle_seconds=0,
                                                   batch_size=batch), log=lambda m: None)
        start = time.perf_counter()
        counters = watcher.run(threading.Event())
        seconds = time.perf_counter() - start
    classifier.close()
    watch = counters.processed / seconds
    return {"files": n, "batch": batch, "engine": classifier.artifact.name, "watch_images_per_s": watch,
            "bare_engine_images_per_s": engine, "ratio": watch / engine}


def latency(bundle_dir: Path, image: Path, *, sizes: list[int], backend: str, precision: str,
            threads: int | None, repeats: int = 5) -> list[dict]:
    classifier = _classifier(bundle_dir, backend, precision, threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inbox, out, staging = Path(tmp) / "in", Path(tmp) / "out", Path(tmp) / "staging"
        inbox.mkdir()
        staging.mkdir()
        done: dict[str, float] = {}
        watcher = Watcher(classifier, WatchOptions(inbox=inbox, out=out, settle_seconds=0, rescan_seconds=5),
                          log=lambda m: None, on_result=lambda r: done.__setitem__(r["path"], time.perf_counter()))
        stop = threading.Event()
        thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
        thread.start()
        time.sleep(0.5)
        for size in sizes:
            src = staging / f"x{size}.png"
            Image.open(image).convert("L").resize((size, size)).save(src)
            bare = bare_latency_ms(classifier, src)
            measured = []
            for k in range(repeats):
                name = f"{size}-{k}.png"
                shutil.copyfile(src, staging / name)
                old = time.time() - 60
                os.utime(staging / name, (old, old))  # already settled when it lands
                start = time.perf_counter()
                os.rename(staging / name, inbox / name)
                _wait_for(name, done, deadline=time.monotonic() + 60)
                measured.append(1000 * (done[name] - start))
            rows.append({"size": size, "bare_inference_ms": bare, "file_to_line_ms": float(np.median(measured)),
                         "ratio": float(np.median(measured)) / bare})
        stop.set()
        watcher.wake.set()
        thread.join(10)
    classifier.close()
    return rows


def _wait_for(name: str, done: dict[str, float], deadline: float) -> None:
    """Poll finely (the wait is what is measured) but never past the deadline."""
    while name not in done:
        if time.monotonic() > deadline:
            raise SystemExit(f"no result line for {name} within 60 s: is the watcher running?")
        time.sleep(0.0005)


def peak_rss_mb(bundle_dir: Path, images: list[Path], n: int, backend: str, precision: str) -> float:
    """Peak RSS of a `watch --once` child process on an n-file backlog."""
    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp) / "in"
        _fill(inbox, images, n)
        watch = [sys.executable, "-m", "edgecxr", "watch", str(inbox), "--bundle", str(bundle_dir), "--once",
                 "--quiet", "--settle-seconds", "0", "--backend", backend, "--precision", precision,
                 "--out", str(Path(tmp) / "out")]
        # a fresh parent per measurement, so RUSAGE_CHILDREN holds this one watch's peak only
        code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
        result = subprocess.run([sys.executable, "-c", code, *watch], capture_output=True, text=True, check=True)
        return float(result.stdout.strip().splitlines()[-1])



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--images", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--sizes", default="224,512,1024")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    images = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES - {".dcm"})
    common = {"backend": args.backend, "precision": args.precision}
    results = {}
    b = burst(args.bundle, images, n=args.burst, batch=args.batch, threads=args.threads, **common)
    results["burst"] = b
    print(f"burst of {b['files']} files ({b['engine']}, batch {b['batch']}): "
          f"watch {b['watch_images_per_s']:.1f} img/s, bare engine {b['bare_engine_images_per_s']:.1f} img/s "
          f"-> ratio {b['ratio']:.2f} (target >= 0.90)")
    rows = latency(args.bundle, images[0], sizes=[int(s) for s in args.sizes.split(",")],
                           threads=args.threads, **common)
    results["latency"] = rows
    for r in rows:
        print(f"latency {r['size']:>4} px: file to line {r['file_to_line_ms']:.1f} ms, bare inference "
              f"{r['bare_inference_ms']:.1f} ms -> ratio {r['ratio']:.2f} (target <= 1.30)")
    small = peak_rss_mb(args.bundle, images, 10, **common)
    large = peak_rss_mb(args.bundle, images, args.backlog, **common)
    results["memory"] = {"backlog_10_mb": small, f"backlog_{args.backlog}_mb": large, "ratio": large / small}
    print(f"peak RSS: 10-file backlog {small:.0f} MB, {args.backlog}-file backlog {large:.0f} MB -> ratio "
          f"{large / small:.2f} (target <= 1.20)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
