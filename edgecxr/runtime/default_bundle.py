"""Where the bundle comes from when the user names none: --bundle (or EDGECXR_BUNDLE), else the packaged one.

The CLI reads EDGECXR_BUNDLE through typer (edgecxr/cli/options.py), so `--help` shows it;
this module only supplies the packaged default.
"""

from __future__ import annotations

from pathlib import Path

from edgecxr.core.errors import EdgecxrError

PACKAGED = Path(__file__).resolve().parent.parent / "models" / "reference"
ENV = "EDGECXR_BUNDLE"


def resolve_bundle(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if (PACKAGED / "bundle.json").is_file():
        return PACKAGED
    raise EdgecxrError("no model bundle given and no default bundle is installed with this edgecxr",
                       fix=f"pass --bundle DIR (from `edgecxr export`) or set {ENV}=DIR")
