"""The test-set report: `report.json` (versioned), `report.md` (the paper's table) and figures.

Built from per-image rows, so the PyTorch report and each engine's parity report are the
same object computed from different predictions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgecxr.core.metrics import (
    ECE_BINS,
    binary_rates,
    bootstrap_intervals,
    classification_report,
    expected_calibration_error,
    positive_class_index,
    reliability,
    roc_auc,
)
from edgecxr.core.provenance import utc_now

REPORT_SCHEMA = "edgecxr.report/1"
REPORT_FILENAME = "report.json"


def build_report(rows: Sequence[dict], class_names: Sequence[str], *, meta: dict) -> dict:
    """rows: dicts with path, sha256, label, prediction, probabilities{class: p}."""
    names = list(class_names)
    index = {n: i for i, n in enumerate(names)}
    y_true = [index[r["label"]] for r in rows]
    y_pred = [index[r["prediction"]] for r in rows]
    metrics = classification_report(y_true, y_pred, names)
    pos = positive_class_index(names, meta.get("positive_class"))
    rates = binary_rates(metrics["confusion_matrix"], pos)
    scores = [r["probabilities"][names[pos]] for r in rows]
    auc = roc_auc([t == pos for t in y_true], scores)
    ci = bootstrap_intervals(y_true, y_pred, scores, pos, len(names)) if rows else None
    probs = np.array([[r["probabilities"][n] for n in names] for r in rows]).reshape(len(rows), len(names))
    return {
        "schema": REPORT_SCHEMA,
        "created": utc_now(),
        "class_names": names,
        "positive_class": names[pos],
        "n_images": len(rows),
        "metrics": {
            **metrics,
            "sensitivity": rates["sensitivity"],
            "specificity": rates["specificity"],
            "roc_auc": auc,
            "ci95": None if ci is None else {"method": ci["method"], "accuracy": ci["accuracy"],
                                             "roc_auc": ci["roc_auc"],
                                             "recall": dict(zip(names, ci["recall"], strict=True))},
            # how far the probabilities are from the accuracy at that confidence (Guo et al. 2017)
            "calibration": {"bins": ECE_BINS, "ece": expected_calibration_error(probs, y_true),
                            "reliability": [[round(v, 6) for v in point] for point in reliability(probs, y_true)],
                            "reliability_fields": ["mean confidence", "accuracy", "share of images"]},
        },
        **meta,
        "rows": list(rows),
    }


def rows_from_probabilities(samples, class_names: Sequence[str], probs: np.ndarray, rule=None) -> list[dict]:
    """One report row per image: relative path, sha256, truth, prediction, probabilities.

    The prediction is argmax, or the bundle's decision rule (a `decision.DecisionRule`) when
    given; with an uncertain band the row also carries its `result` (a class or UNCERTAIN).
    """
    names = list(class_names)
    predicted = np.asarray(probs).argmax(axis=1) if rule is None else rule.predict(probs)
    rows = [{"path": s.rel, "sha256": s.sha256, "label": names[s.label], "prediction": names[int(k)],
             "probabilities": {n: float(v) for n, v in zip(names, p)}} for s, p, k in zip(samples, probs, predicted)]
    if rule is not None and rule.uncertain is not None:
        for row, result in zip(rows, rule.labels(probs)):
            row["result"] = result
    return rows


def paper_table(report: dict) -> str:
    """The seed study's table: a row per class, accuracy, macro and weighted averages."""
    m = report["metrics"]
    lines = ["| | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name in report["class_names"]:
        c = m["classes"][name]
        lines.append(f"| {name} | {_pct(c['precision'])} | {_pct(c['recall'])} | "
                     f"{_pct(c['f1'])} | {c['support']} |")
    total = m["macro_avg"]["support"]
    lines.append(f"| accuracy | | | {_pct(m['accuracy'])} | {total} |")
    for key, label in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        a = m[key]
        lines.append(f"| {label} | {_pct(a['precision'])} | {_pct(a['recall'])} | "
                     f"{_pct(a['f1'])} | {a['support']} |")
    return "\n".join(lines)


def confusion_table(report: dict) -> str:
    names = report["class_names"]
    cm = report["metrics"]["confusion_matrix"]
    lines = ["| true \\ predicted | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for name, row in zip(names, cm):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def report_markdown(report: dict, title: str = "Test-set report") -> str:
    m = report["metrics"]
    auc = "n/a (one class only)" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}"
    pos = report["positive_class"]
    parts = [
        f"# {title}", "",
        f"- model: `{report.get('model', {}).get('path', '?')}` "
        f"(sha256 `{report.get('model', {}).get('sha256', '?')[:16]}…`)",
        f"- data: `{report.get('data', {}).get('root', '?')}`, {report['n_images']} images, "
        f"fingerprint `{report.get('data', {}).get('fingerprint', '?')[:16]}…`",
        f"- created: {report['created']}", "",
        "Precision, recall and F1 in percent.", "", paper_table(report), "",
        f"Sensitivity ({pos} recall) {_pct(m['sensitivity'])}%, "
        f"specificity {_pct(m['specificity'])}%, ROC AUC {auc}.", "", *_interval_lines(m.get("ci95")),
        *_calibration_lines(m.get("calibration")),
        "## Confusion matrix", "", confusion_table(report), "",
    ]
    return "\n".join(parts)


def _interval_lines(ci: dict | None) -> list[str]:
    """The bootstrap intervals in words, or nothing for a report made before them."""
    if not ci:
        return []

    def span(pair, percent=True) -> str:
        if pair is None:
            return "n/a"
        return f"{_pct(pair[0])}–{_pct(pair[1])}%" if percent else f"{pair[0]:.4f}–{pair[1]:.4f}"
    recalls = ", ".join(f"{name} recall {span(pair)}" for name, pair in ci["recall"].items())
    return [f"95 % intervals ({ci['method']}): accuracy {span(ci['accuracy'])}, ROC AUC "
            f"{span(ci['roc_auc'], percent=False)}, {recalls}.", ""]


def _calibration_lines(calibration: dict | None) -> list[str]:
    """The ECE in words, or nothing for a report made before it."""
    if not calibration:
        return []
    return [f"Expected calibration error {calibration['ece']:.4f} ({calibration['bins']} equal-width confidence "
            "bins) on these probabilities as the model gives them; a bundle's temperature, fitted on validation "
            "at export, is applied by parity-check (reliability.png).", ""]


def write_report(report: dict, out_dir: str | Path, *, images_root: str | Path | None = None,
                 title: str = "Test-set report") -> list[Path]:
    """Write report.json, report.md and, when matplotlib is installed, the figures."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / REPORT_FILENAME, out / "report.md"]
    written[0].write_text(json.dumps(report, indent=2) + "\n")
    written[1].write_text(report_markdown(report, title))
    from edgecxr.core.optional import available

    if available("matplotlib"):
        from edgecxr.core import plots

        written.append(plots.confusion_matrix_png(report, out / "confusion_matrix.png"))
        if report["rows"]:
            written.append(plots.reliability_png(report, out / "reliability.png"))
        if images_root is not None:
            written.append(plots.samples_png(report, Path(images_root), out / "samples.png"))
    return written


def load_report(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_FILENAME
    data = json.loads(path.read_text())
    if not str(data.get("schema", "")).startswith("edgecxr.report/"):
        raise ValueError(f"{path} is not an edgecxr report (schema {data.get('schema')!r})")
    missing = [k for k in ("class_names", "positive_class", "metrics", "rows") if k not in data]
    missing += [f"data.{k}" for k in ("root", "fingerprint") if k not in data.get("data", {})]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: not a complete report")
    return data


def _pct(value: float) -> str:
    return f"{100.0 * value:.1f}"


def probabilities_matrix(report: dict) -> np.ndarray:
    names = report["class_names"]
    return np.array([[r["probabilities"][n] for n in names] for r in report["rows"]])


def calibrate_rows(rows: Sequence[dict], class_names: Sequence[str], temperature: float) -> list[dict]:
    """Report rows with their probabilities put through the bundle's temperature (metrics.
    calibrate_probabilities): how parity-check holds engines, which apply it, to the PyTorch report,
    which was written before the temperature was fitted. Predictions are left to the caller's rule."""
    rows = list(rows)
    if temperature == 1.0 or not rows:
        return rows
    from edgecxr.core.metrics import calibrate_probabilities

    names = list(class_names)
    probs = calibrate_probabilities(np.array([[r["probabilities"][n] for n in names] for r in rows]), temperature)
    return [{**r, "probabilities": {n: float(v) for n, v in zip(names, p, strict=True)}} for r, p in zip(rows, probs,
                                                                                                      strict=True)]
