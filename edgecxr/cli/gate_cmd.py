"""`edgecxr gate-check`: measure the intended-use gate on in-scope and out-of-scope images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecxr.cli.options import (
    AllowUnqualifiedOpt,
    BackendOpt,
    BundleArg,
    PrecisionOpt,
    QualificationDirOpt,
    ThreadsOpt,
)
from edgecxr.core.defaults import DEFAULT_SEED


def gate_check(
    bundle: BundleArg = None,
    data: Annotated[Path | None, typer.Option(help="Labelled in-scope folder (CLASS/*), e.g. the test split: false refusals are measured on it, and it is shown wrongly (rotated, inverted, flipped, cropped) for the wrong-presentation set.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for gate-check.md, gate-check.json, gate-check.png and the built sets (sets/).")] = Path("gate-check"),
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "auto",
    threads: ThreadsOpt = None,
    limit_per_group: Annotated[int | None, typer.Option(help="At most this many cases per group (a quick look); default: all.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the wrong-presentation sample and the synthetic frames.")] = DEFAULT_SEED,
    allow_unqualified: AllowUnqualifiedOpt = False,
    qualification_dir: QualificationDirOpt = None,
):
    """Measure the intended-use gate: false refusals in scope, refusals and AUROC out of scope; exit 1 if a target is missed."""
    from edgecxr.backends import RunnerOptions
    from edgecxr.cli.console import out as console
    from edgecxr.cli.console import task_progress
    from edgecxr.core.bundle import load_bundle
    from edgecxr.parity.gate_check import score_cases
    from edgecxr.parity.gate_report import write_report
    from edgecxr.parity.gate_sets import build_sets
    from edgecxr.runtime.default_bundle import resolve_bundle
    from edgecxr.runtime.selection import choose

    loaded = load_bundle(resolve_bundle(bundle))
    choice = choose(loaded, backend, precision, allow_unqualified=allow_unqualified,
                    qualification_dir=qualification_dir)
    console.print(f"engine {choice.artifact.name} ({choice.reason})", highlight=False)
    with task_progress() as start:
        cases = build_sets(out / "sets", data, seed=seed, limit_per_group=limit_per_group,
                           advance=start("building the out-of-scope sets", 0))
        rows = score_cases(loaded, choice.artifact, list(cases), RunnerOptions(threads=threads),
                           start("through the gate", len(cases)))
    summary = write_report(rows, out, notes=cases.notes)
    failures = summary.get("failures", [])
    for failure in failures:
        console.print(f"[red]missed: {failure}[/red]", highlight=False)
    console.print(f"{'PASS' if not failures else 'FAIL'} -> {out / 'gate-check.md'}, {out / 'gate-check.png'}")
    if failures:
        raise typer.Exit(1)
