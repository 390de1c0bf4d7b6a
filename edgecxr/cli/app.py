"""The `edgecxr` command: typer app, global options, and the one place errors become exits.

Domain errors (`EdgecxrError`) are caught here, at the edge, and printed as one line with
exit code 2; `--debug` prints the traceback before that line.
"""

from __future__ import annotations

import traceback
from typing import Annotated

import typer
from typer.core import TyperGroup

from edgecxr import __version__
from edgecxr.core.errors import EdgecxrError

_DEBUG = "edgecxr.debug"  # key in click's ctx.meta, shared by every context of one invocation


class EdgecxrGroup(TyperGroup):
    """Turns domain errors raised by any subcommand into a clean exit."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgecxrError as exc:
            from rich.markup import escape

            from edgecxr.cli.console import err

            if ctx.meta.get(_DEBUG):
                err.print(traceback.format_exc(), markup=False, highlight=False)
            err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", markup=True, highlight=False,
                      soft_wrap=True)
            raise SystemExit(exc.exit_code) from None


app = typer.Typer(
    cls=EdgecxrGroup,
    name="edgecxr",
    help="Chest X-ray AI at the edge: train Swin-V2, export INT8 engines, classify what the "
         "scanner writes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        typer.echo(f"edgecxr {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
):
    ctx.meta[_DEBUG] = debug


def _register() -> None:
    from edgecxr.cli import (
        bench_cmd,
        bundle_cmd,
        classify_cmd,
        dicom_cmd,
        engine_cmd,
        export_cmd,
        gate_cmd,
        info_cmd,
        outbox_cmd,
        parity_cmd,
        runtime_cmd,
        service_cmd,
        train_cmd,
    )

    app.command("watch", help=runtime_cmd.watch.__doc__)(runtime_cmd.watch)
    app.command("classify", help=classify_cmd.classify.__doc__)(classify_cmd.classify)
    app.command("status", help=runtime_cmd.status.__doc__)(runtime_cmd.status)
    app.command("dicom-listen", help=dicom_cmd.dicom_listen.__doc__)(dicom_cmd.dicom_listen)
    app.command("parity-check", help=parity_cmd.parity_check.__doc__)(parity_cmd.parity_check)
    app.command("gate-check", help=gate_cmd.gate_check.__doc__)(gate_cmd.gate_check)
    app.command("bench", help=bench_cmd.bench.__doc__)(bench_cmd.bench)
    app.command("info", help=info_cmd.info.__doc__)(info_cmd.info)
    app.command("train", help=train_cmd.train.__doc__)(train_cmd.train)
    app.command("pretrain", help=train_cmd.pretrain.__doc__)(train_cmd.pretrain)
    app.command("evaluate", help=train_cmd.evaluate.__doc__)(train_cmd.evaluate)
    app.command("compare-runs", help=train_cmd.compare_runs.__doc__)(train_cmd.compare_runs)
    app.command("export", help=export_cmd.export.__doc__)(export_cmd.export)
    app.command("build-engine", help=engine_cmd.build_engine.__doc__)(engine_cmd.build_engine)
    app.add_typer(bundle_cmd.bundle_app, name="bundle")
    app.add_typer(service_cmd.service_app, name="service")
    app.add_typer(outbox_cmd.outbox_app, name="outbox")


_register()


def main() -> None:
    app()
