"""`edgecxr bundle inspect`, and the bundle summary that `edgecxr export` prints too."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

bundle_app = typer.Typer(help="Look into model bundles.", no_args_is_help=True)


@bundle_app.command("inspect")
def inspect(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    verify: Annotated[bool, typer.Option(help="Check every artifact's sha256.")] = True,
):
    """Show a bundle's classes, preprocessing, artifacts, agreement and provenance."""
    from edgecxr.cli.console import out as console
    from edgecxr.core.bundle import load_bundle

    print_summary(load_bundle(bundle, verify=verify), console, verified=verify)


def print_summary(bundle, console, verified: bool = True) -> None:
    from rich.table import Table

    m = bundle.manifest
    spec = bundle.spec
    console.print(f"[bold]{bundle.name}[/bold]  ({bundle.folder}, schema {m['schema']}, created {m['created']})")
    from edgecxr.core.decision import DecisionRule

    rule = DecisionRule.from_manifest(m, bundle.folder / "bundle.json")
    console.print(f"classes {bundle.class_names} (positive: {m['positive_class']}), decision: {rule.describe()}")
    point = rule.operating_point
    if point:
        got = point["achieved"]
        console.print(f"operating point {point['target']}={point['value']} chosen on {point['images']} {point['split']} "
                      f"images: sensitivity {_pct(got['sensitivity'])}, specificity {_pct(got['specificity'])} there",
                      highlight=False)
    console.print(_calibration_line(m.get("probability_calibration")), highlight=False)
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


def _calibration_line(record: dict | None) -> str:
    if not record:
        return "probabilities: plain softmax (no temperature recorded: exported before calibration)"
    return (f"probabilities: softmax(logits / {record['temperature']:.3f}), fitted on {record['images']} "
            f"{record['fitted_on']} images: ECE (15 bins) {record['ece_before']:.4f} -> {record['ece_after']:.4f}")
