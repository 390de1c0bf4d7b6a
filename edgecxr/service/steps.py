"""What an install does, one step at a time: printed by `--dry-run`, carried out by `install.apply`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MakeDir:
    """A folder the service user owns (created, then chowned when the user exists)."""

    path: Path


@dataclass(frozen=True)
class WriteFile:
    path: Path
    text: str


@dataclass(frozen=True)
class Run:
    command: list[str]


@dataclass(frozen=True)
class Qualify:
    """parity-check on this box: its FAIL is a result to report, not an install error (a Run would stop)."""

    command: list[str]


Action = MakeDir | WriteFile | Run | Qualify
Step = tuple[str, Action]  # (what the operator reads, what is done); an empty description prints nothing
