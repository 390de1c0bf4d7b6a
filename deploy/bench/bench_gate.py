"""What the intended-use gate costs per image: CPU time with the gate against without it.

    python deploy/bench/bench_gate.py [BUNDLE] [--images DIR] [--rounds 5] [--backend auto --precision auto]

A benchmark, not a test: it prints the ratio (target: at most 1.10). Each image goes through
the watcher's own path, one at a time: `prepare` (read, hash, decode, tag and pixel stages,
preprocess), the engine, and the learned stage on the engine's features. "Without" runs the
same code with an empty gate, so the only difference is the gate's own work (the features
output is computed in both: it is part of the exported graph). CPU time is the process's
(`time.process_time`, every thread), so a busy neighbour on a shared machine adds wall time
but little CPU time. Rounds alternate with and without, and the median of each is compared.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from edgecxr.backends import RunnerOptions
from edgecxr.core.bundle import load_bundle
from edgecxr.core.data.decode import SUPPORTED_SUFFIXES
from edgecxr.runtime.classifier import Classifier
from edgecxr.runtime.default_bundle import resolve_bundle
from edgecxr.runtime.prepare import InputLimits, prepare
from edgecxr.runtime.selection import choose
from edgecxr.samples import SAMPLE_DIR
from edgecxr.scope.gate import Gate


def one_pass(classifier: Classifier, gate: Gate, paths: list[Path], limits: InputLimits) -> float:
    """CPU seconds per image for the whole path, with `gate` as the classifier's gate."""
    classifier.gate = gate
    started = time.process_time()
    for path in paths:
        item = prepare(path, classifier.bundle.spec, limits, gate)
        if item.tensor is not None:
            classifier.submit(item.tensor[None])()
    return (time.process_time() - started) / len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", default=None)
    parser.add_argument("--images", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    bundle = load_bundle(resolve_bundle(args.bundle))
    choice = choose(bundle, args.backend, args.precision)
    classifier = Classifier(bundle, choice, RunnerOptions(threads=args.threads))
    gated = Gate.from_bundle(bundle)
    if gated.missing:
        raise SystemExit(f"{bundle.folder}: {gated.describe()}")
    bare = Gate(intended_use=None)
    paths = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES)
    limits = InputLimits(intended_use=gated.intended_use)
    one_pass(classifier, gated, paths, limits)  # warm-up: caches, the engine's first runs
    without, with_gate = [], []
    for _ in range(args.rounds):
        without.append(one_pass(classifier, bare, paths, limits))
        with_gate.append(one_pass(classifier, gated, paths, limits))
    a, b = statistics.median(without), statistics.median(with_gate)
    print(f"engine {choice.artifact.name}; {len(paths)} images from {args.images}; {args.rounds} rounds")
    for name, median, rounds in (("without", a, without), ("with", b, with_gate)):
        shown = ", ".join(f"{1000 * x:.2f}" for x in rounds)
        print(f"CPU per image {name} the gate: {1000 * median:.2f} ms (rounds {shown})")
    print(f"ratio with / without: {b / a:.3f}  (target <= 1.10)")
    classifier.close()


if __name__ == "__main__":
    main()
