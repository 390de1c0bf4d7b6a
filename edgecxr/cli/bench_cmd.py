"""`edgecxr bench`: load time, latency, throughput and memory of each engine, to pick one for this box."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgecxr.cli.options import BackendsOpt, BundleArg, PrecisionsOpt, QualificationDirOpt, ThreadsOpt


def bench(
    bundle: BundleArg = None,
    backends: BackendsOpt = None,
    precisions: PrecisionsOpt = None,
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes for throughput, comma-separated.")] = "1,8",
    iterations: Annotated[int, typer.Option(help="Timed batch-1 runs per engine.")] = 50,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.")] = 5,
    threads: ThreadsOpt = None,
    data: Annotated[Path | None, typer.Option(help="Folder of real images for inputs (default: the reference report's test data, else the bundled samples).")] = None,
    pytorch: Annotated[bool, typer.Option(help="Add PyTorch eager on the source checkpoint as the baseline row.")] = True,
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
    qualification_dir: QualificationDirOpt = None,
    against: Annotated[Path | None, typer.Option(
        metavar="REFERENCE", help="Instead of the table: measure this bundle against REFERENCE (e.g. the shipped "
                                  "model) in alternating rounds and print each engine's batch-1 p50 ratio and the "
                                  "fastest engine's.")] = None,
    rounds: Annotated[int | None, typer.Option(
        help="With --against: paired rounds (the ratio is their median; default 3).")] = None,
    max_ratio: Annotated[float | None, typer.Option(
        help="With --against: exit 1 when the fastest engine's p50 ratio is above this (e.g. 2).")] = None,
):
    """Measure each engine: load, first inference, latency p50/p90/p99, images/s, size, peak RSS.

    With --against REFERENCE: how much slower (or faster) this bundle is than REFERENCE on this CPU.
    """
    from rich.table import Table

    from edgecxr.bench.run import run_bench
    from edgecxr.cli.console import comma_list, err
    from edgecxr.cli.console import out as console
    from edgecxr.core.bundle import load_bundle
    from edgecxr.core.errors import EdgecxrError
    from edgecxr.runtime.default_bundle import resolve_bundle

    try:
        sizes = [int(b) for b in comma_list(batch_sizes)]
    except ValueError:
        raise EdgecxrError(f"--batch-sizes {batch_sizes!r} is not a list of integers", fix="e.g. --batch-sizes 1,8") from None
    if not sizes or min(sizes) < 1 or iterations < 1 or warmup < 0:
        raise EdgecxrError("batch sizes and iterations must be positive", fix="e.g. --batch-sizes 1,8 --iterations 50")
    if max_ratio is not None and max_ratio <= 0:
        raise EdgecxrError(f"--max-ratio {max_ratio:g} is not a positive ratio", fix="e.g. --max-ratio 2")
    loaded = load_bundle(resolve_bundle(bundle))
    if against is not None:
        _against(loaded, load_bundle(resolve_bundle(against)), backends, precisions, 3 if rounds is None else rounds,
                 iterations, warmup, threads, data, json_file, max_ratio)
        return
    if max_ratio is not None or rounds is not None:
        raise EdgecxrError("--max-ratio and --rounds need --against REFERENCE",
                           fix="e.g. --against edgecxr/models/reference --max-ratio 2")
    with err.status("benchmarking") as status:
        result = run_bench(loaded, backends=comma_list(backends) or None, precisions=comma_list(precisions) or None, batch_sizes=sizes,
                           iterations=iterations, warmup=warmup, threads=threads, data=data, pytorch=pytorch,
                           progress=lambda name: status.update(f"benchmarking {name}"),
                           qualification_dir=qualification_dir)
    console.print(f"[bold]{loaded.name}[/bold] on {_machine(result)}; inputs: {result['inputs']['images']} real images "
                  f"{result['inputs']['shape']}", highlight=False)
    table = Table(title_justify="left")
    cols = ["engine", "load s", "first ms", "mean ms", "p50", "p90", "p99", *[f"img/s b={b}" for b in sizes],
            "MB", "RSS MB", "× PyTorch"]
    for col in cols:
        table.add_column(col, justify="left" if col == "engine" else "right", no_wrap=True)
    for r in result["rows"]:
        if "error" in r:
            table.add_row(r["engine"], f"[red]{r['error']}[/red]", *[""] * (len(cols) - 2))
            continue
        lat = r["latency_ms"]
        table.add_row(r["engine"], f"{r['load_s']:.2f}", f"{r['first_inference_ms']:.0f}", f"{lat['mean']:.1f}",
                      f"{lat['p50']:.1f}", f"{lat['p90']:.1f}", f"{lat['p99']:.1f}",
                      *[f"{r['throughput_ips'][str(b)]:.1f}" for b in sizes],
                      "-" if r["size_mb"] is None else f"{r['size_mb']:.1f}", f"{r['peak_rss_mb']:.0f}",
                      f"{r['speedup_vs_pytorch']:.2f}" if "speedup_vs_pytorch" in r else "-")
    console.print(table)
    for s in result["skipped"]:
        console.print(f"not measured: {s['engine']} ({s['reason']})", highlight=False)
    console.print(f"recommendation: {result['recommendation']}", highlight=False)
    _write_json(result, json_file)


def _machine(result: dict) -> str:
    """The CPU, its INT8 features and the thread setting a bench result was measured with."""
    cpu = result["cpu"]
    feats = ", ".join(k for k, v in cpu["features"].items() if v) or "none"
    return f"{cpu['model']} ({result['cores']} cores; INT8 features: {feats}); threads: {result['threads']}"


def _write_json(result: dict, json_file: Path | None) -> None:
    from edgecxr.cli.console import out as console

    if json_file is not None:
        json_file.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"JSON -> {json_file}")


def _against(candidate, reference, backends, precisions, rounds, iterations, warmup, threads, data, json_file,
             max_ratio) -> None:
    from rich.table import Table

    from edgecxr.bench.against import compare_bundles
    from edgecxr.cli.console import comma_list, err
    from edgecxr.cli.console import out as console
    from edgecxr.core.errors import EdgecxrError

    with err.status("benchmarking") as status:
        result = compare_bundles(candidate, reference, backends=comma_list(backends) or None,
                                 precisions=comma_list(precisions) or None, rounds=rounds, iterations=iterations,
                                 warmup=warmup, threads=threads, data=data,
                                 progress=lambda text: status.update(f"benchmarking {text}"))
    inputs = result["inputs"]
    console.print(f"[bold]{candidate.name}[/bold] {inputs['candidate_shape']} against [bold]{reference.name}[/bold] "
                  f"{inputs['reference_shape']} on {_machine(result)}; {rounds} alternating rounds of {iterations} "
                  f"batch-1 runs on {inputs['images']} real images", highlight=False)
    table = Table(title_justify="left")
    for col in ("engine", f"{candidate.name} p50 ms", f"{reference.name} p50 ms", "ratio"):
        table.add_column(col, justify="left" if col == "engine" else "right", no_wrap=True)

    def cell(ms, error):
        return f"[red]{error}[/red]" if error else "-" if ms is None else f"{ms:.1f}"

    for e in result["engines"]:
        table.add_row(e["engine"], cell(e["candidate_p50_ms"], e["candidate_error"]),
                      cell(e["reference_p50_ms"], e["reference_error"]),
                      "-" if e["ratio"] is None else f"{e['ratio']:.2f}x")
    console.print(table)
    for s in result["skipped"]:
        console.print(f"not measured: {s['side']} {s['engine']} ({s['reason']})", highlight=False)
    _write_json(result, json_file)
    fastest = result["fastest"]
    low, high = fastest["ratio_range"]
    line = (f"fastest engines: {fastest['candidate_engine']} p50 {fastest['candidate_p50_ms']:.1f} ms against "
            f"{fastest['reference_engine']} p50 {fastest['reference_p50_ms']:.1f} ms: ratio {fastest['ratio']:.2f}x "
            f"(rounds {low:.2f}-{high:.2f})")
    failed = ", ".join(f"{f['engine']} of the {f['side']}" for f in result["failed"])
    if failed:
        line += f", without {failed}, which failed (its error is in the table)"
    if max_ratio is None:
        console.print(line, highlight=False)
        return
    if failed:
        raise EdgecxrError(f"cannot judge the {max_ratio:g}x limit: {failed} could not be measured",
                           fix="run `edgecxr parity-check` on that bundle here, or leave that engine out "
                               "with --backends/--precisions")
    if fastest["ratio"] > max_ratio:
        console.print(f"[red]{line}: above the limit {max_ratio:g}x[/red]", highlight=False)
        raise typer.Exit(1)
    console.print(f"{line}: within the limit {max_ratio:g}x", highlight=False)
