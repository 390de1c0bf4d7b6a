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
# Three kinds of device: this one is OpenVINO's; training's torch device is --torch-device and the service
# sandbox's is --device-class. --device stays as the older name here, where it can mean nothing else.
OpenVinoDeviceOpt = Annotated[str, typer.Option(
    "--openvino-device", "--device", help="OpenVINO device: CPU, GPU, NPU or AUTO (other backends ignore it).")]
ThreadsOpt = Annotated[int | None, typer.Option(help="Inference threads (default: the backend's, all cores).")]
HintOpt = Annotated[str, typer.Option(help="OpenVINO performance hint: LATENCY (one image at a time) or THROUGHPUT.")]
# The intended use (edgecxr.scope.intended_use): export records it, watch/classify override the bundle's.
ModalityOpt = Annotated[str | None, typer.Option(
    help="Intended use: DICOM modalities the model reads, comma-separated (default CR,DX, or the bundle's; "
         "DX includes DR).")]
ViewOpt = Annotated[str | None, typer.Option(
    "--view", help="Intended use: DICOM ViewPosition values the model reads, comma-separated (default PA,AP, or "
                   "the bundle's); a header without ViewPosition is read.")]
BodyPartOpt = Annotated[str | None, typer.Option(
    "--body-part", help="Intended use: DICOM BodyPartExamined values the model reads, comma-separated (default "
                        "CHEST, or the bundle's; CHEST includes THORAX); a header without it is read.")]
PopulationAgeOpt = Annotated[str | None, typer.Option(
    "--population-age", metavar="LOW-HIGH",
    help="Intended use: ages in years of the population the model was trained on, e.g. 1-5 ('none': not known; "
         "default: not stated, or the bundle's); an image whose PatientAge is outside is flagged on its result.")]
PopulationTextOpt = Annotated[str | None, typer.Option(
    "--population-text",
    help="Intended use: the population in words, e.g. 'children aged 1-5 (Kermany paediatric set)'.")]
RefuseAgeOutsideOpt = Annotated[bool | None, typer.Option(
    "--refuse-age-outside/--flag-age-outside",
    help="Intended use: refuse (not analyse) an image whose PatientAge is outside the population instead of "
         "flagging its result (default: flag, or the bundle's).", show_default=False)]
LogFormatOpt = Annotated[str, typer.Option(envvar="EDGECXR_LOG_FORMAT", show_envvar=True,
                                           help="text, or json: one JSON object per log line (for journald).")]

QualificationDirOpt = Annotated[Path | None, typer.Option(
    envvar="EDGECXR_QUALIFICATION_DIR", show_envvar=True,
    help="Where this box keeps parity-check's per-engine verdicts (default: ~/.local/state/edgecxr/qualification).")]
AllowUnqualifiedOpt = Annotated[bool, typer.Option(
    "--allow-unqualified", help="Run an engine that failed qualification here, or an INT8 engine never checked "
                                "here (a warning is logged on every start).")]

FROM_BUNDLE = None  # an intended-use option left out: the bundle's value (edgecxr.scope.intended_use)
