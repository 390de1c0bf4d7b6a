"""What this machine offers for inference: CPU INT8 features, engines, GPUs.

Read from CPUID, /proc/cpuinfo and package metadata, never by importing torch, so `edgecxr info`
is instant on a device.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

from edgecxr.optional import BACKEND_PACKAGES, version_of

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
    dispatchers see, also under an emulator), else from /proc/cpuinfo (or the text given)."""
    measured = None
    if cpuinfo is None:
        from edgecxr.cpuid import int8_features

        measured = int8_features()
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
    features = measured or {flag: flag in flags for flag in INT8_FLAGS}
    # Arm (Jetson): dot-product instructions play the role of VNNI
    if "asimddp" in flags:
        features["asimddp"] = True
    return {"model": model, "machine": platform.machine(), "features": features,
            "int8_acceleration": int8_accelerated(features)}


def int8_accelerated(features: dict) -> bool:
    """INT8 beats FP32 on CPUs with INT8 dot-product instructions (VNNI, AMX, Arm dotprod)."""
    return any(features.get(f) for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp"))


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
