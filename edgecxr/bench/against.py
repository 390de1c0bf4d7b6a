"""Paired latency of two bundles on this box: is a candidate model fast enough against the reference?

A new model is judged by the ratio of its fastest engine's batch-1 p50 to the reference's on the
same CPU (issue 21 allows at most 2x). Absolute times on a shared machine move by tens of percent
between runs, so the two bundles are measured in the same run, alternately: each round measures
every engine of both bundles, each in its own process, candidate first in odd rounds and reference
first in even ones, and the ratios are taken within a round before the median over rounds.

Both bundles read the same source images, each through its own preprocessing (the input sizes
may differ): the latency of the candidate's larger input is what is being asked about.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecxr.bench.measure import measure_engine
from edgecxr.bench.run import real_inputs
from edgecxr.core.bundle import Bundle
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.provenance import library_versions, utc_now
from edgecxr.core.sysinfo import cpu_info
from edgecxr.runtime.selection import runnable_artifacts

AGAINST_SCHEMA = "edgecxr.bench-against/1"


def _side(bundle: Bundle, backends, precisions) -> dict:
    artifacts, skipped = runnable_artifacts(bundle, backends, precisions)
    return {"bundle": bundle, "artifacts": {a.name: a for a in artifacts}, "skipped": skipped}


def compare_bundles(candidate: Bundle, reference: Bundle, *, backends: list[str] | None,
                    precisions: list[str] | None, rounds: int, iterations: int, warmup: int,
                    threads: int | None, data: Path | None,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Batch-1 p50 of every engine of both bundles, paired by round; ratios are candidate / reference."""
    if rounds < 1 or iterations < 1 or warmup < 0:
        raise EdgecxrError("rounds and iterations must be positive", fix="e.g. --rounds 3 --iterations 50")
    progress = progress or (lambda text: None)
    sides = {"candidate": _side(candidate, backends, precisions), "reference": _side(reference, backends, precisions)}
    cand_inputs, source = real_inputs(candidate, data, count=16)
    ref_inputs, _ = real_inputs(reference, Path(source), count=16)
    p50: dict[str, dict[str, list[float]]] = {side: {name: [] for name in s["artifacts"]} for side, s in sides.items()}
    errors: dict[str, dict[str, str]] = {"candidate": {}, "reference": {}}
    with tempfile.TemporaryDirectory(prefix="edgecxr-bench-against-") as tmp:
        paths = {"candidate": Path(tmp) / "candidate.npy", "reference": Path(tmp) / "reference.npy"}
        np.save(paths["candidate"], cand_inputs)
        np.save(paths["reference"], ref_inputs)
        for r in range(rounds):
            order = ("candidate", "reference") if r % 2 == 0 else ("reference", "candidate")
            for side in order:
                for name, artifact in sides[side]["artifacts"].items():
                    if name in errors[side]:
                        continue
                    progress(f"round {r + 1}/{rounds}: {side} {name}")
                    row = measure_engine(artifact.backend, artifact.path, paths[side], [], iterations, warmup,
                                         threads)  # batch-1 latency only: no throughput loop
                    if "error" in row:
                        errors[side][name] = row["error"]
                    else:
                        p50[side][name].append(row["latency_ms"]["p50"])
    engines = []
    for name in sorted(set(p50["candidate"]) | set(p50["reference"])):
        cand, ref = p50["candidate"].get(name, []), p50["reference"].get(name, [])
        ok_c, ok_r = name in sides["candidate"]["artifacts"] and name not in errors["candidate"], \
            name in sides["reference"]["artifacts"] and name not in errors["reference"]
        entry = {"engine": name,
                 "candidate_p50_ms": statistics.median(cand) if ok_c else None,
                 "reference_p50_ms": statistics.median(ref) if ok_r else None,
                 "candidate_error": errors["candidate"].get(name), "reference_error": errors["reference"].get(name),
                 "rounds_ms": {"candidate": cand, "reference": ref}}
        entry["ratio"] = (statistics.median(c / f for c, f in zip(cand, ref, strict=True))
                          if ok_c and ok_r else None)
        engines.append(entry)
    failed = [{"side": side, "engine": name, "error": error} for side in ("candidate", "reference")
              for name, error in errors[side].items()]
    for side in ("candidate", "reference"):
        if sides[side]["artifacts"] and all(name in errors[side] for name in sides[side]["artifacts"]):
            reasons = "; ".join(f"{name}: {error}" for name, error in errors[side].items())
            raise EdgecxrError(f"no engine of the {side} bundle could be measured ({reasons})",
                               path=sides[side]["bundle"].folder,
                               fix="run `edgecxr parity-check` on that bundle here, or check the backend install")
    fastest = _fastest(p50, errors)
    return {
        "schema": AGAINST_SCHEMA, "created": utc_now(), "candidate": candidate.name, "reference": reference.name,
        "candidate_folder": str(candidate.folder), "reference_folder": str(reference.folder),
        "cpu": cpu_info(), "cores": os.cpu_count(), "threads": threads or "backend default (all cores)",
        "inputs": {"images": len(cand_inputs), "source": source, "candidate_shape": list(cand_inputs.shape[1:]),
                   "reference_shape": list(ref_inputs.shape[1:])},
        "rounds": rounds, "iterations": iterations, "warmup": warmup, "engines": engines, "fastest": fastest,
        "failed": failed,
        "skipped": [{"side": side, "engine": n, "reason": w} for side, s in sides.items() for n, w in s["skipped"]],
        "versions": library_versions("numpy", "onnxruntime", "openvino", "tensorrt"),
    }


def _fastest(p50: dict, errors: dict) -> dict:
    """Each round's fastest candidate engine against that round's fastest reference engine, over the
    engines that measured (each side has one: compare_bundles refuses otherwise); `failed` in the
    result says which did not (the ratio is then not the whole comparison)."""
    def ok(side):
        return {n: v for n, v in p50[side].items() if n not in errors[side]}

    cand, ref = ok("candidate"), ok("reference")
    rounds = min(min(len(v) for v in cand.values()), min(len(v) for v in ref.values()))
    ratios = [min(v[r] for v in cand.values()) / min(v[r] for v in ref.values()) for r in range(rounds)]
    best_c = min(cand, key=lambda n: statistics.median(cand[n]))
    best_r = min(ref, key=lambda n: statistics.median(ref[n]))
    return {"candidate_engine": best_c, "candidate_p50_ms": statistics.median(cand[best_c]),
            "reference_engine": best_r, "reference_p50_ms": statistics.median(ref[best_r]),
            "ratio": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)]}
