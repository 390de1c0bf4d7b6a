"""Which learned out-of-scope score separates wrongly shown chest images: the comparison behind docs/gate.md.

    python export/gate_method_probe.py RUN TEST_DIR [--bundle BUNDLE] [--fit 1000]

On a bundle's FP32 graph features (the ones every engine returns): fitted on the run's training
images, thresholds at the 99th percentile of its validation images, compared on the test images
and the same images turned 90/180/270 degrees, flipped top to bottom, grey-inverted and cropped.
Prints false refusals and AUROC per presentation for Mahalanobis distance on the pooled features,
on each stage summed, the orientation head alone, and the shipped combination. About a minute on
2 cores for the reference model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgecxr.backends import open_runner
from edgecxr.core.bundle import load_bundle
from edgecxr.core.data.folders import Sample, scan_split
from edgecxr.exporters import gate_fit
from edgecxr.exporters.calibration import stratified_sample
from edgecxr.runtime.default_bundle import resolve_bundle
from edgecxr.scope.learned import TRANSFORMS, UPRIGHT


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(outside scores above inside), ties one half (Mann-Whitney U)."""
    scores = np.concatenate([inside, outside])
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="mergesort")] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    u = ranks[len(inside):].sum() - len(outside) * (len(outside) + 1) / 2
    return float(u / (len(inside) * len(outside)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("test", type=Path)
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--fit", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1216)
    args = parser.parse_args()
    bundle = load_bundle(resolve_bundle(args.bundle))
    run = json.loads((args.run / "run.json").read_text())
    fit, val = gate_fit.gate_images(bundle.class_names, None, run, args.seed)
    fit = stratified_sample(fit, args.fit, args.seed)
    test = [Sample(s.path, s.rel, s.label) for s in scan_split(args.test, "test", bundle.class_names).samples]
    shown = list(TRANSFORMS)
    layout = bundle.manifest["output"]["features"]["layout"]
    edges = np.cumsum([0] + [p["size"] for p in layout])
    with open_runner("onnxruntime", bundle.folder / "onnx" / "model.fp32.onnx") as runner:
        train, _ = gate_fit.features_of(runner, bundle.spec, [s.path for s in fit], shown, args.seed)
        held, _ = gate_fit.features_of(runner, bundle.spec, [s.path for s in val], [UPRIGHT], args.seed + 1)
        tested, _ = gate_fit.features_of(runner, bundle.spec, [s.path for s in test], shown, args.seed + 2)
    labels = np.array([s.label for s in fit])

    def distance(lo: int, hi: int):
        means, precision = gate_fit.fit_gaussians(train[UPRIGHT][:, lo:hi], labels)
        return lambda f: np.min([np.einsum("ij,jk,ik->i", f[:, lo:hi] - m, precision, f[:, lo:hi] - m)
                                 for m in means], axis=0)
    stages = [distance(edges[i], edges[i + 1]) for i in range(len(layout))]
    medians = [np.median(d(held[UPRIGHT])) for d in stages]
    x = np.concatenate([train[t] for t in shown])
    y = np.concatenate([np.full(len(train[t]), i) for i, t in enumerate(shown)])
    mean, scale, w, b = gate_fit.fit_head(x, y, len(shown))

    def head(f):
        z = (f - mean) / scale @ w + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        return 1 - p[:, 0] / p.sum(axis=1)
    methods = {"Mahalanobis, pooled features": stages[-1],
               "Mahalanobis, every stage summed": lambda f: sum(d(f) / m for d, m in zip(stages, medians)),
               "orientation head": head,
               "shipped score (bundle)": lambda f: _shipped(bundle, f)}
    print(f"{len(fit)} training images x {len(shown)} presentations, {len(val)} validation, {len(test)} test")
    print(f"{'method':34s} {'false refusals':>15s} " + " ".join(f"{t:>8s}" for t in shown[1:]))
    for name, score in methods.items():
        threshold = np.quantile(score(held[UPRIGHT]), 0.99)
        inside = score(tested[UPRIGHT])
        cells = " ".join(f"{auroc(inside, score(tested[t])):8.3f}" for t in shown[1:])
        print(f"{name:34s} {100 * np.mean(inside > threshold):14.1f}% {cells}")


def _shipped(bundle, features: np.ndarray) -> np.ndarray:
    from edgecxr.scope.gate import Gate

    learned = Gate.from_bundle(bundle).learned
    if learned is None:
        raise SystemExit(f"{bundle.folder}: no learned gate stage (re-export it)")
    return learned.scores(features)


if __name__ == "__main__":
    main()
