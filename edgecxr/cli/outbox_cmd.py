"""`edgecxr outbox retry`: queue the objects a PACS refused, or that were given up on, again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

outbox_app = typer.Typer(help="The PACS outbox of a results folder (OUT/outbox).", no_args_is_help=True)


@outbox_app.command("retry")
def retry(
    out: Annotated[Path, typer.Argument(help="The results folder `edgecxr watch --out` writes (it holds outbox/).")],
    destination: Annotated[str | None, typer.Option(help="Only this PACS, as given to --send-sr (AET@HOST:PORT); default: every one.")] = None,
):
    """Move every object in OUT/outbox/<PACS>/failed/ back to pending: a running watcher sends it again
    (its age and attempt count start afresh)."""
    from edgecxr.cli.console import out as console
    from edgecxr.core.errors import EdgecxrError
    from edgecxr.dicomnet.destination import parse_destination
    from edgecxr.dicomnet.outbox import OUTBOX, retry_failed, summary

    if not (out / OUTBOX).is_dir():
        raise EdgecxrError(f"no outbox in {out}", path=out,
                           fix="give the folder `edgecxr watch --send-sr ... --out` writes its results to")
    name = str(parse_destination(destination)) if destination else None
    moved = retry_failed(out, name)
    if name is not None and name not in moved:
        raise EdgecxrError(f"{out / OUTBOX} has no destination {name}",
                           fix="give one of: " + (", ".join(r["destination"] for r in summary(out)) or "none"))
    for dest, count in moved.items():
        console.print(f"PACS {dest}: {count} failed object(s) moved back to pending", markup=False, highlight=False)
