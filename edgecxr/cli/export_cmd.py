"""`edgecxr export`, `edgecxr build-engine` and `edgecxr bundle inspect`."""

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
from edgecxr.defaults import DEFAULT_SEED
from edgecxr.progress import Reporter

bundle_app = typer.Typer(help="Look into model bundles.", no_args_is_help=True)


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
    from edgecxr.decision import check_band, parse_band, parse_operating_point
    from edgecxr.exporters.pipeline import ExportOptions
    from edgecxr.exporters.pipeline import export as run_export
    from edgecxr.optional import require
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
                            uncertain=band, intended_use=use.to_manifest(), gate=gate)
    with task_progress() as start:
        result = run_export(source, options, _RichExportReporter(start))
    from edgecxr.bundle import load_bundle

    _print_summary(load_bundle(result.bundle), console)
    console.print(f"bundle written to {result.bundle} in {result.seconds:.0f} s")


def build_engine(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (from edgecxr export).")],
    precision: Annotated[str, typer.Option(help="int8 (from the QDQ graph, FP16 fallback) or fp16.")] = "int8",
    max_batch: Annotated[int, typer.Option(help="Largest batch in the optimisation profile.")] = 8,
    if_needed: Annotated[bool, typer.Option("--if-needed", help="Keep an engine that already matches this GPU and TensorRT.")] = False,
):
    """Build (or rebuild) the TensorRT engine on this device from the bundle's ONNX graph."""
    from edgecxr.backends.tensorrt.engine_artifact import add_engine
    from edgecxr.cli.console import out as console
    from edgecxr.errors import EdgecxrError

    if precision not in ("int8", "fp16"):
        raise EdgecxrError(f"--precision {precision!r} is not int8 or fp16", fix="use --precision int8 or fp16")
    record = add_engine(bundle, precision, max_batch=max_batch, if_needed=if_needed)
    engine = record["engine"]
    verb = "kept" if record.get("reused") else "built"
    console.print(f"{verb} {record['files'][0]['path']} for {engine['gpu']} (compute capability "
                  f"{engine['compute_capability']}, TensorRT {engine['tensorrt']})")


@bundle_app.command("inspect")
def inspect(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    verify: Annotated[bool, typer.Option(help="Check every artifact's sha256.")] = True,
):
    """Show a bundle's classes, preprocessing, artifacts, agreement and provenance."""
    from edgecxr.bundle import load_bundle
    from edgecxr.cli.console import out as console

    _print_summary(load_bundle(bundle, verify=verify), console, verified=verify)


def _print_summary(bundle, console, verified: bool = True) -> None:
    from rich.table import Table

    m = bundle.manifest
    spec = bundle.spec
    console.print(f"[bold]{bundle.name}[/bold]  ({bundle.folder}, schema {m['schema']}, created {m['created']})")
    from edgecxr.decision import DecisionRule

    rule = DecisionRule.from_manifest(m, bundle.folder / "bundle.json")
    console.print(f"classes {bundle.class_names} (positive: {m['positive_class']}), decision: {rule.describe()}")
    point = rule.operating_point
    if point:
        got = point["achieved"]
        console.print(f"operating point {point['target']}={point['value']} chosen on {point['images']} {point['split']} "
                      f"images: sensitivity {_pct(got['sensitivity'])}, specificity {_pct(got['specificity'])} there",
                      highlight=False)
    from edgecxr.scope.intended_use import IntendedUse

    use = IntendedUse.from_manifest(m)
    console.print(f"intended use: {use.describe()}"
                  + ("" if "intended_use" in m else " (not recorded in this bundle: the defaults)"), highlight=False)
    console.print(_gate_line(m.get("gate")), highlight=False)
    console.print(f"input {m['input']['name']} {m['input']['shape']} {m['input']['dtype']}; preprocessing: resize "
                  f"{spec.height}x{spec.width} {spec.interpolation}, {spec.channels}, mean {list(spec.mean)}, "
                  f"std {list(spec.std)}")
    heldout = next((a.record["agreement"]["images"] for a in bundle.artifacts if a.record.get("agreement")), 0)
    title = (f"artifacts{' (sha256 verified)' if verified else ''}; agreement with FP32 ONNX on "
             f"{heldout} held-out images")
    table = Table(title=title, title_justify="left")
    for col in ("artifact", "MB", "agree", "max|Δp|", "ms b=1"):
        table.add_column(col, justify="left" if col == "artifact" else "right", no_wrap=True)
    for a in bundle.artifacts:
        agree = a.record.get("agreement")
        table.add_row(a.name, f"{a.size_bytes / 1e6:.2f}",
                      f"{100 * agree['agreement']:.1f}%" if agree else "-",
                      f"{agree['max_abs_prob_diff']:.4f}" if agree else "-",
                      str(a.record.get("latency_ms_batch1", "-")))
    console.print(table)
    check = m.get("onnx_export", {}).get("verification")
    if check:
        console.print(f"ONNX vs PyTorch: max |logit diff| {check['max_abs_logit_diff']:.2e} on {check['images']} images")
    calib = m.get("calibration")
    if calib:
        _print_calibration(calib, bundle.artifacts, console)
    src = m.get("source", {})
    console.print(f"source checkpoint sha256 {str(src.get('checkpoint_sha256'))[:16]}…, reference report: "
                  f"{src.get('reference_report') or 'none'}")
    for w in m.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)


def _print_calibration(calib: dict, artifacts, console) -> None:
    if "seed" in calib:  # bundles before calibration candidates: one sample
        what = f"seed {calib['seed']}, fingerprint {calib['fingerprint'][:16]}…"
    else:
        chosen = ", ".join(f"{a.name} {a.record['quantization']['calibration_seed']}" for a in artifacts
                           if "calibration_seed" in a.record.get("quantization", {}))
        what = f"{len(calib['seeds'])} candidate sample(s), seeds kept: {chosen}"
        if calib.get("selection"):
            what += f"; chosen on {calib['selection']['size']} selection images"
    console.print(f"calibration: {calib['size']} images from {calib['source']} ({what}); held-out: "
                  f"{calib['heldout']['size']} images"
                  + (f" ({calib['heldout']['what']})" if calib["heldout"].get("what") else ""), highlight=False)


def _gate_line(gate: dict | None) -> str:
    """The gate's pixel and learned stages as export fitted them, or why they are missing."""
    if not gate:
        return "intended-use gate: tags only (this bundle records no pixel or learned stage: re-export it to add them)"
    validation, fit = gate.get("validation") or {}, gate.get("fit") or {}
    return (f"intended-use gate: tags, pixels, learned (fitted on {fit.get('fit_images', '?')} training images; "
            f"threshold {gate['learned']['threshold']:.3f} refuses {_pct(validation.get('refusal_rate'))} of "
            f"{validation.get('images', '?')} validation images)")


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}%"
