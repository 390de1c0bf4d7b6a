"""The process that runs engines on an emulated (or ISA-capped) CPU: it only loads engine files
through edgecxr's own runners and scores inputs that were decoded and preprocessed natively.

Everything inside `qemu-x86_64 -cpu Haswell` runs about 100× slower, Python and numpy
included, so this worker does nothing but what must see the other CPU: the engine's kernels.
It first reads the ISA through CPUID (what the backends' dispatchers see) and, asked to stand
for a CPU without INT8 dot products, refuses to score when VNNI or AMX is still visible.
Imports numpy and edgecxr's torch-free pieces only.

    python -m edgecxr.parity.emulated_worker INPUTS.npy OUT.npz --engine NAME=BACKEND:PATH ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

DOT_PRODUCT_FEATURES = ("avx512_vnni", "avx_vnni", "amx_int8")
REFUSED = 3  # exit status: the CPU this process sees is not the class it was asked to stand for


def visible_dot_products(features: dict | None) -> list[str]:
    """The INT8 dot-product features CPUID shows; a CPU without CPUID counts as unverified."""
    if features is None:
        return ["(CPUID could not be read)"]
    return [name for name in DOT_PRODUCT_FEATURES if features.get(name)]


def score(name: str, backend: str, path: str, inputs: np.ndarray, batch: int, threads: int | None,
          minutes: float | None = None) -> dict:
    """Logits of one engine over the inputs, `batch` at a time, with a progress line per batch;
    with `minutes`, no new batch starts after that long: the first inputs are scored, in order."""
    from edgecxr.backends import RunnerOptions, open_runner

    started = time.perf_counter()
    with open_runner(backend, path, RunnerOptions(threads=threads)) as runner:
        loaded = time.perf_counter()
        chunks: list[np.ndarray] = []
        for start in range(0, len(inputs), batch):
            if chunks and minutes is not None and time.perf_counter() - loaded > 60 * minutes:
                print(f"progress {name} stopped after {minutes:g} min with {start}/{len(inputs)} images",
                      file=sys.stderr, flush=True)
                break
            chunks.append(runner.infer(inputs[start:start + batch]))
            done = start + len(chunks[-1])
            rate = (time.perf_counter() - loaded) / done
            left = rate * (len(inputs) - done) / 60
            print(f"progress {name} {done}/{len(inputs)} images, {rate:.1f} s/img, ~{left:.0f} min left",
                  file=sys.stderr, flush=True)
    end = time.perf_counter()
    return {"logits": np.concatenate(chunks), "load_s": loaded - started, "infer_s": end - loaded}


def parse_engine(text: str) -> tuple[str, str, str]:
    name, _, rest = text.partition("=")
    backend, _, path = rest.partition(":")
    if not (name and backend and path):
        raise SystemExit(f"--engine takes NAME=BACKEND:PATH, got {text!r}")
    return name, backend, path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", help="float32 NCHW inputs (.npy), preprocessed with the bundle's spec")
    parser.add_argument("out", help="where to write the logits and what the CPU looked like (.npz)")
    parser.add_argument("--engine", action="append", required=True, type=parse_engine)
    parser.add_argument("--require-no-vnni", action="store_true",
                        help="refuse (exit 3) unless CPUID hides VNNI and AMX")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=None, help="per engine: start no batch after this long")
    args = parser.parse_args(argv)

    from edgecxr.core.cpuid import brand, int8_features
    from edgecxr.core.qualification import hardware_class

    features = int8_features()
    seen = visible_dot_products(features)
    if args.require_no_vnni and seen:
        print(f"refused: this process still sees {', '.join(seen)}; the emulator did not hide INT8 dot products, "
              "so its logits would not stand for an AVX2-only CPU", file=sys.stderr, flush=True)
        return REFUSED
    inputs = np.load(args.inputs)
    cpu: dict = {"brand": brand(), "features": features}
    results: dict[str, Any] = {}  # savez keyword arrays
    meta: dict = {"cpu": cpu, "engines": {}}
    for name, backend, path in args.engine:
        scored = score(name, backend, path, inputs, args.batch, args.threads, args.minutes)
        results[name] = scored.pop("logits")
        meta["engines"][name] = {**scored, "hardware": hardware_class(backend)}
    np.savez(args.out, **results, meta=np.array(json.dumps(meta)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
