"""What ties a TensorRT engine to one machine, checked without importing TensorRT.

A serialized engine runs only on the GPU model (compute capability) and TensorRT version
it was built with. The bundle records both; the runtime compares them with this machine
and refuses a mismatch with the command that rebuilds the engine here.
"""

from __future__ import annotations

from edgecxr.core.errors import EdgecxrError, MissingDependencyError

TENSORRT_MISSING_FIX = (
    "on a Jetson, TensorRT comes with JetPack (sudo apt install nvidia-jetpack); on an x86 "
    "machine with an NVIDIA GPU, pip install 'edgecxr[tensorrt]'. Then run "
    "`edgecxr build-engine BUNDLE` on that device"
)


def require_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise MissingDependencyError(
            "TensorRT is not installed, so no TensorRT engine can be built or run here",
            fix=TENSORRT_MISSING_FIX) from exc
    return tensorrt


def require_gpu(gpus: list[dict]) -> dict:
    if not gpus:
        raise EdgecxrError("no NVIDIA GPU found (nvidia-smi sees none, and this is not a Jetson)",
                           fix="build TensorRT engines on the target device with "
                               "`edgecxr build-engine BUNDLE`")
    return gpus[0]


def profile_shapes(input_shape, min_batch: int = 1, opt_batch: int = 1,
                   max_batch: int = 8) -> tuple[tuple, tuple, tuple]:
    """(min, opt, max) shapes for a dynamic-batch NCHW input of shape (None|N, C, H, W)."""
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise EdgecxrError(f"batch sizes must satisfy 1 <= min ({min_batch}) <= opt ({opt_batch}) "
                           f"<= max ({max_batch})", fix="check --min-batch/--opt-batch/--max-batch")
    rest = tuple(input_shape[1:])
    if len(rest) != 3 or not all(isinstance(d, int) and d > 0 for d in rest):
        raise EdgecxrError(f"expected an NCHW input with static C, H, W, got {tuple(input_shape)}",
                           fix="export the ONNX model with edgecxr export")
    return (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest)


def engine_record(gpu: dict, trt_version: str, precision: str, shapes) -> dict:
    return {
        "gpu": gpu.get("name"), "compute_capability": gpu.get("compute_capability"),
        "tensorrt": trt_version, "precision": precision,
        "profile": {"min": list(shapes[0]), "opt": list(shapes[1]), "max": list(shapes[2])},
    }


def check_compatible(record: dict, gpu: dict | None, trt_version: str | None, *, engine: str) -> None:
    """Refuse an engine built for another GPU or TensorRT version, saying how to rebuild."""
    problems = []
    if trt_version is None:
        problems.append("TensorRT is not installed here")
    elif record.get("tensorrt") != trt_version:
        problems.append(f"built with TensorRT {record.get('tensorrt')}, this machine has {trt_version}")
    if gpu is None:
        problems.append("no NVIDIA GPU here")
    else:
        same_cc = record.get("compute_capability") == gpu.get("compute_capability")
        if record.get("gpu") != gpu.get("name") and not same_cc:
            problems.append(f"built for {record.get('gpu')} (compute capability "
                            f"{record.get('compute_capability')}), this GPU is {gpu.get('name')} "
                            f"({gpu.get('compute_capability')})")
    if problems:
        raise EdgecxrError("the TensorRT engine does not match this machine: " + "; ".join(problems),
                           path=engine, fix="rebuild it here with `edgecxr build-engine BUNDLE`")


def mismatch_here(record: dict, *, engine: str) -> str | None:
    """Why an engine with this record cannot run on this machine, or None when it can."""
    from edgecxr.core.optional import version_of
    from edgecxr.core.sysinfo import gpus

    found = gpus()
    try:
        check_compatible(record, found[0] if found else None, version_of("tensorrt"), engine=engine)
    except EdgecxrError as exc:
        return exc.cause
    return None
