"""`edgecxr export`: a checkpoint to a verified model bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecxr.cli.options import (
    BodyPartOpt,
    ModalityOpt,
    PopulationAgeOpt,
    PopulationTextOpt,
    RefuseAgeOutsideOpt,
    ViewOpt,
)
from edgecxr.core.defaults import DEFAULT_SEED
from edgecxr.core.progress import Reporter


class _RichExportReporter(Reporter):
    def __init__(self, start):
        self.start = start
        from edgecxr.cli.console import err

        self.console = err

    def log(self, message: str) -> None:
        self.console.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.console.print(f"[bold yellow]warning:[/bold yellow] {message}", highlight=False)

    def task(self, description: str, total: int):
        return self.start(description, total)


def export(
    source: Annotated[Path, typer.Argument(help="Run folder (edgecxr train --out) or its model/ folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to write (must not exist unless --force).")],
    int8: Annotated[bool, typer.Option("--int8", help="Add INT8 engines calibrated on real images.")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16-compressed OpenVINO IR; FP16 TensorRT engine.")] = False,
    targets: Annotated[str, typer.Option(help="Comma-separated: onnxruntime, openvino, tensorrt.")] = "onnxruntime,openvino",
    calib_data: Annotated[Path | None, typer.Option(help="Calibration images (one subfolder per class); default: the run's training images.")] = None,
    calib_size: Annotated[int, typer.Option(help="Calibration images, a stratified seeded sample.")] = 300,
    heldout_size: Annotated[int, typer.Option(help="Held-out images (not calibration) for the agreement check.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed for the calibration and held-out samples.")] = DEFAULT_SEED,
    calib_candidates: Annotated[int | None, typer.Option(help="Calibration samples tried per INT8 engine (seeds SEED, SEED+1, ...); each engine keeps the one closest to FP32 on validation images that are not held out. Default 4, or 1 with a warning when the images are too few to choose between 4.")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
    strict: Annotated[bool, typer.Option("--strict", help="Fail when an INT8 engine agrees with FP32 on under 98% of held-out images.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle folder.")] = False,
    name: Annotated[str | None, typer.Option(help="Model name recorded in the bundle (default: the run folder's name).")] = None,
    operating_point: Annotated[str | None, typer.Option(help="Decision threshold on P(positive): sensitivity=0.95, specificity=0.9 (chosen on the validation images) or threshold=0.3. Default: argmax.")] = None,
    uncertain: Annotated[str | None, typer.Option(help="LOW,HIGH: label UNCERTAIN when LOW ≤ P(positive) < HIGH (e.g. 0.4,0.6).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Probability calibration: softmax(logits / T). Default: T fitted on the validation images (lowest NLL); give 1 for the plain softmax.", min=0.05, max=20.0)] = None,
    modality: ModalityOpt = None,
    view: ViewOpt = None,
    body_part: BodyPartOpt = None,
    population_age: PopulationAgeOpt = None,
    population_text: PopulationTextOpt = None,
    refuse_age_outside: RefuseAgeOutsideOpt = None,
    gate: Annotated[bool, typer.Option("--gate/--no-gate", help="Fit the intended-use gate's pixel rules and learned out-of-scope score on the training and validation images (about a minute per 1,000 images).")] = True,
):
    """Export a checkpoint to ONNX and INT8 engines, verified, in one model bundle."""
    from edgecxr.cli.console import comma_list, task_progress
    from edgecxr.cli.console import out as console
    from edgecxr.core.decision import check_band, parse_band, parse_operating_point
    from edgecxr.core.optional import require
    from edgecxr.exporters.pipeline import ExportOptions
    from edgecxr.exporters.pipeline import export as run_export
    from edgecxr.scope.intended_use import IntendedUse

    point, band = parse_operating_point(operating_point), parse_band(uncertain)
    use = IntendedUse().with_overrides(  # checked now: refuse a bad value before the long export
        modalities=modality, views=view, body_parts=body_part, population_age=population_age,
        population_text=population_text, refuse_age_outside=refuse_age_outside)
    if band is not None and (point is None or point[0] == "threshold"):
        check_band(band, point[1] if point else None, 2)  # known now: refuse before the long export
    require("torch", "export")
    require("onnx", "export")
    options = ExportOptions(out=out, int8=int8, fp16=fp16, targets=tuple(comma_list(targets)),
                            calib_data=calib_data, calib_size=calib_size, heldout_size=heldout_size, seed=seed,
                            calib_candidates=calib_candidates,
                            opset=opset, strict=strict, force=force, name=name, operating_point=point,
                            uncertain=band, temperature=temperature, intended_use=use.to_manifest(), gate=gate)
    with task_progress() as start:
        result = run_export(source, options, _RichExportReporter(start))
    from edgecxr.cli.bundle_cmd import print_summary
    from edgecxr.core.bundle import load_bundle

    print_summary(load_bundle(result.bundle), console)
    console.print(f"bundle written to {result.bundle} in {result.seconds:.0f} s")
