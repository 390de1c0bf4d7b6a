"""INT8 parity on a CPU class this machine is not (AVX2 without VNNI), emulated with qemu-user.

    python deploy/bench/parity_emulated_cpu.py [BUNDLE] [--data TEST_DIR] [--cpu Haswell] [--limit N]
        [--pick stratified|boundary] [--harness-check 4] [--openvino-isa AVX2] [--jobs 2] [--json OUT]

Inputs are decoded, preprocessed and scored by the FP32 reference natively, once; only the
engines run under `qemu-x86_64 -cpu MODEL` (ONNX Runtime ignores ISA caps: its kernels follow
CPUID), in a worker that first checks through CPUID that VNNI is really hidden. Prints, per
engine: images, agreement with FP32, flips, accuracy, and the same engine run natively here.
See docs/parity.md#another-cpu-class-emulated for the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgecxr.core.bundle import load_bundle
from edgecxr.core.decision import DecisionRule
from edgecxr.core.defaults import DEFAULT_SEED
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.metrics import calibrated_softmax
from edgecxr.core.sysinfo import cpu_info
from edgecxr.parity import emulated as em
from edgecxr.parity.check import resolve_inputs
from edgecxr.runtime.default_bundle import resolve_bundle


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, nargs="?", default=None, help="default: the shipped reference bundle")
    parser.add_argument("--data", type=Path, default=None, help="labelled test folder (default: the bundle report's)")
    parser.add_argument("--cpu", action="append", default=None, help="qemu CPU model (repeatable; default Haswell)")
    parser.add_argument("--engines", default=None, help="comma-separated artifact names (default: ONNX Runtime INT8)")
    parser.add_argument("--limit", type=int, default=None, help="score N images, not all (see --pick)")
    parser.add_argument("--pick", choices=em.PICKS, default="stratified",
                        help="stratified: seeded, class-stratified; boundary: nearest the FP32 decision threshold")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--harness-check", type=int, default=4, metavar="N",
                        help="also run the FP32 reference emulated on N images: must agree 100%% (0: skip)")
    parser.add_argument("--openvino-isa", default=None, metavar="ISA",
                        help="also run OpenVINO INT8 natively under ONEDNN_MAX_CPU_ISA=ISA (e.g. AVX2)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--jobs", type=int, default=1, help="workers at once (one per engine and CPU)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="per worker: start no batch after this long and report the images scored")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def tasks(args, bundle, prepared, tmp: Path) -> list[tuple]:
    """(where, engine, inputs file, images) for every worker to start."""
    names = args.engines.split(",") if args.engines else [a.name for a in bundle.find("onnxruntime", "int8")]
    engines = [a for a in bundle.artifacts if a.name in names]
    everything, few = tmp / "inputs.npy", tmp / "harness.npy"
    np.save(everything, prepared.inputs)
    np.save(few, prepared.inputs[:args.harness_check])
    todo = []
    for model in args.cpu or ["Haswell"]:
        where = em.emulated(model)
        todo += [(where, a, everything, len(prepared.inputs)) for a in engines]
        if args.harness_check:
            todo += [(where, a, few, args.harness_check) for a in bundle.find(role="reference")]
    if args.openvino_isa:
        todo += [(em.isa_capped(args.openvino_isa), a, everything, len(prepared.inputs))
                 for a in bundle.find("openvino", "int8")]
    return todo


def run(task, tmp: Path, args) -> dict:
    where, engine, inputs, images = task
    out = tmp / f"{engine.name}.{abs(hash(where.label))}.npz"
    started = time.perf_counter()
    try:
        logits, meta = em.run_worker(where, [engine], inputs, out, batch=args.batch, threads=args.threads,
                                     minutes=args.minutes)
    except EdgecxrError as exc:  # one failed worker must not cost the others' hours
        print(f"{engine.name} on {where.label}: {exc}", flush=True)
        return {"where": where.label, "engine": engine, "error": str(exc)}
    print(f"{engine.name} on {where.label}: done, {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    return {"where": where.label, "engine": engine, "logits": logits[engine.name], "meta": meta,
            "wall_s": time.perf_counter() - started, "images": len(logits[engine.name]), "planned": images}


def unscored(prepared, rule, d) -> str:
    """For a boundary pick stopped early: how far from the threshold the images not scored are."""
    if prepared.left_out_margin is None:
        return ""
    p = calibrated_softmax(prepared.reference, prepared.temperature)[:, rule.positive_index]
    cut = rule.threshold if rule.threshold is not None else 0.5
    margin = min(float(np.abs(p[d["images"]:] - cut).min()), prepared.left_out_margin)
    return f" (nearest the threshold first: every image not scored has FP32 |P - threshold| >= {margin:.3f})"


def report(done: list[dict], prepared, rule, native: dict) -> list[dict]:
    rows = []
    print(f"\n{'engine':28} {'CPU class':34} {'images':>6} {'agree FP32':>10} {'flips':>5} {'acc':>7} "
          f"{'acc FP32':>8} {'max|dP|':>7} {'vs native':>9} {'s/img':>6}")
    for d in done:
        a = d["engine"]
        if "error" in d:
            print(f"{a.name:28} {d['where']:34} not measured: {d['error']}")
            rows.append({"engine": a.name, "where": d["where"], "error": d["error"]})
            continue
        s = em.summarize(prepared, d["logits"], rule, native.get(a.name))
        cpu = d["meta"]["cpu"]
        seen = ",".join(f for f, on in (cpu["features"] or {}).items() if on)
        vs = s.get("vs_native")
        vs_text = f"{vs['changes']:>3} {vs['max_abs_logit_diff']:>5.3f}" if vs else f"{'-':>9}"
        print(f"{a.name:28} {d['where']:34} {s['images']:>6} {100 * s['agreement']:>9.2f}% {len(s['flips']):>5} "
              f"{100 * s['accuracy']:>6.2f}% {100 * s['accuracy_fp32']:>7.2f}% {s['max_abs_p_diff']:>7.4f} "
              f"{vs_text} {d['wall_s'] / d['images']:>6.1f}")
        print(f"{'':28}   CPUID {cpu['brand']!r}: {seen or 'none'}")
        if d["images"] < d["planned"]:
            print(f"{'':28}   stopped by --minutes after {d['images']} of {d['planned']} images"
                  f"{unscored(prepared, rule, d)}")
        for f in s["flips"]:
            print(f"{'':28}   flip {f['path']}: FP32 {f['fp32']} {f['p_fp32']:.3f} -> "
                  f"{f['engine']} {f['p_engine']:.3f}")
        rows.append({"engine": a.name, "sha256": a.record["files"][0]["sha256"], "where": d["where"], "cpu": cpu,
                     "wall_s": d["wall_s"], "planned": d["planned"], **s,
                     "hardware": d["meta"]["engines"][a.name]["hardware"]})
    print("vs native: class changes and max |Δlogit| against the same engine run natively on this host")
    return rows


def main() -> None:
    args = parse()
    started = time.perf_counter()
    bundle = load_bundle(resolve_bundle(args.bundle))
    rule = DecisionRule.from_manifest(bundle.manifest)
    data = args.data or resolve_inputs(bundle, None, None)[1]
    host = cpu_info()
    print(f"{bundle.name}: host {host['model']} ({', '.join(f for f, on in host['features'].items() if on)}); "
          f"decision rule {rule.describe()}")
    prepared = em.prepare(bundle, data, args.limit, args.seed, args.pick, print)
    print(f"{len(prepared.inputs)} of {prepared.total} images ({prepared.how}) from {data}")
    if prepared.left_out_margin is not None:
        print(f"every image left out has FP32 |P({rule.positive_class}) - threshold| >= {prepared.left_out_margin:.3f}:"
              " an engine flips one only by moving its P that far")
    with tempfile.TemporaryDirectory(prefix="edgecxr-emulated-") as name:
        tmp = Path(name)
        todo = tasks(args, bundle, prepared, tmp)
        int8 = {t[1].name: t[1] for t in todo if t[1].precision != "fp32"}
        native = {n: em.native_logits(a, prepared.inputs) for n, a in int8.items()}
        print(f"same INT8 engines natively here: done; starting {len(todo)} worker(s), {args.jobs} at a time")
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            done = list(pool.map(lambda t: run(t, tmp, args), todo))
    rows = report(done, prepared, rule, native)
    print(f"whole run: {(time.perf_counter() - started) / 60:.1f} min")
    if args.json:
        args.json.write_text(json.dumps({"bundle": bundle.name, "checksum": bundle.checksum, "host": host,
                                         "images": {"scored": len(prepared.inputs), "of": prepared.total,
                                                    "how": prepared.how, "data": str(data),
                                                    "left_out_margin": prepared.left_out_margin},
                                         "rule": rule.describe(), "engines": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
