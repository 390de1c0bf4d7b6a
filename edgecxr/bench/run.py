"""The bench table: every engine of the bundle (and PyTorch eager, when installed) on real images."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecxr.bench.measure import measure_engine, measure_pytorch
from edgecxr.core.bundle import Bundle
from edgecxr.core.data.decode import SUPPORTED_SUFFIXES
from edgecxr.core.data.roots import resolve_recorded
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.optional import available
from edgecxr.core.preprocess import load_model_inputs
from edgecxr.core.provenance import library_versions, utc_now
from edgecxr.core.sysinfo import backend_features, cpu_info, int8_accelerated, int8_reason
from edgecxr.runtime.selection import choose, runnable_artifacts

BENCH_SCHEMA = "edgecxr.bench/1"


def real_inputs(bundle: Bundle, data: Path | None, count: int) -> tuple[np.ndarray, str]:
    if data is None:
        ref = bundle.reference_report_path()
        if ref is not None:
            import json

            root = resolve_recorded(json.loads(ref.read_text()).get("data", {}).get("root", ""))
            data = root if root.is_dir() else None
    if data is None:
        from edgecxr.samples import SAMPLE_DIR

        data = SAMPLE_DIR if SAMPLE_DIR.is_dir() else None
    if data is None:
        raise EdgecxrError("bench needs real images and found none", fix="pass --data DIR (any folder of PNG, JPEG "
                           "or DICOM files)")
    files = sorted(p for p in Path(data).rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES)
    if not files:
        raise EdgecxrError("no PNG, JPEG or DICOM images here", path=data, fix="pass --data with real images")
    step = max(1, len(files) // count)
    picked = files[::step][:count]
    return load_model_inputs(picked, bundle.spec), str(data)


def run_bench(bundle: Bundle, *, backends: list[str] | None, precisions: list[str] | None, batch_sizes: list[int],
              iterations: int, warmup: int, threads: int | None, data: Path | None, pytorch: bool = True,
              progress: Callable[[str], None] | None = None, qualification_dir: Path | None = None) -> dict:
    progress = progress or (lambda name: None)
    artifacts, skipped = runnable_artifacts(bundle, backends, precisions)
    inputs, source = real_inputs(bundle, data, count=max(16, 2 * max(batch_sizes)))
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecxr-bench-") as tmp:
        inputs_path = Path(tmp) / "inputs.npy"
        np.save(inputs_path, inputs)
        checkpoint = Path(bundle.manifest.get("source", {}).get("checkpoint", ""))
        if pytorch and available("torch") and (checkpoint / "config.json").is_file():
            progress("pytorch eager")
            rows.append({"engine": "pytorch-eager", "backend": "pytorch", "precision": "fp32", "size_mb": None,
                         **measure_pytorch(checkpoint, inputs_path, batch_sizes, iterations, warmup, threads)})
        elif pytorch:
            skipped.append(("pytorch-eager", "torch not installed or the source checkpoint is not on this machine"))
        for artifact in artifacts:
            progress(artifact.name)
            rows.append({"engine": artifact.name, "backend": artifact.backend, "precision": artifact.precision,
                         "size_mb": artifact.size_bytes / 1e6,
                         **measure_engine(artifact.backend, artifact.path, inputs_path, batch_sizes, iterations,
                                          warmup, threads)})
    baseline = next((r for r in rows if r["engine"] == "pytorch-eager" and "error" not in r), None)
    for row in rows:
        if baseline and "error" not in row:
            row["speedup_vs_pytorch"] = baseline["latency_ms"]["mean"] / row["latency_ms"]["mean"]
    return {
        "schema": BENCH_SCHEMA, "created": utc_now(), "bundle": bundle.name, "cpu": cpu_info(),
        "cores": os.cpu_count(), "threads": threads or "backend default (all cores)",
        "inputs": {"images": len(inputs), "source": source, "shape": list(inputs.shape[1:])},
        "iterations": iterations, "warmup": warmup, "batch_sizes": batch_sizes, "rows": rows,
        "skipped": [{"engine": n, "reason": w} for n, w in skipped],
        "recommendation": recommend(rows, cpu_info(), _auto_choice(bundle, qualification_dir)),
        "versions": library_versions("numpy", "onnxruntime", "openvino", "tensorrt", "torch"),
    }


def _auto_choice(bundle: Bundle, qualification_dir: Path | None):
    """What watch --precision auto runs here, or why nothing: bench recommends the same engine."""
    try:
        return choose(bundle, qualification_dir=qualification_dir)
    except EdgecxrError as exc:
        return exc.cause


def recommend(rows: list[dict], cpu: dict, choice) -> str:
    ok = [r for r in rows if "error" not in r and r["backend"] != "pytorch"]
    if not ok:
        return "no engine could be measured"
    if isinstance(choice, str):
        return f"no engine qualifies here: {choice}"
    best = min(ok, key=lambda r: r["latency_ms"]["p50"])
    picked = next((r for r in ok if r["engine"] == choice.artifact.name), None)
    text = f"pick {choice.artifact.name}, what watch --precision auto runs here: {choice.reason}"
    if picked is not None:
        text += f"; p50 {picked['latency_ms']['p50']:.1f} ms"
    if best is not picked:
        text += (f"; {best['engine']} measured faster (p50 {best['latency_ms']['p50']:.1f} ms) but is not chosen: "
                 "engine choice trusts only INT8 qualified on this hardware class by parity-check")
    same = {r["precision"]: r for r in ok if r["backend"] == best["backend"] and "symmetric" not in r["engine"]}
    if "int8" in same and "fp32" in same and same["int8"]["latency_ms"]["p50"] > same["fp32"]["latency_ms"]["p50"]:
        used = backend_features(best["backend"], cpu["features"])
        why = (f"{int8_reason(best['backend'], cpu['features'])}, so INT8 has no dot-product instructions to win "
               "with" if not int8_accelerated(used) else "INT8 kernels do not pay off for this model size on this CPU")
        text += f"; INT8 is slower than FP32 on {best['backend']} here: {why}"
    return text
