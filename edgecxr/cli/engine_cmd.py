"""`edgecxr build-engine`: the TensorRT engine built on the device from a bundle's ONNX graph."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def build_engine(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (from edgecxr export).")],
    precision: Annotated[str, typer.Option(help="int8 (from the QDQ graph, FP16 fallback) or fp16.")] = "int8",
    max_batch: Annotated[int, typer.Option(help="Largest batch in the optimisation profile.")] = 8,
    if_needed: Annotated[bool, typer.Option("--if-needed", help="Keep an engine that already matches this GPU and TensorRT.")] = False,
):
    """Build (or rebuild) the TensorRT engine on this device from the bundle's ONNX graph."""
    from edgecxr.backends.tensorrt.engine_artifact import add_engine
    from edgecxr.cli.console import out as console
    from edgecxr.core.errors import EdgecxrError

    if precision not in ("int8", "fp16"):
        raise EdgecxrError(f"--precision {precision!r} is not int8 or fp16", fix="use --precision int8 or fp16")
    record = add_engine(bundle, precision, max_batch=max_batch, if_needed=if_needed)
    engine = record["engine"]
    verb = "kept" if record.get("reused") else "built"
    console.print(f"{verb} {record['files'][0]['path']} for {engine['gpu']} (compute capability "
                  f"{engine['compute_capability']}, TensorRT {engine['tensorrt']})")
