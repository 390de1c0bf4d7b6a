"""parity.json, parity.md (fit for a deployment record) and parity.png."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgecxr.core.fsutil import atomic_write_text
from edgecxr.core.optional import available


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _signed_pp(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.2f}"


def _uncertain(engine: dict) -> str:
    u = engine.get("uncertain") or {}
    return f" (uncertain: {u['engine']}, PyTorch {u['reference']})" if u.get("engine") or u.get("reference") else ""


def markdown(result: dict) -> str:
    names = result["class_names"]
    ref = result["reference"]["metrics"]
    engines = result["engines"]
    t = result["tolerances"]
    lines = [
        f"# Parity check: {result['bundle']['name']} — {result['verdict']}", "",
        f"- created {result['created']}; bundle `{result['bundle']['path']}` (checksum "
        f"`{result['bundle']['checksum'][:16]}…`)",
        f"- reference: PyTorch report `{result['reference']['path']}` (model sha256 "
        f"`{str(result['reference']['model_sha256'])[:16]}…`)",
        f"- data: `{result['data']['root']}`, {result['data']['n_images']} images, fingerprint "
        f"`{result['data']['fingerprint'][:16]}…` (identical to the reference's)",
        f"- tolerances: accuracy drop ≤ {t['max_accuracy_drop']} pp, recall drop ≤ {t['max_recall_drop']} pp per "
        f"class, agreement with PyTorch ≥ {100 * t['min_agreement']:g}%",
        "- decision rule (the bundle's, applied to PyTorch and every engine alike): "
        f"{result['decision']['description']}"
        + ("; accuracy and recall use the threshold, UNCERTAIN is counted apart and a change to or from it is a "
           "flip" if result["decision"].get("uncertain") else ""), _calibration_line(result.get("calibration")), "",
        "## Verdicts", "", "| engine | verdict | accuracy (95% CI) | Δ accuracy (95% CI) | agreement | flipped | "
        "McNemar p | max / mean abs. ΔP(" + result["positive_class"] + ") | ECE |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    lo, hi = engines[0]["reference_accuracy_ci95"] if engines else (0, 0)
    lines.append(f"| PyTorch (reference) | — | {_pct(ref['accuracy'])} ({_pct(lo)}–{_pct(hi)}) | — | — | — | — | — | "
                 f"{engines[0]['reference_ece']:.4f} |" if engines else "")
    for e in engines:
        lo, hi = e["accuracy_ci95"]
        d = e["accuracy_difference"]
        lines.append(
            f"| {e['artifact']} | **{e['verdict']}** | {_pct(e['metrics']['accuracy'])} ({_pct(lo)}–{_pct(hi)}) | "
            f"{_signed_pp(d['difference'])} pp ({_signed_pp(d['ci95'][0])} to {_signed_pp(d['ci95'][1])}) | "
            f"{100 * e['agreement']:.2f}% | {len(e['flipped'])}{_uncertain(e)} | {e['mcnemar']['p_value']:.3g} | "
            f"{e['p_positive_abs_diff']['max']:.4f} / {e['p_positive_abs_diff']['mean']:.4f} | {e['ece']:.4f} |")
    for e in engines:
        for failure in e["failures"]:
            lines.append(f"\n- {e['artifact']} fails: {failure}")
    lines += _gate_lines(engines, result["data"]["n_images"])
    lines += ["", "## Paper-form tables (percent; in brackets the change from PyTorch in percentage points)", ""]
    header = "| | " + " | ".join(["PyTorch", *[e["artifact"] for e in engines]]) + " |"
    lines += [header, "|---|" + "---:|" * (1 + len(engines))]
    for name in names:
        for key in ("precision", "recall", "f1"):
            cells = [_pct(ref["classes"][name][key])]
            cells += [f"{_pct(e['metrics']['classes'][name][key])} ({_signed_pp(e['deltas'][f'{name}_{key}'])})"
                      for e in engines]
            lines.append(f"| {name} {key} | " + " | ".join(cells) + " |")
    for key, label in (("accuracy", "accuracy"), ("sensitivity", "sensitivity"), ("specificity", "specificity")):
        cells = [_pct(ref[key])] + [f"{_pct(e['metrics'][key])} ({_signed_pp(e['deltas'][key])})" for e in engines]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for key, label in (("macro_avg", "macro avg F1"), ("weighted_avg", "weighted avg F1")):
        cells = [_pct(ref[key]["f1"])] + [_pct(e["metrics"][key]["f1"]) for e in engines]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    auc = ["n/a" if ref["roc_auc"] is None else f"{ref['roc_auc']:.4f}"]
    auc += ["n/a" if e["metrics"]["roc_auc"] is None else f"{e['metrics']['roc_auc']:.4f}" for e in engines]
    lines += ["| ROC AUC | " + " | ".join(auc) + " |", "", "## Confusion matrices (rows true, columns predicted)", ""]
    for label, cm in [("PyTorch", ref["confusion_matrix"]), *[(e["artifact"], e["metrics"]["confusion_matrix"])
                                                             for e in engines]]:
        lines.append(f"- {label}: " + "; ".join(f"{names[i]} → {row}" for i, row in enumerate(cm)))
    lines += ["", "## Flipped images (engine and PyTorch disagree)", ""]
    any_flip = False
    for e in engines:
        for f in e["flipped"]:
            any_flip = True
            lines.append(f"- {e['artifact']}: `{f['path']}` (truth {f['label']}): PyTorch {f['reference']} "
                         f"P={f['p_reference']:.3f}, engine {f['engine']} P={f['p_engine']:.3f}")
    if not any_flip:
        lines.append("None: every engine predicts exactly as PyTorch on every image.")
    if result["skipped"]:
        lines += ["", "## Not checked on this machine", ""]
        lines += [f"- {s['artifact']}: {s['reason']}" for s in result["skipped"]]
    if "explain" in result:
        from edgecxr.parity.explain_report import markdown as explain_markdown

        lines += explain_markdown(result["explain"])
    lines += ["", "Statistics: Wilson score intervals; exact McNemar test on the discordant pairs; paired Wald "
              "interval for the accuracy difference; ECE with 15 equal-width bins. Made by `edgecxr parity-check`.", ""]
    return "\n".join(lines)


def figure(result: dict, reference_rows: dict, path: Path) -> Path | None:
    if not available("matplotlib"):
        return None
    from edgecxr.core.plots import _pyplot

    plt = _pyplot()
    names = result["class_names"]
    pos = result["positive_class"]
    panels = [("PyTorch", result["reference"]["metrics"]["confusion_matrix"])]
    panels += [(e["artifact"], e["metrics"]["confusion_matrix"]) for e in result["engines"]]
    fig, axes = plt.subplots(1, len(panels) + 2, figsize=(3.2 * (len(panels) + 2), 3.4), dpi=110)
    for ax, (title, cm) in zip(axes, panels):
        cm = np.asarray(cm)
        ax.imshow(cm / cm.sum(1, keepdims=True).clip(min=1), cmap="Blues", vmin=0, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=10)
        ax.set_xticks(range(len(names)), names, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(title, fontsize=8)
    _reliability_panel(axes[-1], result, reference_rows)
    scatter = axes[-2]
    from edgecxr.core.reporting import calibrate_rows

    temperature = (result.get("calibration") or {}).get("temperature", 1.0)
    calibrated = {r["path"]: r for r in calibrate_rows(list(reference_rows.values()), names, temperature)}
    for e in result["engines"]:
        ref_p = [calibrated[r["path"]]["probabilities"][pos] for r in e["rows"]]
        scatter.scatter(ref_p, [r["probabilities"][pos] for r in e["rows"]], s=6, alpha=0.6, label=e["artifact"])
    scatter.plot([0, 1], [0, 1], color="grey", lw=0.8)
    scatter.set_xlabel(f"PyTorch P({pos})", fontsize=8)
    scatter.set_ylabel(f"engine P({pos})", fontsize=8)
    scatter.legend(fontsize=6)
    scatter.set_title("engine vs PyTorch", fontsize=8)
    fig.suptitle(f"parity: {result['verdict']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _calibration_line(calibration: dict | None) -> str:
    """The bundle's temperature and PyTorch's test ECE before and after it (a report made before
    calibration has none: its probabilities were the plain softmax)."""
    if not calibration:
        return "- probabilities: plain softmax"
    return (f"- probabilities: softmax(logits / {calibration['temperature']:.4g}) (the bundle's temperature, fitted on "
            f"validation), for PyTorch and every engine; PyTorch's test ECE ({calibration['bins']} bins) "
            f"{calibration['reference_ece_uncalibrated']:.4f} as trained, {calibration['reference_ece']:.4f} "
            "calibrated (the ECE column)")


def _reliability_panel(ax, result: dict, reference_rows: dict) -> None:
    """The reliability diagram (core/plots.py) of PyTorch and each engine, on the bundle's calibrated
    probabilities, plus PyTorch's as trained when the bundle has a temperature."""
    from edgecxr.core.plots import reliability_axes
    from edgecxr.core.reporting import calibrate_rows

    names = result["class_names"]
    rows = result["engines"][0]["rows"] if result["engines"] else []
    labels = np.array([names.index(r["label"]) for r in rows])
    temperature = (result.get("calibration") or {}).get("temperature", 1.0)
    raw = [reference_rows[r["path"]] for r in rows]
    curves = [] if temperature == 1.0 else [("PyTorch, T = 1", _matrix(raw, names))]
    curves.append((f"PyTorch, T = {temperature:.3g}" if curves else "PyTorch",
                   _matrix(calibrate_rows(raw, names, temperature), names)))
    curves += [(e["artifact"], _matrix(e["rows"], names)) for e in result["engines"]]
    reliability_axes(ax, curves, labels)


