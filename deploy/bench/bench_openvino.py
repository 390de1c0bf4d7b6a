"""OpenVINO on this machine: burst throughput vs benchmark_app, batch-1 p50 vs PyTorch, restart compile.

    python deploy/bench/bench_openvino.py BUNDLE [--precision fp32] [--data DIR] [--rounds 3] [--seconds 10]
        [--threads N] [--measure burst,graph,latency,restart] [--json FILE]

Prints each measurement with its ratio and goal; see docs/bench.md for the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from edgecxr.bench import openvino_burst as ob
from edgecxr.bench.run import real_inputs
from edgecxr.core.bundle import load_bundle
from edgecxr.core.sysinfo import cpu_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--data", type=Path, default=None, help="real images (default: the bundle's test data)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per measurement (medians)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    parser.add_argument("--batch", type=int, default=8, help="burst batch, as watch --batch-size")
    parser.add_argument("--runs", type=int, default=30, help="timed batch-1 runs per round")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-pytorch", action="store_true")
    parser.add_argument("--measure", default="burst,graph,latency,restart",
                        help="which measurements, comma-separated (default: all four)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    ir = bundle.find(backend="openvino", precision=args.precision)[0].path
    checkpoint = Path(bundle.manifest.get("source", {}).get("checkpoint", ""))
    checkpoint = None if args.no_pytorch or not (checkpoint / "config.json").is_file() else checkpoint
    inputs, source = real_inputs(bundle, args.data, count=4 * args.batch)
    cpu = cpu_info()
    print(f"{bundle.name} openvino-{args.precision} on {cpu['model']} ({source}, {len(inputs)} images "
          f"{list(inputs.shape[1:])}); {args.rounds} alternating rounds, medians")
    results = {"bundle": bundle.name, "cpu": cpu, "args": {k: str(v) for k, v in vars(args).items()}}
    steps = {"burst": burst, "graph": graph, "latency": latency, "restart": restart}
    with tempfile.TemporaryDirectory(prefix="edgecxr-ov-bench-") as tmp:
        inputs_path = Path(tmp) / "inputs.npy"
        np.save(inputs_path, inputs)
        for name in args.measure.split(","):
            results[name] = steps[name](args, ir, inputs_path, checkpoint=checkpoint, shape=[1, *inputs.shape[1:]])
            if args.json:  # after each step: a later failure keeps what was measured
                args.json.write_text(json.dumps(results, indent=2) + "\n")


def burst(args, ir, inputs_path, shape, **_) -> dict:
    b = ob.burst_vs_benchmark_app(ir, inputs_path, shape, rounds=args.rounds, seconds=args.seconds,
                                  batch=args.batch, threads=args.threads)
    m = b["median"]
    print(f"burst, batch {args.batch}: async requests on THROUGHPUT streams {m['async']:.2f} img/s, "
          f"benchmark_app -hint throughput {m['benchmark_app']:.2f} FPS -> ratio {b['ratio']:.2f} "
          f"(per-round median {b['ratio_per_round_median']:.2f}; goal >= 1.00)")
    for side in ("runner", "benchmark_app"):
        print(f"  {side:13} ran with " + ", ".join(f"{k} {v}" for k, v in b["settings"][side].items()))
    print(f"  before: one synchronous batch-{args.batch} request {m['sync']:.2f} img/s -> ratio {b['sync_ratio']:.2f}")
    return b


def graph(args, ir, inputs_path, **_) -> dict:
    g = ob.static_vs_dynamic(ir, inputs_path, rounds=args.rounds, seconds=args.seconds, threads=args.threads)
    c = g["cpu_ms_per_image"]
    print(f"graph: CPU time per image on THROUGHPUT streams, static batch-1 {c['static']:.1f} ms, dynamic batch "
          f"{c['dynamic']:.1f} ms -> ratio {g['ratio']:.2f} (the runner compiles the static one)")
    return g


def latency(args, ir, inputs_path, checkpoint, **_) -> dict:
    lat = ob.latency_vs_pytorch(ir, inputs_path, checkpoint, rounds=args.rounds, runs=args.runs, threads=args.threads)
    if "ratio" in lat:
        print(f"batch-1 p50: openvino {lat['openvino_p50_ms']:.1f} ms, PyTorch eager {lat['pytorch_p50_ms']:.1f} ms"
              f" -> ratio {lat['ratio']:.2f} (lower is better; LATENCY compilation of the batch-1 graph)")
    else:
        print(f"batch-1 p50: openvino {lat['openvino_p50_ms']:.1f} ms (PyTorch eager not measured: no torch "
              "or no source checkpoint here)")
    return lat


def restart(args, ir, inputs_path, **_) -> dict:
    r = ob.restart_compile(ir, inputs_path, inputs_path.parent / "cache", rounds=args.rounds, threads=args.threads)
    print(f"restart (open + first image): no cache {r['no_cache_s']:.2f} s, warm CACHE_DIR {r['warm_cache_s']:.2f}"
          f" s -> ratio {r['ratio']:.2f} (first run, writing the cache: {r['cold_cache_s']:.2f} s)")
    return r


if __name__ == "__main__":
    main()
