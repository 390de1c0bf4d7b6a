"""Several training runs side by side, on one validation split: the seeds of a recipe, or recipes.

Each run's checkpoint is scored on the validation images of one run (`--val-of`, by default
the first), so every row is read on the same images; a run that trained on some of them is
flagged with how many (`leaked`), since its validation figures are then optimistic. The test
figures are read from each run's own test report, never computed here: the test split chooses
nothing, and `preferred` is picked on validation alone (accuracy, then loss, the rule `train`
chooses its checkpoint by), among the runs that did not train on the validation images.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgecxr.core.data.folders import Sample, Split
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.metrics import expected_calibration_error, negative_log_likelihood
from edgecxr.core.reporting import build_report, rows_from_probabilities

# (key, heading, as percent) of the figures compared; "val_" ones are computed here
VAL_FIGURES = (("val_accuracy", "val acc", True), ("val_auc", "val AUC", False),
               ("val_recall_NORMAL", "val NORMAL recall", True), ("val_ece", "val ECE", False))
TEST_FIGURES = (("test_accuracy", "test acc", True), ("test_auc", "test AUC", False),
                ("test_recall_NORMAL", "test NORMAL recall", True),
                ("test_recall_PNEUMONIA", "test PNEUMONIA recall", True), ("test_ece", "test ECE", False))


def read_run(folder: str | Path) -> dict:
    folder = Path(folder)
    record_path = folder / "run.json"
    if not record_path.is_file():
        raise EdgecxrError("not a training run: no run.json", path=folder,
                           fix="give run folders written by `edgecxr train`")
    record = json.loads(record_path.read_text())
    if not (folder / "model" / "config.json").is_file():
        raise EdgecxrError("the run has no checkpoint (model/config.json)", path=folder,
                           fix="give runs whose model/ folder was kept")
    if record.get("status") != "finished":
        raise EdgecxrError(f"the run has not finished (status {record.get('status')!r})", path=folder,
                           fix="let it finish, or continue it with `edgecxr train ... --resume`")
    return record


def validation_split(record: dict, data_root: Path | None = None) -> Split:
    """The run's recorded validation images; `data_root` replaces the recorded data folder."""
    classes = list(record["classes"])
    root = Path(record["split"]["val_root"])
    if data_root is not None:
        root = Path(data_root) / Path(record["split"]["val_root"]).name
    samples = [Sample(root / rel, rel, classes.index(rel.split("/")[0])) for rel in record["split"]["val"]]
    missing = [s.path for s in samples if not s.path.is_file()]
    if missing:
        raise EdgecxrError(f"{len(missing)} of the run's validation images are missing, e.g. {missing[0]}",
                           path=root, fix="run from the folder the run was trained from, or pass --data")
    return Split("val", root, classes, samples)


def score(folder: Path, split: Split) -> dict:
    """Validation figures of the run's checkpoint (model/) on `split`."""
    from edgecxr.training.evaluate import predict_probabilities
    from edgecxr.training.model import load_checkpoint

    model, spec, names = load_checkpoint(folder / "model")
    if list(names) != split.classes:
        raise EdgecxrError(f"classes differ: the run has {names}, the validation split {split.classes}",
                           path=folder, fix="compare runs trained on the same classes")
    probs = predict_probabilities(model, split, spec)
    report = build_report(rows_from_probabilities(split.samples, names, probs), names, meta={})
    labels = [s.label for s in split.samples]
    metrics = report["metrics"]
    return {"val_accuracy": metrics["accuracy"], "val_auc": metrics["roc_auc"],
            "val_loss": negative_log_likelihood(probs, labels), "val_ece": expected_calibration_error(probs, labels),
            **{f"val_recall_{n}": metrics["classes"][n]["recall"] for n in names}}


