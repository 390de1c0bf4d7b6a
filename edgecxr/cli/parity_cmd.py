"""`edgecxr parity-check`: the evidence that each engine classifies as well as the validated model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecxr.cli.options import BackendsOpt, BundleArg, PrecisionsOpt, QualificationDirOpt, ThreadsOpt


def parity_check(
    bundle: BundleArg = None,
    data: Annotated[Path | None, typer.Option(help="Labelled test folder (default: the one the reference report names).")] = None,
    reference: Annotated[Path | None, typer.Option(help="PyTorch report.json (default: the one inside the bundle).")] = None,
    backends: BackendsOpt = None,
    precisions: PrecisionsOpt = None,
    max_accuracy_drop: Annotated[float, typer.Option(help="Largest allowed accuracy drop, percentage points.")] = 1.0,
    max_recall_drop: Annotated[float, typer.Option(help="Largest allowed recall drop per class, percentage points.")] = 2.0,
    min_agreement: Annotated[float, typer.Option(help="Smallest allowed share of predictions equal to PyTorch's.")] = 0.995,
    out: Annotated[Path, typer.Option(help="Folder for parity.md, parity.json and parity.png.")] = Path("parity"),
    threads: ThreadsOpt = None,
    qualification_dir: QualificationDirOpt = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also test the explanation maps: deletion/insertion vs random maps, agreement with PyTorch's maps, model randomisation; writes explain.png.")] = False,
    explain_images: Annotated[int, typer.Option(help="Test images to map with --explain (spread over the classes).")] = 40,
    explain_grid: Annotated[str, typer.Option(help="Occluding square and step as fractions of the image side, PATCH/STRIDE.")] = "0.25/0.125",
    checkpoint: Annotated[Path | None, typer.Option(help="PyTorch checkpoint for --explain (default: the bundle's source, if it is here).")] = None,
):
    """Prove each engine matches the PyTorch test-set report: exit 0 all PASS, 1 any FAIL, 2 bad input."""
    from rich.table import Table

    from edgecxr.backends import RunnerOptions
    from edgecxr.cli.console import comma_list, task_progress
    from edgecxr.cli.console import out as console
    from edgecxr.core.bundle import load_bundle
    from edgecxr.core.reporting import load_report
    from edgecxr.parity import report
    from edgecxr.parity.check import Tolerances, run_parity
    from edgecxr.runtime.default_bundle import resolve_bundle

    loaded = load_bundle(resolve_bundle(bundle))
    tolerances = Tolerances(max_accuracy_drop, max_recall_drop, min_agreement)
    request = _explain_request(explain_images, explain_grid, checkpoint) if explain else None
    with task_progress() as start:
        result = run_parity(loaded, data=data, reference=reference, backends=comma_list(backends) or None,
                            precisions=comma_list(precisions) or None, tolerances=tolerances,
                            options=RunnerOptions(threads=threads), progress=start, explain=request)
    qualified = _record_qualification(loaded, result, tolerances, qualification_dir)
    ref = load_report(result["reference"]["path"])  # the report run_parity compared with, resolved there
    written = report.write(result, {r["path"]: r for r in ref["rows"]}, out,
                           (loaded.spec, request.maps) if request else None)
    band = result["decision"].get("uncertain") is not None
    table = Table(title=f"parity with the PyTorch report on {result['data']['n_images']} images "
                        f"(PyTorch accuracy {100 * result['reference']['metrics']['accuracy']:.2f}%)",
                  title_justify="left", caption=f"rule: {result['decision']['description']}", caption_justify="left")
    gated = any(e.get("gate") for e in result["engines"])
    columns = ("engine", "verdict", "accuracy", "Δ pp", "agree", "flips", *(("uncertain",) if band else ()),
               "McNemar p", "ECE", *(("gate agree",) if gated else ()))
    for col in columns:
        table.add_column(col, justify="left" if col in ("engine", "verdict") else "right", no_wrap=True)
    for e in result["engines"]:
        colour = "green" if e["verdict"] == "PASS" else "red"
        table.add_row(e["artifact"], f"[{colour}]{e['verdict']}[/{colour}]", f"{100 * e['metrics']['accuracy']:.2f}%",
                      f"{100 * e['deltas']['accuracy']:+.2f}", f"{100 * e['agreement']:.1f}%", str(len(e["flipped"])),
                      *((f"{e['uncertain']['engine']} (PyTorch {e['uncertain']['reference']})",) if band else ()),
                      f"{e['mcnemar']['p_value']:.3g}", f"{e['ece']:.3f}", *((_gate_cell(e),) if gated else ()))
    console.print(table)
    for e in result["engines"]:
        for failure in e["failures"]:
            console.print(f"[red]{e['artifact']}: {failure}[/red]", highlight=False)
    if "explain" in result:
        _print_explain(result["explain"], console)
    for s in result["skipped"]:
        console.print(f"not checked here: {s['artifact']} ({s['reason']})", highlight=False)
    console.print(qualified, highlight=False)
    console.print(_auto_choice(loaded, qualification_dir), highlight=False)
    console.print(f"overall: {result['verdict']}  ->  {', '.join(str(p) for p in written)}")
    if result["verdict"] != "PASS":
        raise typer.Exit(1)


def _gate_cell(engine: dict) -> str:
    """The learned gate's decisions on this engine against the FP32 graph's (same images)."""
    gate = engine.get("gate") or {}
    share = gate.get("agreement")
    return "n/a" if share is None else f"{100 * share:.1f}% ({len(gate['changed'])})"


def _record_qualification(bundle, result: dict, tolerances, folder) -> str:
    """Keep the verdicts as this box's qualification, unless the tolerances were loosened."""
    from edgecxr.core import qualification

    if not tolerances.at_least_default():
        result["qualification"] = None
        return "not recorded as qualification: the tolerances are looser than the defaults"
    path = qualification.record(bundle, result["engines"], result["data"], folder)
    result["qualification"] = str(path)
    classes = sorted({qualification.describe(qualification.hardware_class(e["backend"])) for e in result["engines"]})
    return f"verdicts recorded as qualification for {'; '.join(classes)} -> {path}"


