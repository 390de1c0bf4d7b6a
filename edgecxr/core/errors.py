"""Errors a user can act on.

Every failure that comes from input (a folder, a file, an option) is raised as an
`EdgecxrError` carrying the path, the cause and the fix, so the CLI can print one line and
exit with code 2 instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class EdgecxrError(Exception):
    """A problem with the user's input, stated as path + cause + fix."""

    exit_code = 2

    def __init__(self, cause: str, *, path: str | Path | None = None, fix: str | None = None):
        self.cause = cause
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.cause}" if self.path else self.cause
        if self.fix:
            text = f"{text.rstrip('.')}. Fix: {self.fix}"
        return text


class MissingDependencyError(EdgecxrError):
    """An optional library is needed for this command but not installed."""


class DataError(EdgecxrError):
    """A data folder does not have the layout or content edgecxr needs."""


class DecodeError(EdgecxrError):
    """One input file cannot be turned into an image.

    `code` is a stable machine-readable reason (written to results files), the message the
    human one.
    """

    def __init__(self, code: str, cause: str, *, path=None, fix=None):
        self.code = code
        super().__init__(cause, path=path, fix=fix)
