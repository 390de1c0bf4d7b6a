"""Several training runs side by side, on one validation split: the seeds of a recipe, or recipes.

Each run's checkpoint is scored on the validation images of one run (`--val-of`, by default
the first), so every row is read on the same images. A run that trained on some of them is
flagged with how many, and how many of their patients it saw; its validation figures are
then optimistic, and it is never preferred. The test figures are read from each run's own
test report, never computed here: the test split chooses nothing, and `preferred` is picked
on validation alone (accuracy, then loss, the rule `train` chooses its checkpoint by) among
the runs that did not train on those images. Mean ± sd is given per recipe (the settings
less the seed), so two recipes are never pooled. Where file names carry the series an image
came from (`core.data.patients.source_of`), the error rate per series is given for validation
and test side by side: it shows which images a shift between the two splits sits in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgecxr.core.data.fingerprint import sha256_file
from edgecxr.core.data.folders import (
    Split,
    recorded_samples,
    recorded_validation_root,
    samples_fingerprint,
    split_seed_of,
)
from edgecxr.core.data.patients import group_of, source_of
from edgecxr.core.data.roots import resolve_recorded
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.metrics import expected_calibration_error, negative_log_likelihood
from edgecxr.core.reporting import build_report, rows_from_probabilities

# settings that say nothing about the recipe: runs differing only in these are seeds of one recipe
NOT_RECIPE = ("seed", "split_seed", "val_split", "out", "data", "device", "workers", "eval_batch_size")


def read_run(folder: str | Path) -> dict:
    folder = Path(folder)
    record_path = folder / "run.json"
    if not record_path.is_file():
        raise EdgecxrError("not a training run: no run.json", path=folder,
                           fix="give run folders written by `edgecxr train`")
    try:
        record = json.loads(record_path.read_text())
        status, _ = record.get("status"), record["split"]["val"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EdgecxrError(f"run.json is not a training run's record ({type(exc).__name__}: {exc})",
                           path=record_path, fix="give run folders written by `edgecxr train`") from exc
    if status != "finished":
        raise EdgecxrError(f"the run has not finished (status {status!r})", path=folder,
                           fix="let it finish, or continue it with `edgecxr train ... --resume`")
    if not (folder / "model" / "config.json").is_file():
        raise EdgecxrError("the run has no checkpoint (model/config.json)", path=folder,
                           fix="give runs whose model/ folder was kept")
    return record


def validation_split(record: dict, data_root: Path | None = None) -> Split:
    """The run's recorded validation images, checked against its recorded fingerprint;
    `data_root` replaces the recorded data folder (the split's folder name is kept)."""
    classes = list(record["classes"])
    recorded = recorded_validation_root(record)
    if recorded is None:
        raise EdgecxrError("the run records no validation images", path=record.get("settings", {}).get("out"),
                           fix="give --val-of a run trained with a validation split")
    root = recorded if data_root is None else Path(data_root) / recorded.name
    samples = recorded_samples(root, record["split"]["val"], classes)
    missing = [s.path for s in samples if not s.path.is_file()]
    if missing:
        raise EdgecxrError(f"{len(missing)} of the run's validation images are missing, e.g. {missing[0]}",
                           path=root, fix="run from the folder the run was trained from, or pass --data")
    for sample in samples:
        sample.sha256 = sha256_file(sample.path)
    expected = (record.get("data") or {}).get("fingerprints", {}).get("val")
    if expected and samples_fingerprint(samples) != expected:
        raise EdgecxrError("these validation images are not the ones the run recorded (their fingerprint "
                           "differs from run.json's data.fingerprints.val)", path=root,
                           fix="point --data at the data the run was trained from")
    return Split("val", root, classes, samples)


def score(folder: Path, split: Split) -> dict:
    """Validation figures of the run's checkpoint (model/) on `split`."""
    from edgecxr.training.evaluate import predict_probabilities
    from edgecxr.training.model import load_checkpoint

    model, spec, names = load_checkpoint(folder / "model")
    if list(names) != list(split.classes):
        raise EdgecxrError(f"the checkpoint's classes {list(names)} are not the validation split's {split.classes}",
                           path=folder / "model", fix="compare runs trained on the same class folders")
    probs = predict_probabilities(model, split, spec)
    rows = rows_from_probabilities(split.samples, names, probs)
    report = build_report(rows, names, meta={})
    labels = [s.label for s in split.samples]
    metrics = report["metrics"]
    return {"val_accuracy": metrics["accuracy"], "val_auc": metrics["roc_auc"],
            "val_loss": negative_log_likelihood(probs, labels), "val_ece": expected_calibration_error(probs, labels),
            **{f"val_recall_{n}": metrics["classes"][n]["recall"] for n in names},
            "val_by_source": errors_by_source(rows)}


def test_figures(folder: Path) -> dict:
    path = folder / "report.json"
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    metrics = report["metrics"]
    return {"test_accuracy": metrics["accuracy"], "test_auc": metrics["roc_auc"],
            "test_ece": (metrics.get("calibration") or {}).get("ece"),
            "test_fingerprint": (report.get("data") or {}).get("fingerprint"),
            **{f"test_recall_{n}": v["recall"] for n, v in metrics["classes"].items()},
            "test_by_source": errors_by_source(report.get("rows") or [])}


def errors_by_source(rows: Sequence[dict]) -> dict:
    """{series: {"images": n, "errors": k}} over report rows whose file name names its series."""
    counts: dict[str, dict] = {}
    for row in rows:
        source = source_of(row["path"])
        if source is not None:
            entry = counts.setdefault(source, {"images": 0, "errors": 0})
            entry["images"] += 1
            entry["errors"] += int(row["prediction"] != row["label"])
    return dict(sorted(counts.items()))


def recipe_key(settings: dict) -> str:
    return json.dumps({k: v for k, v in settings.items() if k not in NOT_RECIPE}, sort_keys=True)


def compare(folders: Sequence[str | Path], *, val_of: str | Path | None = None,
            data_root: Path | None = None) -> dict:
    paths = [Path(f) for f in folders]
    if not paths:
        raise EdgecxrError("no runs given", fix="give one or more run folders")
    records = {path: read_run(path) for path in paths}
    judge = Path(val_of) if val_of is not None else paths[0]
    judge_record = records.get(judge) or read_run(judge)
    for path, record in records.items():  # before minutes of scoring
        if record["classes"] != judge_record["classes"]:
            raise EdgecxrError(f"classes differ: {record['classes']} here, {judge_record['classes']} in {judge}",
                               path=path, fix="compare runs trained on the same classes")
    split = validation_split(judge_record, data_root)
    val_files = {s.rel for s in split.samples}
    val_patients = {group_of(rel) for rel in val_files}
    judge_train_root = (recorded_validation_root(judge_record) or split.root).resolve()
    judge_val = judge_record["data"]["fingerprints"].get("val")
    recipes: dict[str, str] = {}
    rows = []
    for path, record in records.items():
        settings = record["settings"]
        same_data = resolve_recorded(record["split"]["train_root"]).resolve() == judge_train_root
        trained_on = set(record["split"]["train"]) if same_data else set()
        recipe = recipes.setdefault(recipe_key(settings), "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[len(recipes) % 26])
        result = record["result"]
        rows.append({
            "run": path.name, "recipe": recipe, "seed": settings.get("seed"),
            "val_split": settings.get("val_split", "random"),
            "split_seed": split_seed_of(settings),
            "best_epoch": result["best_epoch"], "epochs": result["epochs_run"],
            "train_minutes": round(result.get("train_seconds", 0.0) / 60, 1),
            "leaked": len(val_files & trained_on),
            "leaked_patients": len(val_patients & {group_of(rel) for rel in trained_on}),
            # its checkpoint was chosen on these very images: its validation figures carry that choice
            "chosen_on_these": record["data"]["fingerprints"].get("val") == judge_val,
            **score(path, split), **test_figures(path)})
    honest = [r for r in rows if not r["leaked"]]
    preferred = max(honest, key=lambda r: (r["val_accuracy"], -r["val_loss"]))["run"] if honest else None
    summary = {}
    for recipe in dict.fromkeys(r["recipe"] for r in honest):
        group = [r for r in honest if r["recipe"] == recipe]
        summary[recipe] = {k: _mean_sd([r[k] for r in group if r.get(k) is not None])
                           for k in [*(key for key, _, _ in _figures(judge_record["classes"])), "val_loss",
                                     "train_minutes"]}
    return {"schema": "edgecxr.compare/1", "val_of": judge.name, "val_kind": split_kind(judge_record),
            "val_images": len(split.samples),
            "val_patients": len(val_patients), "classes": judge_record["classes"], "runs": rows,
            "honest_runs": len(honest), "preferred": preferred, "summary": summary,
            "same_test_split": len({r.get("test_fingerprint") for r in rows if r.get("test_fingerprint")}) <= 1}


def split_kind(record: dict) -> str:
    """How a run's validation images were chosen, in words."""
    if (record.get("data") or {}).get("val_source") == "folder":
        return "a given val/ folder"
    seed = split_seed_of(record["settings"])
    return "the lowest-numbered patients of each numbering" if seed is None else f"random patients, split seed {seed}"


def _figures(classes: Sequence[str]) -> list[tuple[str, str, bool]]:
    """(key, heading, as percent) of the figures compared; the "val_" ones are computed here."""
    return [("val_accuracy", "val acc", True), ("val_auc", "val AUC", False),
            *((f"val_recall_{c}", f"val {c} recall", True) for c in classes), ("val_ece", "val ECE", False),
            ("test_accuracy", "test acc", True), ("test_auc", "test AUC", False),
            *((f"test_recall_{c}", f"test {c} recall", True) for c in classes), ("test_ece", "test ECE", False)]


def _mean_sd(values: list[float]) -> dict | None:
    if not values:
        return None
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "sd": sd, "min": float(min(values)), "max": float(max(values)),
            "n": len(values)}


def _cell(value, percent: bool) -> str:
    if value is None:
        return "—"
    return f"{100 * value:.1f}" if percent else f"{value:.3f}"


def markdown(result: dict) -> str:
    figures = _figures(result["classes"])
    head = ["run", "recipe", "seed", "best epoch", "train min", "val images (patients) trained on"]
    head += [h for _, h, _ in figures]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["runs"]:
        mark = " (preferred)" if r["run"] == result["preferred"] else ""
        cells = [f"`{r['run']}`{mark}", r["recipe"], str(r["seed"]), f"{r['best_epoch']}/{r['epochs']}",
                 str(r["train_minutes"]), f"{r['leaked']} ({r['leaked_patients']})"]
        lines.append("| " + " | ".join(cells + [_cell(r.get(k), p) for k, p in ((k, p) for k, _, p in figures)]) + " |")
    for recipe, stats in result["summary"].items():
        n = max((s["n"] for s in stats.values() if s), default=0)
        if n < 2:
            continue
        cells = [f"recipe {recipe}: mean ± sd of {n} runs", recipe, "", "", _cell_sd(stats["train_minutes"], None), ""]
        cells += [_cell_sd(stats[k], p) for k, _, p in figures]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    kind = f", {result['val_kind']}" if result.get("val_kind") else ""
    notes = [f"Validation: the {result['val_images']} images ({result['val_patients']} patients) of "
             f"`{result['val_of']}`{kind}; test: each run's own report, which chose nothing."]
    notes.append(f"Validation prefers `{result['preferred']}` (accuracy, then loss)." if result["preferred"]
                 else "Every run trained on some of these validation images, so none is preferred.")
    chosen = {r["chosen_on_these"] for r in result["runs"] if not r["leaked"]}
    if len(chosen) > 1:
        notes.append("Some of these runs chose their checkpoint on these images and some did not; the first "
                     "have an edge here that says nothing of new images.")
    if not result["same_test_split"]:
        notes.append("**The runs' test reports are not all of one test split**: their test columns do not compare.")
    return "\n".join(lines) + "\n" + " ".join(notes) + "\n" + _by_source_table(result)


def series_of(result: dict) -> list[str]:
    """The file-name series any run's validation or test rows fall in, sorted."""
    return sorted({k for r in result["runs"] for side in ("val", "test") for k in r.get(f"{side}_by_source") or {}})


def series_rate(run: dict, side: str, source: str) -> float | None:
    """Share of `source`'s images the run misread on `side` ("val" or "test"), None without any."""
    entry = (run.get(f"{side}_by_source") or {}).get(source)
    return entry["errors"] / entry["images"] if entry and entry["images"] else None


def recipe_runs(result: dict, recipe: str) -> list[dict]:
    """The runs of `recipe` that trained on none of the validation images (its summary's runs)."""
    return [r for r in result["runs"] if r["recipe"] == recipe and not r["leaked"]]


def series_rates_by_recipe(result: dict) -> dict[str, dict[str, dict[str, list[float]]]]:
    """{recipe: {series: {"val": [rate per honest run], "test": [...]}}}, for recipes of 2+ honest runs."""
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for recipe in result["summary"]:
        group = recipe_runs(result, recipe)
        if len(group) >= 2:
            out[recipe] = {s: {side: [v for r in group if (v := series_rate(r, side, s)) is not None]
                               for side in ("val", "test")} for s in series_of(result)}
    return out


def _by_source_table(result: dict) -> str:
    """Per cent of each series' images misread, validation beside test, a row per run (a run that
    trained on validation images says so: its validation cells are optimistic) and the mean of
    each recipe's honest runs; empty when no file name names its series."""
    runs, sources = result["runs"], series_of(result)
    if not sources:
        return ""

    def sizes(side: str, source: str) -> str:
        return "/".join(sorted({str(r[side][source]["images"]) for r in runs if source in (r.get(side) or {})})) or "0"

    head = ["run"] + [f"{s} {side} (n={sizes(f'{side}_by_source', s)})" for s in sources for side in ("val", "test")]
    lines = ["", "Images misread, per cent of each file-name series (validation beside test):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        cells = [_cell(series_rate(r, side, s), True) for s in sources for side in ("val", "test")]
        trained_on = f" (trained on {r['leaked']} of these val images)" if r["leaked"] else ""
        lines.append(f"| `{r['run']}`{trained_on} | " + " | ".join(cells) + " |")
    for recipe, rates in series_rates_by_recipe(result).items():
        n = len(recipe_runs(result, recipe))
        cells = [_cell_sd(_mean_sd(rates[s][side]), True) for s in sources for side in ("val", "test")]
        lines.append(f"| recipe {recipe}: mean ± sd of {n} runs | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell_sd(stat: dict | None, percent: bool | None) -> str:
    if stat is None:
        return "—"
    scale, digits = (1, 0) if percent is None else (100, 1) if percent else (1, 3)
    mean = f"{scale * stat['mean']:.{digits}f}"
    return mean if stat["sd"] is None else f"{mean} ± {scale * stat['sd']:.{digits}f}"
