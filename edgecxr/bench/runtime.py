"""Benchmarks of the watch runtime against its bare engine (not tests: they print ratios).

- burst: sustained images/s of `watch --once` on a burst of N files vs the engine's own
  batch throughput (target: at least 0.9);
- latency: a settled file dropped into a running watcher until its result line, one at a
  time, vs bare single-image inference (target: at most 1.3), per input size;
- memory: peak RSS of `watch --once` on a large backlog vs a 10-file one (target: at most 1.2).
"""

from __future__ import annotations

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
from edgecxr.bundle import load_bundle
from edgecxr.data.decode import decode_file
from edgecxr.runtime.classifier import Classifier
from edgecxr.runtime.selection import choose
from edgecxr.runtime.watcher import Watcher, WatchOptions


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
                while name not in done:
                    time.sleep(0.0005)
                measured.append(1000 * (done[name] - start))
            rows.append({"size": size, "bare_inference_ms": bare, "file_to_line_ms": float(np.median(measured)),
                         "ratio": float(np.median(measured)) / bare})
        stop.set()
        watcher.wake.set()
        thread.join(10)
    classifier.close()
    return rows


def peak_rss_mb(bundle_dir: Path, images: list[Path], n: int, backend: str, precision: str) -> float:
    """Peak RSS of a `watch --once` child process on an n-file backlog."""
    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp) / "in"
        _fill(inbox, images, n)
        code = ("import resource, subprocess, sys; "
                "from typer.testing import CliRunner; from edgecxr.cli.app import app; "
                f"r = CliRunner().invoke(app, ['watch', {str(inbox)!r}, '--bundle', {str(bundle_dir)!r}, '--once', "
                f"'--quiet', '--settle-seconds', '0', '--backend', {backend!r}, '--precision', {precision!r}, "
                f"'--out', {str(Path(tmp) / 'out')!r}]); "
                "assert r.exit_code == 0, r.output; "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return float(result.stdout.strip().splitlines()[-1])


def report(results: dict) -> str:
    return json.dumps(results, indent=2)
