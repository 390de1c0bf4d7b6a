"""The TensorRT engine as a bundle artifact, built on the device itself (`edgecxr build-engine`).

Torch-free: a Jetson gets its engine from the bundle's QDQ ONNX graph (INT8) or its FP32
ONNX graph (FP16), and the engine is added to bundle.json with the GPU and TensorRT
version it is tied to.
"""

from __future__ import annotations

from pathlib import Path

from edgecxr.backends.tensorrt.compat import require_gpu, require_tensorrt
from edgecxr.core.errors import EdgecxrError

ENGINE_DIR = "tensorrt"


def engine_source(manifest: dict, precision: str) -> dict:
    """The ONNX artifact an engine of `precision` is built from."""
    wanted = "tensorrt-source" if precision == "int8" else "reference"
    for artifact in manifest["artifacts"]:
        if artifact.get("role") == wanted and artifact["files"][0]["path"].endswith(".onnx"):
            return artifact
    raise EdgecxrError(
        "the bundle has no signed symmetric QDQ graph to build an INT8 engine from" if precision == "int8"
        else "the bundle has no FP32 ONNX graph", fix="re-export with `edgecxr export RUN --int8 --targets tensorrt`")


def build_engine_artifact(folder: Path, manifest: dict, precision: str, *, max_batch: int = 8) -> dict:
    """Build the engine into FOLDER/tensorrt/ and return its artifact record."""
    from edgecxr.backends.tensorrt.onnx_to_engine import build_engine
    from edgecxr.core.bundle import file_entry
    from edgecxr.core.sysinfo import gpus

    require_tensorrt()
    gpu = require_gpu(gpus())
    source = engine_source(manifest, precision)
    (folder / ENGINE_DIR).mkdir(exist_ok=True)
    rel = f"{ENGINE_DIR}/model.{precision}.engine"
    shape = [None, 3, manifest["preprocess"]["height"], manifest["preprocess"]["width"]]
    record = build_engine(folder / source["files"][0]["path"], folder / rel, precision=precision, gpu=gpu,
                          input_shape=shape, max_batch=max_batch)
    return {"name": f"tensorrt-{precision}", "backend": "tensorrt", "precision": precision,
            "role": "gpu", "files": [file_entry(folder, rel)], "built_from": source["name"],
            "engine": record}


def usable_engine(manifest: dict, precision: str) -> dict | None:
    """The bundle's engine of `precision` when it matches this GPU and TensorRT version."""
    from edgecxr.backends.tensorrt.compat import mismatch_here

    for artifact in manifest["artifacts"]:
        if artifact["backend"] == "tensorrt" and artifact["precision"] == precision:
            if mismatch_here(artifact.get("engine", {}), engine=artifact["files"][0]["path"]) is None:
                return artifact
            return None
    return None


def add_engine(folder: str | Path, precision: str = "int8", *, max_batch: int = 8, if_needed: bool = False) -> dict:
    """`edgecxr build-engine`: (re)build the engine and record it in bundle.json."""
    from edgecxr.core.bundle import load_bundle, put_artifact

    bundle = load_bundle(folder)
    manifest = dict(bundle.manifest)
    if if_needed and (existing := usable_engine(manifest, precision)) is not None:
        return {**existing, "reused": True}
    record = build_engine_artifact(bundle.folder, manifest, precision, max_batch=max_batch)
    put_artifact(bundle, record)
    return record
