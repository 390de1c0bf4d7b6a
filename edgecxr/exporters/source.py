"""What `edgecxr export` starts from: a run folder (model + run.json + report) or a model folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgecxr.core.errors import EdgecxrError


@dataclass
class ExportSource:
    model_dir: Path
    run: dict | None  # run.json of a training run, when exporting a run folder
    report_path: Path | None  # the PyTorch test report, parity-check's reference


def resolve_source(path: str | Path) -> ExportSource:
    path = Path(path)
    if not path.exists():
        raise EdgecxrError("not found", path=path, fix="give a run folder (edgecxr train --out) or RUN/model")
    if (path / "run.json").is_file() and (path / "model" / "config.json").is_file():
        report = path / "report.json"
        return ExportSource(path / "model", json.loads((path / "run.json").read_text()),
                            report if report.is_file() else None)
    if (path / "config.json").is_file():
        parent = path.parent
        run = json.loads((parent / "run.json").read_text()) if (parent / "run.json").is_file() else None
        report = parent / "report.json"
        return ExportSource(path, run, report if report.is_file() and run else None)
    raise EdgecxrError("neither a run folder nor a checkpoint folder (no run.json/model or config.json)",
                       path=path, fix="give the folder written by `edgecxr train --out` or its model/ folder")
