"""`edgecxr service install`: run `edgecxr watch` as a sandboxed systemd service."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

service_app = typer.Typer(help="Install edgecxr watch as a systemd service.", no_args_is_help=True)


@service_app.command("install")
def install(
    inbox: Annotated[Path, typer.Option(help="The scanner's output folder to watch.")],
    out: Annotated[Path, typer.Option(help="Results folder (results.jsonl, status.json).")] = Path("/var/lib/edgecxr"),
    archive: Annotated[Path | None, typer.Option(help="Move classified inputs here.")] = None,
    quarantine: Annotated[Path | None, typer.Option(help="Move refused inputs here.")] = None,
    bundle: Annotated[Path | None, typer.Option(help="Model bundle (default: the bundled reference model).")] = None,
    user: Annotated[str, typer.Option(help="Dedicated system user the service runs as.")] = "edgecxr",
    device: Annotated[str, typer.Option(help="cpu, nvidia (Jetson or NVIDIA GPU) or intel-gpu: which devices the sandbox lets through.")] = "cpu",
    options: Annotated[str, typer.Option(help="More `edgecxr watch` options, e.g. '--backend openvino --recursive'.")] = "",
    executable: Annotated[Path | None, typer.Option(help="The edgecxr executable (default: this one).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be done, do nothing.")] = False,
    root: Annotated[Path, typer.Option(hidden=True, help="Install below this folder instead of / (packaging, tests).")] = Path("/"),
):
    """Write the unit and its environment file, create the user and folders, enable the service."""
    from edgecxr.cli.console import out as console
    from edgecxr.errors import EdgecxrError
    from edgecxr.service import ServiceConfig, apply, plan

    exe = executable or Path(shutil.which("edgecxr") or Path(sys.argv[0]).resolve())
    config = ServiceConfig(inbox=inbox.resolve(), out=out, executable=exe, archive=archive, quarantine=quarantine,
                           bundle=bundle, user=user, device=device, extra_options=options)
    steps = plan(config, root)
    for description, _ in steps:
        if description:
            console.print(("would " if dry_run else "") + description, highlight=False)
    if dry_run:
        for _, action in steps:
            if isinstance(action, tuple) and action[0] == "write":
                console.rule(str(action[1]))
                console.print(action[2], markup=False, highlight=False)
        return
    try:
        apply(steps, user)
    except PermissionError as exc:
        raise EdgecxrError(f"permission denied ({exc})", fix="run it with sudo, or use --dry-run to see the steps") from exc
    console.print("done: systemctl status edgecxr-watch; journalctl -u edgecxr-watch -f")
