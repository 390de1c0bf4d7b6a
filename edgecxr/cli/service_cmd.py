"""`edgecxr service install`: run `edgecxr watch` (and `edgecxr dicom-listen`) as sandboxed systemd services."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, overload

import typer

service_app = typer.Typer(help="Install edgecxr watch (and dicom-listen) as systemd services.", no_args_is_help=True)


@service_app.command("install")
def install(
    inbox: Annotated[Path, typer.Option(help="The scanner's output folder to watch.")],
    out: Annotated[Path, typer.Option(help="Results folder (results.jsonl, status.json).")] = Path("/var/lib/edgecxr"),
    archive: Annotated[Path | None, typer.Option(help="Move classified inputs here.")] = None,
    quarantine: Annotated[Path | None, typer.Option(help="Move refused inputs here.")] = None,
    bundle: Annotated[Path | None, typer.Option(help="Model bundle (default: the bundled reference model).")] = None,
    user: Annotated[str, typer.Option(help="Dedicated system user the service runs as.")] = "edgecxr",
    device_class: Annotated[str, typer.Option(help="Which devices the watch unit's sandbox lets through: cpu (none), nvidia (Jetson or NVIDIA GPU, for TensorRT) or intel-gpu (GPU and NPU, for OpenVINO). OpenVINO's own device goes in --options as --openvino-device.")] = "cpu",
    options: Annotated[str, typer.Option(help="More `edgecxr watch` options, e.g. '--backend openvino --poll'.")] = "",
    executable: Annotated[Path | None, typer.Option(help="The edgecxr executable (default: this one).")] = None,
    dicom_listen: Annotated[bool, typer.Option("--dicom-listen", help="Also install edgecxr-dicom-listen.service: a DICOM Storage SCP writing into --inbox (the watch unit reads its study subfolders, as it does by default).")] = False,
    dicom_port: Annotated[int, typer.Option(help="With --dicom-listen: the port; the unit may bind no other (below 1024 it gets CAP_NET_BIND_SERVICE).")] = 11112,
    dicom_allow_ip: Annotated[str, typer.Option(help="With --dicom-listen: addresses or CIDR networks allowed to connect, comma-separated; also the unit's IP firewall (default: any).")] = "",
    dicom_options: Annotated[str, typer.Option(help="With --dicom-listen: more `edgecxr dicom-listen` options, e.g. '--allow-ae CR01 --tls-cert ... --tls-key ...'.")] = "",
    send_sr: Annotated[list[str] | None, typer.Option(metavar="AET@HOST:PORT", help="Send results as DICOM SR to this PACS (repeatable); the watch unit may then reach these addresses and no other (host names are resolved now).")] = None,
    qualify: Annotated[bool, typer.Option("--qualify", help="Run parity-check here first and keep its verdicts where the service reads them: INT8 runs only if it passed on this box.")] = False,
    qualify_data: Annotated[Path | None, typer.Option(help="With --qualify: the labelled test folder (default: the one the bundle's report names).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be done, do nothing.")] = False,
    root: Annotated[Path, typer.Option(hidden=True, help="Install below this folder instead of / (packaging, tests).")] = Path("/"),
):
    """Write the unit and its environment file, create the user and folders, enable the service."""
    from edgecxr.cli.console import comma_list, err
    from edgecxr.cli.console import out as console
    from edgecxr.core.errors import EdgecxrError
    from edgecxr.service.dicom import ListenerConfig
    from edgecxr.service.install import ServiceConfig, apply, plan, sandbox_warnings
    from edgecxr.service.steps import WriteFile

    exe = _absolute(executable or Path(shutil.which("edgecxr") or Path(sys.argv[0]).resolve()))
    listener = None
    if dicom_listen:
        listener = ListenerConfig(inbox=_absolute(inbox), executable=exe, user=user, port=dicom_port,
                                  allow_ip=tuple(comma_list(dicom_allow_ip)), options=dicom_options)
        if "--no-recursive" in options.split():  # the listener files instances by study
            raise EdgecxrError("--no-recursive in --options would hide every instance the listener "
                               "writes (it files them as INBOX/<StudyInstanceUID>/...)",
                               fix="drop --no-recursive: watch reads subfolders by default")
    if "--send-sr" in options.split():
        raise EdgecxrError("--send-sr inside --options would be blocked by the unit's network sandbox",
                           fix="give each PACS with `edgecxr service install --send-sr AET@HOST:PORT`")
    from edgecxr.dicomnet.destination import parse_destination, resolved

    pacs = tuple(str(resolved(parse_destination(d))) for d in send_sr or [])
    config = ServiceConfig(inbox=_absolute(inbox), out=_absolute(out), executable=exe,
                           archive=_absolute(archive), quarantine=_absolute(quarantine), bundle=_absolute(bundle),
                           user=user, device_class=device_class, extra_options=options, send_sr=pacs,
                           qualify=qualify, qualify_data=_absolute(qualify_data))
    steps = plan(config, root, listener, dry_run=dry_run)
    if listener is None and not config.inbox.is_dir():
        err.print(f"warning: the inbox {config.inbox} does not exist yet: create or mount it before installing",
                  markup=False, highlight=False)
    for warning in sandbox_warnings(config):
        err.print(f"warning: {warning}", markup=False, highlight=False)
    for description, _ in steps:
        if description:
            console.print(("would " if dry_run else "") + description, highlight=False)
    if dry_run:
        for _, action in steps:
            if isinstance(action, WriteFile):
                console.rule(str(action.path))
                console.print(action.text, markup=False, highlight=False)
        return
    try:
        apply(steps, user, say=lambda line: console.print(line, markup=False, highlight=False))
    except PermissionError as exc:
        raise EdgecxrError(f"permission denied ({exc})", fix="run it with sudo, or use --dry-run to see the steps") from exc
    units = "edgecxr-watch edgecxr-dicom-listen" if dicom_listen else "edgecxr-watch"
    console.print(f"done: systemctl status {units}; journalctl -u edgecxr-watch -f")


@overload
def _absolute(path: Path) -> Path: ...
@overload
def _absolute(path: None) -> None: ...
def _absolute(path: Path | None) -> Path | None:
    """The unit runs from /: a relative path would mean something else there."""
    return None if path is None else Path(os.path.abspath(path))
