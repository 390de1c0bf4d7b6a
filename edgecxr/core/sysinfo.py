"""What this machine offers for inference: CPU INT8 features, engines, GPUs.

Read from CPUID, /proc/cpuinfo and package metadata, never by importing torch, so `edgecxr info`
is instant on a device.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

from edgecxr.core.optional import BACKEND_PACKAGES, version_of

# cpuinfo flag -> what it means for INT8 inference
INT8_FLAGS = {
    "avx2": "AVX2 (8-bit integer SIMD, no dot-product instructions)",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI (INT8 dot products)",
    "avx_vnni": "AVX-VNNI (INT8 dot products on 256-bit vectors)",
    "amx_tile": "AMX tiles",
    "amx_int8": "AMX INT8",
    "amx_bf16": "AMX BF16",
}

OTHER_DISTS = ["torch", "transformers", "accelerate", "onnx", "nncf", "pydicom", "pylibjpeg",
               "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "watchdog"]


def cpu_info(cpuinfo: str | None = None) -> dict:
    """The CPU's model and INT8 features: from CPUID where it can run (what the backends' kernel
    dispatchers see, also under an emulator, where /proc/cpuinfo still describes the host),
    else from /proc/cpuinfo (or the text given)."""
    measured = branded = None
    if cpuinfo is None:
        from edgecxr.core.cpuid import brand, int8_features

        measured, branded = int8_features(), brand()
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = platform.processor() or platform.machine(), set[str]()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    model = branded or model
    features = measured or {flag: flag in flags for flag in INT8_FLAGS}
    # Arm (Jetson): dot-product instructions play the role of VNNI
    if "asimddp" in flags:
        features["asimddp"] = True
    return {"model": model, "machine": platform.machine(), "features": features,
            "int8_acceleration": int8_accelerated(features)}


def int8_accelerated(features: dict) -> bool:
    """INT8 beats FP32 on CPUs with INT8 dot-product instructions (VNNI, AMX, Arm dotprod)."""
    return any(features.get(f) for f in INT8_DOT_PRODUCTS)


INT8_DOT_PRODUCTS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")

# The environment variables that cap the kernels' instruction set, per backend. OpenVINO's CPU
# plugin (oneDNN) honours ONEDNN_MAX_CPU_ISA (DNNL_ is oneDNN's older prefix); ONNX Runtime's
# MLAS kernels read no such variable, so a cap changes nothing there (tests/test_qualification.py runs both).
ISA_CAP_VARIABLES = {"openvino": ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")}

# oneDNN's cpu_isa values and the features of INT8_FLAGS each still allows; values not listed
# (ALL, DEFAULT, the AMX-FP16 levels, misspellings, which oneDNN ignores) mask nothing
_AVX512 = {"avx2", "avx512f"}
ONEDNN_ISA_ALLOWS = {
    "SSE41": set(), "AVX": set(), "AVX2": {"avx2"},
    "AVX2_VNNI": {"avx2", "avx_vnni"}, "AVX2_VNNI_2": {"avx2", "avx_vnni"},
    "AVX512_CORE": _AVX512, "AVX512_CORE_VNNI": _AVX512 | {"avx512_vnni"},
    "AVX512_CORE_BF16": _AVX512 | {"avx512_vnni"},
    "AVX512_CORE_AMX": _AVX512 | {"avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"},
}


def isa_caps(backend: str, environ=None) -> dict[str, str]:
    """The ISA caps set in the environment that this backend's kernels honour."""
    import os

    environ = os.environ if environ is None else environ
    return {k: environ[k] for k in ISA_CAP_VARIABLES.get(backend, ()) if environ.get(k)}


def backend_features(backend: str, features: dict, environ=None) -> dict:
    """The CPU features this backend's kernels will use: the CPU's, less what an ISA cap forbids."""
    allowed: set[str] | None = None
    for value in isa_caps(backend, environ).values():
        known = ONEDNN_ISA_ALLOWS.get(value.strip().upper())
        if known is not None:
            allowed = known if allowed is None else allowed & known
    if allowed is None:
        return dict(features)
    return {f: bool(on) and f in allowed for f, on in features.items()}


def int8_reason(backend: str, features: dict, environ=None) -> str:
    """Why INT8 can or cannot win for this backend here, in words, naming a cap when one applies."""
    used = backend_features(backend, features, environ)
    caps = ", ".join(f"{k}={v}" for k, v in isa_caps(backend, environ).items())
    dots = [f for f in INT8_DOT_PRODUCTS if used.get(f)]
    if dots:
        return f"{backend} uses INT8 dot-product instructions here ({', '.join(dots)}{'; ' + caps if caps else ''})"
    if caps and int8_accelerated(features):
        return f"{caps} limits {backend} to kernels without VNNI/AMX, although this CPU has them"
    return f"this CPU has no VNNI/AMX for {backend}"


def backends() -> dict:
    found = {}
    for backend, (_module, dists, _extra) in BACKEND_PACKAGES.items():
        version = next((v for v in (version_of(d) for d in dists) if v), None)
        found[backend] = version
    return found


def other_packages() -> dict:
    return {name: version_of(name) for name in OTHER_DISTS}


def gpus() -> list[dict]:
    """NVIDIA GPUs from nvidia-smi, or the Jetson's integrated GPU."""
    found: list[dict] = []
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,compute_cap,memory.total,driver_version",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=10, check=True)
            for line in out.stdout.strip().splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) >= 4:
                    found.append({"name": parts[0], "compute_capability": parts[1],
                                  "memory": parts[2], "driver": parts[3]})
        except (subprocess.SubprocessError, OSError):
            pass
    tegra = Path("/etc/nv_tegra_release")
    if not found and tegra.is_file():
        found.append({"name": "NVIDIA Jetson (integrated)",
                      "l4t": tegra.read_text().splitlines()[0].strip()})
    return found
