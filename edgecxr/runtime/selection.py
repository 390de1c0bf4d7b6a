"""Which engine of a bundle to run here, and why (logged at start).

`auto` backend: a TensorRT engine that matches this GPU, else OpenVINO, else ONNX Runtime.
`auto` precision: INT8 where the hardware has INT8 dot products (TensorRT, VNNI, AMX,
Arm dotprod), FP32 elsewhere: on AVX2-only CPUs INT8 measured slower than FP32 (OpenVINO
swinv2-tiny-256: 141 ms vs 116 ms at batch 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecxr.backends import BACKENDS, backend_installed
from edgecxr.bundle import Artifact, Bundle
from edgecxr.errors import EdgecxrError

PRECISIONS = ("auto", "int8", "fp16", "fp32")


@dataclass
class Choice:
    artifact: Artifact
    reason: str


def tensorrt_mismatch(artifact: Artifact) -> str | None:
    """None when the engine matches this machine's GPU and TensorRT, else why not."""
    from edgecxr.backends.tensorrt.compat import mismatch_here

    return mismatch_here(artifact.record.get("engine", {}), engine=str(artifact.path))


def runnable_artifacts(bundle: Bundle, backends: list[str] | None, precisions: list[str] | None):
    """The artifacts parity-check and bench measure here: (runnable, [(artifact name, why skipped)])."""
    chosen, skipped = [], []
    for artifact in bundle.artifacts:
        if backends and artifact.backend not in backends:
            continue
        if precisions and artifact.precision not in precisions:
            continue
        if not backend_installed(artifact.backend):
            skipped.append((artifact.name, f"{artifact.backend} is not installed"))
        elif artifact.backend == "tensorrt" and (why := tensorrt_mismatch(artifact)):
            skipped.append((artifact.name, why))
        else:
            chosen.append(artifact)
    if backends:
        known = {a.backend for a in bundle.artifacts}
        missing = [b for b in backends if b not in known]
        if missing:
            raise EdgecxrError(f"the bundle has no artifact for backend(s) {missing}", path=bundle.folder,
                               fix=f"choose from {sorted(known)}")
    if not chosen:
        reasons = "; ".join(f"{n}: {w}" for n, w in skipped) or "no artifact matches the filters"
        raise EdgecxrError(f"no engine to check on this machine ({reasons})", path=bundle.folder,
                           fix="install the backend (e.g. pip install 'edgecxr[openvino]') or change the filters")
    return chosen, skipped


def choose(bundle: Bundle, backend: str = "auto", precision: str = "auto",
           cpu_features: dict | None = None) -> Choice:
    if backend != "auto" and backend not in BACKENDS:
        raise EdgecxrError(f"unknown backend {backend!r}", fix=f"choose auto or one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise EdgecxrError(f"unknown precision {precision!r}", fix=f"choose one of {', '.join(PRECISIONS)}")
    if cpu_features is None:
        from edgecxr.sysinfo import cpu_info

        cpu_features = cpu_info()["features"]
    from edgecxr.sysinfo import int8_accelerated

    int8_fast = int8_accelerated(cpu_features)
    order = BACKENDS if backend == "auto" else (backend,)
    skipped: list[str] = []
    for name in order:
        candidates = [a for a in bundle.artifacts if a.backend == name and a.role != "tensorrt-source"]
        if not candidates:
            skipped.append(f"{name}: no artifact in the bundle")
            continue
        if not backend_installed(name):
            skipped.append(f"{name}: not installed")
            continue
        if name == "tensorrt":
            problems = {a.name: tensorrt_mismatch(a) for a in candidates}
            usable = [a for a in candidates if problems[a.name] is None]
            if not usable:
                skipped.append(f"tensorrt: {problems[candidates[0].name]}")
                continue
            candidates = usable
        picked = _pick_precision(name, candidates, precision, int8_fast)
        if picked is None:
            skipped.append(f"{name}: no {precision} artifact")
            continue
        artifact, why = picked
        reason = why + (f" (skipped {'; '.join(skipped)})" if skipped else "")
        return Choice(artifact, reason)
    available = ", ".join(f"{a.name}" for a in bundle.artifacts) or "none"
    raise EdgecxrError(f"no engine in the bundle can run here with backend={backend}, precision={precision} "
                       f"({'; '.join(skipped)})", path=bundle.folder,
                       fix=f"install the backend's extra (e.g. pip install 'edgecxr[openvino]') or pick another "
                           f"--backend/--precision; the bundle has: {available}")


def _pick_precision(backend: str, candidates: list[Artifact], precision: str, int8_fast: bool):
    by_precision = {a.precision: a for a in candidates}
    if precision != "auto":
        artifact = by_precision.get(precision)
        return (artifact, f"{backend} {precision}: asked for") if artifact else None
    if backend == "tensorrt":
        for p in ("int8", "fp16", "fp32"):
            if p in by_precision:
                return by_precision[p], f"tensorrt {p}: a TensorRT engine built for this GPU"
    if int8_fast and "int8" in by_precision:
        return by_precision["int8"], f"{backend} int8: this CPU has INT8 dot-product instructions (VNNI/AMX)"
    for p in ("fp32", "fp16", "int8"):
        if p in by_precision:
            why = ("this CPU has no VNNI/AMX, where INT8 measured slower than FP32" if not int8_fast
                   else "no INT8 artifact")
            return by_precision[p], f"{backend} {p}: {why}"
    return None
