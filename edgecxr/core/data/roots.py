"""How reports, runs and bundles name data folders: relative to a named data root, never this machine's absolute path.

With EDGECXR_DATA set, a folder inside it is recorded as `$EDGECXR_DATA/kermany/test` and
found again on any machine that sets EDGECXR_DATA to its own copy; otherwise it is recorded
relative to the working directory (`../shared/data/kermany/test`), as run.json always did.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_ENV = "EDGECXR_DATA"


def portable_path(folder: str | Path) -> str:
    path = Path(folder).resolve()
    named = os.environ.get(DATA_ROOT_ENV)
    if named and path.is_relative_to(Path(named).resolve()):
        rel = path.relative_to(Path(named).resolve()).as_posix()
        return f"${DATA_ROOT_ENV}" + (f"/{rel}" if rel != "." else "")
    return Path(os.path.relpath(path, Path.cwd())).as_posix()


def resolve_recorded(recorded: str) -> Path:
    """A recorded data folder as a path here: $EDGECXR_DATA expanded, relative paths from the working directory."""
    return Path(os.path.expandvars(recorded))
