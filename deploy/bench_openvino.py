"""OpenVINO on this machine: burst throughput vs benchmark_app, batch-1 p50 vs PyTorch, restart compile.

    python deploy/bench_openvino.py BUNDLE [--precision fp32] [--data DIR] [--rounds 3] [--seconds 10]

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
from edgecxr.bundle import load_bundle
from edgecxr.sysinfo import cpu_info


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
    with tempfile.TemporaryDirectory(prefix="edgecxr-ov-bench-") as tmp:
        inputs_path = Path(tmp) / "inputs.npy"
        np.save(inputs_path, inputs)
        b = results["burst"] = ob.burst_vs_benchmark_app(ir, inputs_path, [1, *inputs.shape[1:]], rounds=args.rounds,
                                                         seconds=args.seconds, batch=args.batch, threads=args.threads)
        m = b["median"]
        print(f"burst, batch {args.batch}: async requests on THROUGHPUT streams {m['async']:.2f} img/s, "
              f"benchmark_app -hint throughput {m['benchmark_app']:.2f} FPS -> ratio {b['ratio']:.2f} "
              f"(per-round median {b['ratio_per_round_median']:.2f}; goal >= 1.00)")
        print(f"  before: one synchronous batch-{args.batch} request {m['sync']:.2f} img/s -> ratio "
              f"{b['sync_ratio']:.2f}")
        lat = results["latency"] = ob.latency_vs_pytorch(ir, inputs_path, checkpoint, rounds=args.rounds,
                                                         runs=args.runs, threads=args.threads)
        if "ratio" in lat:
            print(f"batch-1 p50: openvino {lat['openvino_p50_ms']:.1f} ms, PyTorch eager {lat['pytorch_p50_ms']:.1f} ms"
                  f" -> ratio {lat['ratio']:.2f} (goal: lower is better; the runtime's latency path is unchanged)")
        else:
            print(f"batch-1 p50: openvino {lat['openvino_p50_ms']:.1f} ms (PyTorch eager not measured: no torch "
                  "or no source checkpoint here)")
        r = results["restart"] = ob.restart_compile(ir, inputs_path, Path(tmp) / "cache", rounds=args.rounds,
                                                    threads=args.threads)
        print(f"restart (open + first image): no cache {r['no_cache_s']:.2f} s, warm CACHE_DIR {r['warm_cache_s']:.2f}"
              f" s -> ratio {r['ratio']:.2f} (first run, writing the cache: {r['cold_cache_s']:.2f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
