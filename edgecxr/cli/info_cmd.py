"""`edgecxr info`: the engines, CPU features and GPUs this machine has."""

from __future__ import annotations

from typing import Annotated

import typer


def info(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
):
    """Show installed backends and versions, the CPU's INT8 features and any GPU."""
    import json

    from rich.table import Table

    from edgecxr import __version__
    from edgecxr.cli.console import out
    from edgecxr.core import sysinfo

    cpu, backends, packages, gpus = sysinfo.cpu_info(), sysinfo.backends(), sysinfo.other_packages(), sysinfo.gpus()
    if json_out:
        out.print_json(json.dumps({"edgecxr": __version__, "cpu": cpu, "backends": backends,
                                   "packages": packages, "gpus": gpus}))
        return
    out.print(f"[bold]edgecxr {__version__}[/bold]")
    table = Table(title="inference backends", title_justify="left")
    table.add_column("backend")
    table.add_column("version")
    for name, version in backends.items():
        table.add_row(name, version or "[dim]not installed[/dim]")
    out.print(table)
    feats = Table(title=f"CPU: {cpu['model']} ({cpu['machine']})", title_justify="left")
    feats.add_column("feature")
    feats.add_column("present")
    feats.add_column("why it matters")
    for flag, meaning in sysinfo.INT8_FLAGS.items():
        feats.add_row(flag, "yes" if cpu["features"].get(flag) else "no", meaning)
    out.print(feats)
    if cpu["int8_acceleration"]:
        out.print("INT8: this CPU has INT8 dot-product instructions; INT8 engines should be "
                  "faster than FP32.")
    else:
        out.print("INT8: this CPU has no VNNI/AMX (or Arm dotprod); INT8 is usually [bold]not"
                  "[/bold] faster than FP32 here, so `auto` precision picks FP32 on the CPU.")
    if gpus:
        for gpu in gpus:
            out.print("GPU: " + ", ".join(f"{k} {v}" for k, v in gpu.items()))
    else:
        out.print("GPU: none found (no nvidia-smi, no Jetson)")
    others = ", ".join(f"{k} {v}" for k, v in packages.items() if v)
    out.print(f"other packages: {others or 'none'}")