def test_figures(folder: Path) -> dict:
    path = folder / "report.json"
    if not path.is_file():
        return {}
    metrics = json.loads(path.read_text())["metrics"]
    return {"test_accuracy": metrics["accuracy"], "test_auc": metrics["roc_auc"],
            "test_ece": (metrics.get("calibration") or {}).get("ece"),
            **{f"test_recall_{n}": v["recall"] for n, v in metrics["classes"].items()}}


def compare(folders: Sequence[str | Path], *, val_of: str | Path | None = None,
            data_root: Path | None = None) -> dict:
    paths = [Path(f) for f in folders]
    if not paths:
        raise EdgecxrError("no runs given", fix="give one or more run folders")
    judge = Path(val_of) if val_of is not None else paths[0]
    split = validation_split(read_run(judge), data_root)
    val_files = {s.rel for s in split.samples}
    rows = []
    for folder in paths:
        record = read_run(folder)
        settings = record["settings"]
        same_root = Path(record["split"]["train_root"]).name == split.root.name
        trained_on = set(record["split"]["train"]) if same_root else set()
        result = record["result"]
        rows.append({
            "run": folder.name, "seed": settings.get("seed"), "split_seed": settings.get("split_seed"),
            "best_epoch": result["best_epoch"], "epochs": result["epochs_run"],
            "train_minutes": round(result.get("train_seconds", 0.0) / 60, 1),
            "leaked": len(val_files & trained_on), **score(folder, split), **test_figures(folder)})
    honest = [r for r in rows if not r["leaked"]]
    preferred = max(honest, key=lambda r: (r["val_accuracy"], -r["val_loss"]))["run"] if honest else None
    keys = [k for k, _, _ in VAL_FIGURES + TEST_FIGURES] + ["val_loss", "train_minutes"]
    summary = {k: _mean_sd([r[k] for r in honest if r.get(k) is not None]) for k in keys}
    return {"schema": "edgecxr.compare/1", "val_of": judge.name, "val_images": len(split.samples),
            "runs": rows, "honest_runs": len(honest), "preferred": preferred, "summary": summary}


def _mean_sd(values: list[float]) -> dict | None:
    if not values:
        return None
    mean = float(np.mean(values))
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return {"mean": mean, "sd": sd, "min": float(min(values)), "max": float(max(values)), "n": len(values)}


def _cell(value, percent: bool) -> str:
    if value is None:
        return "—"
    return f"{100 * value:.1f}" if percent else f"{value:.3f}"


def markdown(result: dict) -> str:
    figures = VAL_FIGURES + TEST_FIGURES
    head = ["run", "seed", "best epoch", "train min", "val images trained on"] + [h for _, h, _ in figures]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["runs"]:
        mark = " (preferred)" if r["run"] == result["preferred"] else ""
        cells = [f"`{r['run']}`{mark}", str(r["seed"]), f"{r['best_epoch']}/{r['epochs']}", str(r["train_minutes"]),
                 str(r["leaked"])] + [_cell(r.get(k), p) for k, _, p in figures]
        lines.append("| " + " | ".join(cells) + " |")
    stats = result["summary"]
    if result["honest_runs"] > 1:
        cells = [f"mean ± sd of {result['honest_runs']} runs", "", "",
                 _cell_sd(stats["train_minutes"], None), ""]
        cells += [_cell_sd(stats[k], p) for k, _, p in figures]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Validation: the {result['val_images']} validation images of `{result['val_of']}`; "
                 "test: each run's own report on the test split, which chose nothing. "
                 + (f"Validation prefers `{result['preferred']}` (accuracy, then loss)." if result["preferred"]
                    else "Every run trained on some of these validation images, so none is preferred."))
    return "\n".join(lines) + "\n"


def _cell_sd(stat: dict | None, percent: bool | None) -> str:
    if stat is None:
        return "—"
    if percent is None:
        return f"{stat['mean']:.0f} ± {stat['sd']:.0f}"
    scale, digits = (100, 1) if percent else (1, 3)
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['sd']:.{digits}f}"
