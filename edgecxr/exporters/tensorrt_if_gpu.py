"""The TensorRT target of `edgecxr export`: build here when TensorRT and a GPU exist, else say how."""

from __future__ import annotations

from pathlib import Path

from edgecxr.core.errors import EdgecxrError


def build_into_bundle(folder: Path, artifacts: list[dict], options, spec, warnings: list[str],
                      reporter) -> list[dict]:
    from edgecxr.backends.tensorrt.engine_artifact import build_engine_artifact

    precision = "int8" if options.int8 else "fp16"
    partial_manifest = {"artifacts": artifacts, "preprocess": spec.to_dict()}
    try:
        record = build_engine_artifact(folder, partial_manifest, precision)
    except EdgecxrError as exc:
        message = (f"TensorRT engine not built: {exc.cause}. The other targets were exported; "
                   "build the engine on the device with `edgecxr build-engine BUNDLE`")
        warnings.append(message)
        reporter.warn(message)
        return []
    engine = record["engine"]
    reporter.log(f"TensorRT {precision} engine built for {engine['gpu']} (TensorRT {engine['tensorrt']})")
    return [record]
