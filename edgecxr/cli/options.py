"""The options several commands share, declared once: same name, help and environment variable everywhere.

Typer reads the environment variables (`envvar=`), so `--help` shows them and no command reads
the environment by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecxr.runtime.default_bundle import ENV as BUNDLE_ENV

_BUNDLE_HELP = "Model bundle folder (default: the bundled reference model)."

BundleOpt = Annotated[Path | None, typer.Option(envvar=BUNDLE_ENV, show_envvar=True, help=_BUNDLE_HELP)]
BundleArg = Annotated[Path | None, typer.Argument(envvar=BUNDLE_ENV, show_envvar=True, help=_BUNDLE_HELP)]
BackendOpt = Annotated[str, typer.Option(help="auto, tensorrt, openvino or onnxruntime.")]
PrecisionOpt = Annotated[str, typer.Option(help="auto, int8, fp16 or fp32 (auto: fastest on this hardware).")]
BackendsOpt = Annotated[str | None, typer.Option(help="Only these backends, comma-separated.")]
PrecisionsOpt = Annotated[str | None, typer.Option(help="Only these precisions, comma-separated.")]
DeviceOpt = Annotated[str, typer.Option(help="OpenVINO device: CPU, GPU, NPU or AUTO.")]
ThreadsOpt = Annotated[int | None, typer.Option(help="Inference threads (default: the backend's, all cores).")]
HintOpt = Annotated[str, typer.Option(help="OpenVINO performance hint: LATENCY (one image at a time) or THROUGHPUT.")]
ModalityOpt = Annotated[str, typer.Option(help="DICOM modalities to classify, comma-separated.")]
LogFormatOpt = Annotated[str, typer.Option(envvar="EDGECXR_LOG_FORMAT", show_envvar=True,
                                           help="text, or json: one JSON object per log line (for journald).")]

QualificationDirOpt = Annotated[Path | None, typer.Option(
    envvar="EDGECXR_QUALIFICATION_DIR", show_envvar=True,
    help="Where this box keeps parity-check's per-engine verdicts (default: ~/.local/state/edgecxr/qualification).")]
AllowUnqualifiedOpt = Annotated[bool, typer.Option(
    "--allow-unqualified", help="Run an engine that failed qualification here, or an INT8 engine never checked "
                                "here (a warning is logged on every start).")]

DEFAULT_MODALITIES = "CR,DX,DR"