def _auto_choice(bundle, folder) -> str:
    """What watch/classify --precision auto now run here, so the three commands visibly agree."""
    from edgecxr.core.errors import EdgecxrError
    from edgecxr.runtime.selection import choose

    try:
        choice = choose(bundle, qualification_dir=folder)
    except EdgecxrError as exc:
        return f"watch --precision auto: no engine here ({exc.cause})"
    return f"watch --precision auto runs here: {choice.artifact.name} ({choice.reason})"


def _explain_request(images: int, grid: str, checkpoint: Path | None):
    from edgecxr.core.errors import EdgecxrError
    from edgecxr.explain.occlusion import Grid
    from edgecxr.parity.check import ExplainRequest

    try:
        patch, stride = (float(v) for v in grid.split("/"))
    except ValueError:
        raise EdgecxrError(f"--explain-grid {grid!r} is not PATCH/STRIDE", fix="e.g. --explain-grid 0.25/0.125") from None
    if not (0 < stride <= patch <= 1) or images < 2:
        raise EdgecxrError(f"--explain-grid {grid} / --explain-images {images}: need 0 < STRIDE <= PATCH <= 1 and "
                           "2 images or more", fix="e.g. --explain-grid 0.25/0.125 --explain-images 40")
    return ExplainRequest(images=images, grid=Grid(patch, stride), checkpoint=checkpoint)


def _print_explain(section: dict, console) -> None:
    from rich.table import Table

    g = section["grid"]
    table = Table(title=f"explanation maps on {section['images']} images ({g['patch_px']} px squares, "
                        f"{g['stride_px']} px steps)", title_justify="left")
    for col in ("model", "deletion (random)", "insertion (random)", "ρ vs PyTorch", "no map", "ms/map"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    models = ([("PyTorch", section["pytorch"])] if section["pytorch"] else [])
    for name, m in models + [(e["artifact"], e) for e in section["engines"]]:
        rho = m.get("rank_correlation_with_pytorch")
        table.add_row(name, f"{m['deletion']:.3f} ({m['random_deletion']:.3f})",
                      f"{m['insertion']:.3f} ({m['random_insertion']:.3f})", "—" if rho is None else f"{rho['mean']:.3f}",
                      str(m["no_map"]), f"{m['ms_per_map_median']:.0f}")
    console.print(table)
    r = section["randomisation"]
    if r is None:
        console.print(f"no PyTorch maps: {section.get('pytorch_skipped')}", highlight=False)
    else:
        console.print(f"randomised-weight maps vs trained: ρ = {r['rank_correlation_with_trained']['mean']:.3f} "
                      f"(must be under {r['limit']})", highlight=False)
    for failure in section["failures"]:
        console.print(f"[red]explain: {failure}[/red]", highlight=False)
