"""Shared rich consoles, progress bars and the training reporter for the CLI."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from edgecxr.core.progress import Reporter

out = Console()  # results, tables
err = Console(stderr=True)  # logs, progress, errors
for _console in (out, err):
    if not _console.is_terminal and "COLUMNS" not in os.environ:
        _console.width = 160  # logs and pipes: keep tables whole instead of squeezing them to 80 columns


def comma_list(value: str | None) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']: how every comma-separated option is read."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def logger(console, log_format: str):
    """Plain lines for people, or one JSON object per line for journald and log shippers."""
    from edgecxr.core.errors import EdgecxrError

    if log_format not in ("text", "json"):
        raise EdgecxrError(f"--log-format {log_format!r} is not text or json", fix="use --log-format text or json")

    def say(message: str, **fields) -> None:
        if log_format == "json":
            from edgecxr.core.provenance import utc_now

            payload = {"time": utc_now(), "message": message, **{k: v for k, v in fields.items() if v is not None}}
            console.out(json.dumps(payload, ensure_ascii=False), highlight=False)
        else:
            console.print(message, markup=False, highlight=False)

    return say


def progress() -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TaskProgressColumn(), TimeElapsedColumn(), TextColumn("eta"),
        TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
        console=err, transient=False,
    )


@contextmanager
def task_progress():
    """Yields `start(description, total) -> advance(n)` backed by one rich progress display."""
    with progress() as bar:
        def start(description: str, total: int):
            task = bar.add_task(description, total=total, info="")
            return lambda n=1: bar.advance(task, n)
        yield start


class RichReporter(Reporter):
    """Draws the training loop: one bar per epoch (loss, accuracy, images/s, ETA)."""

    def __init__(self):
        self.bar = progress()

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def log(self, message: str) -> None:
        self.bar.console.print(message)

    def warn(self, message: str) -> None:
        self.bar.console.print(f"[bold yellow]warning:[/bold yellow] {message}", highlight=False)

    def task(self, description: str, total: int):
        task = self.bar.add_task(description, total=total, info="")
        return lambda n=1: self.bar.advance(task, n)

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.current = self.bar.add_task(f"epoch {epoch}/{epochs}", total=steps, info="")

    def step(self, loss: float, acc: float, images_per_s: float) -> None:
        self.bar.update(self.current, advance=1,
                        info=f"loss {loss:.4f} acc {100 * acc:.1f}% {images_per_s:.1f} img/s")

    def epoch_end(self, row: dict) -> None:
        self.bar.remove_task(self.current)
        mark = " [green]best[/green]" if row.get("best") else ""
        self.bar.console.print(
            f"epoch {row['epoch']:>3}: train loss {row['train_loss']:.4f} "
            f"acc {100 * row['train_acc']:.1f}% | val loss {row['val_loss']:.4f} "
            f"acc {100 * row['val_acc']:.1f}% | {row['images_per_s']:.1f} img/s, "
            f"{row['seconds']:.0f} s, data wait {100 * row['data_wait_share']:.1f}%{mark}")
