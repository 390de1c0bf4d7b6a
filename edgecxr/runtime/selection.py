"""Which engine of a bundle to run here, and why (logged at start).

`auto` backend: a TensorRT engine that matches this GPU, else OpenVINO, else ONNX Runtime.
`auto` precision: INT8 only where parity-check qualified it on this hardware class
(edgecxr.core.qualification) and the backend's kernels may use the CPU's INT8 dot products (VNNI,
AMX, Arm dotprod; an ISA cap such as ONEDNN_MAX_CPU_ISA=AVX2 takes them from OpenVINO); FP32
elsewhere, with the reason: on AVX2-only CPUs INT8 measured slower than FP32 (OpenVINO
swinv2-tiny-256: 141 ms vs 116 ms at batch 1) and can disagree with the FP32 model.
An engine that failed qualification here is never chosen automatically; asking for it (or
for an INT8 engine never checked here) needs `allow_unqualified`, and the choice then
carries a warning that every start logs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecxr.backends import BACKENDS, backend_installed
from edgecxr.core.bundle import Artifact, Bundle
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.qualification import verdict_here

PRECISIONS = ("auto", "int8", "fp16", "fp32")


@dataclass
class Choice:
    artifact: Artifact
    reason: str
    warning: str | None = None  # set when an engine runs that is not qualified here: logged on every start


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


def choose(bundle: Bundle, backend: str = "auto", precision: str = "auto", cpu_features: dict | None = None,
           allow_unqualified: bool = False, qualification_dir: Path | None = None) -> Choice:
    """The engine to run here, and why; see the module docstring for the rules."""
    if backend != "auto" and backend not in BACKENDS:
        raise EdgecxrError(f"unknown backend {backend!r}", fix=f"choose auto or one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise EdgecxrError(f"unknown precision {precision!r}", fix=f"choose one of {', '.join(PRECISIONS)}")
    if cpu_features is None:
        from edgecxr.core.sysinfo import cpu_info

        cpu_features = cpu_info()["features"]
    usable, skipped = _usable(bundle, BACKENDS if backend == "auto" else (backend,))
    verdicts = {a.name: verdict_here(bundle, a, qualification_dir) for arts in usable.values() for a in arts}
    if precision == "auto":
        picked = _pick_auto(usable, verdicts, cpu_features, skipped)
    else:
        picked = _pick_asked(bundle, usable, verdicts, precision, allow_unqualified, skipped)
    if picked is not None:
        if skipped:
            picked.reason += f" (skipped {'; '.join(skipped)})"
        return picked
    available = ", ".join(f"{a.name}" for a in bundle.artifacts) or "none"
    raise EdgecxrError(f"no engine in the bundle can run here with backend={backend}, precision={precision} "
                       f"({'; '.join(skipped)})", path=bundle.folder,
                       fix=f"install the backend's extra (e.g. pip install 'edgecxr[openvino]') or pick another "
                           f"--backend/--precision; the bundle has: {available}")


def _usable(bundle: Bundle, order) -> tuple[dict[str, list[Artifact]], list[str]]:
    """Per backend, in preference order, the artifacts that can run here; and why others cannot."""
    usable, skipped = {}, []
    for name in order:
        candidates = [a for a in bundle.artifacts if a.backend == name and a.role != "tensorrt-source"]
        if not candidates:
            skipped.append(f"{name}: no artifact in the bundle")
        elif not backend_installed(name):
            skipped.append(f"{name}: not installed")
        elif name == "tensorrt":
            problems = {a.name: tensorrt_mismatch(a) for a in candidates}
            if fits := [a for a in candidates if problems[a.name] is None]:
                usable[name] = fits
            else:
                skipped.append(f"tensorrt: {problems[candidates[0].name]}")
        else:
            usable[name] = candidates
    return usable, skipped


def _pick_auto(usable, verdicts, cpu_features: dict, skipped: list[str]) -> Choice | None:
    """The fastest engine not failed here: TensorRT, else INT8 qualified here where the backend may use
    VNNI/AMX, else FP32."""
    from edgecxr.core.sysinfo import backend_features, int8_accelerated, int8_reason

    ok = {n: [a for a in arts if verdicts[a.name].status != "FAIL"] for n, arts in usable.items()}
    if trt := {a.precision: a for a in ok.get("tensorrt", [])}:
        p = next(p for p in ("int8", "fp16", "fp32") if p in trt)
        return Choice(trt[p], f"tensorrt {p}: a TensorRT engine built for this GPU")
    notes = []
    for name in ok:
        for a in (a for a in usable[name] if a.precision == "int8"):
            v, why_int8 = verdicts[a.name], int8_reason(name, cpu_features)
            if v.status == "PASS" and int8_accelerated(backend_features(name, cpu_features)):
                return Choice(a, f"{name} int8: qualified on this hardware class ({v.detail}) and {why_int8}")
            notes.append(f"{a.name} {v.detail}" if v.status != "PASS" else
                         f"{a.name} is qualified, but {why_int8}, where INT8 measured slower than FP32")
    why = "; ".join(notes) or "no INT8 artifact"
    if any("never checked" in n for n in notes):
        why += " (qualify it: edgecxr parity-check on this box)"
    for name, arts in ok.items():
        by_precision = {a.precision: a for a in arts}
        for p in ("fp32", "fp16"):
            if p in by_precision:
                return Choice(by_precision[p], f"{name} {p}: {why}")
        skipped.append(f"{name}: no engine that is not failed or unqualified here")
    return None


def _pick_asked(bundle, usable, verdicts, precision: str, allow_unqualified: bool, skipped) -> Choice | None:
    """The asked precision; one that failed here (or INT8 never checked here) needs allow_unqualified."""
    for name, arts in usable.items():
        artifact = next((a for a in arts if a.precision == precision), None)
        if artifact is None:
            skipped.append(f"{name}: no {precision} artifact")
            continue
        v = verdicts[artifact.name]
        unqualified = v.status == "FAIL" or (v.status == "none" and precision == "int8" and name != "tensorrt")
        if not unqualified:
            return Choice(artifact, f"{name} {precision}: asked for ({v.detail})")
        if not allow_unqualified:
            raise EdgecxrError(f"{artifact.name} is not qualified on this hardware class: {v.detail}",
                               path=bundle.folder, fix="run `edgecxr parity-check` on this box to qualify it, use "
                               "--precision auto, or pass --allow-unqualified to run it anyway")
        warning = f"{artifact.name} runs unqualified (--allow-unqualified): {v.detail}"
        return Choice(artifact, f"{name} {precision}: asked for, UNQUALIFIED ({v.detail})", warning)
    return None