def _matrix(rows: list[dict], names: list[str]) -> np.ndarray:
    return np.array([[r["probabilities"][n] for n in names] for r in rows])


def write(result: dict, reference_rows: dict, out: Path, explained: tuple | None = None) -> list[Path]:
    """`explained`: (preprocess spec, the maps from --explain) for explain.png."""
    out.mkdir(parents=True, exist_ok=True)
    written = [atomic_write_text(out / "parity.json", json.dumps(result, indent=2) + "\n"),
               atomic_write_text(out / "parity.md", markdown(result))]
    png = figure(result, reference_rows, out / "parity.png")
    if png:
        written.append(png)
    if explained and "explain" in result:
        from edgecxr.parity.explain_report import figure as explain_figure

        maps_png = explain_figure(explained[0], explained[1], result["explain"], result["class_names"],
                                  out / "explain.png")
        if maps_png:
            written.append(maps_png)
    return written


def _gate_lines(engines: list[dict], n: int) -> list[str]:
    """The intended-use gate's learned stage on each engine, against the FP32 graph's decisions."""
    gated = [e for e in engines if e.get("gate")]
    if not gated:
        return []
    lines = ["", "## Intended-use gate (learned stage) on the same in-scope test images", "",
             f"Each engine's out-of-scope decisions against the FP32 graph's, on the {n} test images "
             "(all of them in scope: a refusal here is a false refusal).", "",
             "| engine | gate agreement | refused (FP32 refused) | changed | max / mean abs. Δscore |",
             "|---|---:|---:|---:|---:|"]
    for e in gated:
        g = e["gate"]
        if g.get("agreement") is None:
            lines.append(f"| {e['artifact']} | n/a | — | — | — |")
            continue
        lines.append(f"| {e['artifact']} | {100 * g['agreement']:.2f}% | {g['refused']} ({g['refused_reference']}) | "
                     f"{len(g['changed'])} | {g['score_abs_diff']['max']:.4f} / {g['score_abs_diff']['mean']:.4f} |")
    return lines
