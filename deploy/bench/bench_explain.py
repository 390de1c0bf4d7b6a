"""What `edgecxr watch --explain` costs on this machine (a benchmark, not a test: it prints ratios).

    python deploy/bench/bench_explain.py BUNDLE [--images DIR] [--backend auto --precision auto]

- map cost: one occlusion map on one engine thread (as the watcher's explanation sink runs it)
  vs one classification, median wall time over --maps images, and CPU time (which a shared
  machine disturbs far less than wall time);
- burst: images/s of `watch --once` on --burst files up to the last result line, with the
  explanation sink vs without (target: at least 0.9: maps must not hold results back).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bench_runtime import _classifier, _fill  # deploy/bench/ is the script's folder

from edgecxr.backends import RunnerOptions, open_runner
from edgecxr.bench.measure import median_ms
from edgecxr.core.data.decode import SUPPORTED_SUFFIXES, decode_file
from edgecxr.explain.occlusion import DEFAULT_GRID, occlusion_map
from edgecxr.runtime.explain_sink import ExplainSink
from edgecxr.runtime.watcher import Watcher, WatchOptions
from edgecxr.samples import SAMPLE_DIR


def _sink_runner(classifier):
    return open_runner(classifier.artifact.backend, classifier.artifact.path, RunnerOptions(threads=1))


def map_cost(bundle_dir: Path, images: list[Path], n: int, backend: str, precision: str) -> dict:
    classifier = _classifier(bundle_dir, backend, precision, None)
    runner = _sink_runner(classifier)
    spec = classifier.bundle.spec
    inputs = [spec(decode_file(p).pixels) for p in images[:n]]
    classify = median_ms(lambda: classifier.probabilities(inputs[0][None]), 20)
    one_thread = median_ms(lambda: runner.infer(inputs[0][None]), 20)
    cpu = time.process_time()  # CPU time: what a map costs the box, whatever else shares the cores
    maps = [occlusion_map(runner.infer, x).ms for x in inputs]
    cpu_ms = 1000 * (time.process_time() - cpu) / len(inputs)
    cpu = time.process_time()
    for x in inputs:
        runner.infer(x[None])
    cpu_one = 1000 * (time.process_time() - cpu) / len(inputs)
    runner.close()
    classifier.close()
    grid = DEFAULT_GRID.describe(spec.height, spec.width)
    return {"engine": classifier.artifact.name, "size": spec.height, "grid": grid,
            "classify_ms": classify, "infer_one_thread_ms": one_thread, "map_ms": float(np.median(maps)),
            "maps": len(maps), "ratio": float(np.median(maps)) / classify, "map_cpu_ms": cpu_ms,
            "infer_cpu_ms": cpu_one, "cpu_ratio": cpu_ms / cpu_one}


def burst(bundle_dir: Path, images: list[Path], n: int, batch: int, backend: str, precision: str,
          explain: bool) -> dict:
    classifier = _classifier(bundle_dir, backend, precision, None)
    last = []
    with tempfile.TemporaryDirectory() as tmp:
        inbox, out = Path(tmp) / "in", Path(tmp) / "out"
        _fill(inbox, images, n)
        sinks = [ExplainSink(_sink_runner(classifier), classifier.bundle.spec, out, classifier.class_names,
                             classifier.engine_label, drain_seconds=0.5, log=lambda m: None)] if explain else []
        watcher = Watcher(classifier, WatchOptions(inbox=inbox, out=out, once=True, settle_seconds=0, batch_size=batch),
                          log=lambda m: None, on_result=lambda r: last.append(time.perf_counter()), sinks=sinks)
        for sink in sinks:  # as `edgecxr watch --explain` wires it
            sink.busy = lambda: watcher.counters.backlog > 0
        start = time.perf_counter()
        counters = watcher.run(threading.Event())
        seconds = last[-1] - start
    classifier.close()
    maps = dict(sinks[0].counts) if sinks else {}
    return {"files": counters.processed, "images_per_s": counters.processed / seconds, "explain": explain, "maps": maps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--images", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--maps", type=int, default=16)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    images = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES - {".dcm"})
    common = {"backend": args.backend, "precision": args.precision}
    cost = map_cost(args.bundle, images, args.maps, **common)
    g = cost["grid"]
    print(f"{cost['engine']} {cost['size']} px: map ({g['squares']} squares of {g['patch_px']} px, 1 thread) "
          f"{cost['map_ms']:.0f} ms, classification {cost['classify_ms']:.1f} ms (1 thread "
          f"{cost['infer_one_thread_ms']:.1f} ms) -> ratio {cost['ratio']:.0f}; CPU time per map "
          f"{cost['map_cpu_ms']:.0f} ms vs {cost['infer_cpu_ms']:.1f} ms per single-image inference -> "
          f"{cost['cpu_ratio']:.0f} inferences' worth")
    plain = maps = ratio = None
    if args.burst:  # --burst 0: the map cost alone
        plain = burst(args.bundle, images, args.burst, args.batch, explain=False, **common)
        maps = burst(args.bundle, images, args.burst, args.batch, explain=True, **common)
        ratio = maps["images_per_s"] / plain["images_per_s"]
        print(f"burst of {args.burst} files to the last result line: {plain['images_per_s']:.1f} img/s without maps, "
              f"{maps['images_per_s']:.1f} img/s with --explain -> ratio {ratio:.2f} (target >= 0.90); "
              f"maps during the burst: {maps['maps'].get('maps', 0)} written, {maps['maps'].get('dropped', 0)} dropped")
    if args.json:
        args.json.write_text(json.dumps({"map_cost": cost, "burst": [plain, maps], "ratio": ratio}, indent=2) + "\n")


if __name__ == "__main__":
    main()
