"""Runtime benchmarks for this machine: burst throughput, file-to-line latency, memory.

    python deploy/bench_runtime.py BUNDLE [--images DIR] [--backend openvino --precision fp32]

Prints each measurement with its ratio and target; see docs/bench.md for the figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecxr.bench import runtime
from edgecxr.data.decode import SUPPORTED_SUFFIXES
from edgecxr.samples import SAMPLE_DIR


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
    b = runtime.burst(args.bundle, images, n=args.burst, batch=args.batch, threads=args.threads, **common)
    results["burst"] = b
    print(f"burst of {b['files']} files ({b['engine']}, batch {b['batch']}): "
          f"watch {b['watch_images_per_s']:.1f} img/s, bare engine {b['bare_engine_images_per_s']:.1f} img/s "
          f"-> ratio {b['ratio']:.2f} (target >= 0.90)")
    rows = runtime.latency(args.bundle, images[0], sizes=[int(s) for s in args.sizes.split(",")],
                           threads=args.threads, **common)
    results["latency"] = rows
    for r in rows:
        print(f"latency {r['size']:>4} px: file to line {r['file_to_line_ms']:.1f} ms, bare inference "
              f"{r['bare_inference_ms']:.1f} ms -> ratio {r['ratio']:.2f} (target <= 1.30)")
    small = runtime.peak_rss_mb(args.bundle, images, 10, **common)
    large = runtime.peak_rss_mb(args.bundle, images, args.backlog, **common)
    results["memory"] = {"backlog_10_mb": small, f"backlog_{args.backlog}_mb": large, "ratio": large / small}
    print(f"peak RSS: 10-file backlog {small:.0f} MB, {args.backlog}-file backlog {large:.0f} MB -> ratio "
          f"{large / small:.2f} (target <= 1.20)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
