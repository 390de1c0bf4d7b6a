"""Figures for reports and training runs (matplotlib, imported only here, Agg backend)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from edgecxr.core.optional import require


def _pyplot():
    matplotlib = require("matplotlib", "drawing figures")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(report: dict, path: Path) -> Path:
    plt = _pyplot()
    names = report["class_names"]
    cm = np.asarray(report["metrics"]["confusion_matrix"])
    rows = cm.sum(axis=1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 1.2 + 1.2 * len(names)), dpi=120)
    ax.imshow(cm / rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            share = cm[i, j] / rows[i, 0]
            ax.text(j, i, f"{cm[i, j]}\n{100 * share:.1f}%", ha="center", va="center",
                    color="white" if share > 0.6 else "black", fontsize=10)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {100 * report['metrics']['accuracy']:.1f}% (n={report['n_images']})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def samples_png(report: dict, images_root: Path, path: Path, n: int = 24, seed: int = 0) -> Path:
    """A grid of test images with truth and prediction; every error shown first, in red."""
    from edgecxr.core.data.decode import decode_file

    plt = _pyplot()
    rows = report["rows"]
    errors = [r for r in rows if r["label"] != r["prediction"]]
    rights = [r for r in rows if r["label"] == r["prediction"]]
    rng = np.random.default_rng(seed)
    picked = errors[: n // 2]
    picked += [rights[i] for i in rng.permutation(len(rights))[: n - len(picked)]]
    cols = 6
    nrows = max(1, -(-len(picked) // cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(cols * 2.0, nrows * 2.25), dpi=100)
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, row in zip(np.atleast_1d(axes).ravel(), picked):
        try:
            pixels = decode_file(images_root / row["path"]).pixels
        except Exception:
            continue
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=1)
        wrong = row["label"] != row["prediction"]
        p = row["probabilities"][row["prediction"]]
        ax.set_title(f"T {row['label']}\nP {row['prediction']} {p:.2f}", fontsize=8,
                     color="red" if wrong else "black")
        if wrong:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("red")
                spine.set_linewidth(3)
    fig.suptitle(f"{len(errors)} errors of {len(rows)} (errors first, in red)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def curves_png(history_csv: Path, path: Path) -> Path:
    plt = _pyplot()
    with open(history_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        ax_loss.plot(epochs, [float(r[key]) for r in rows], marker="o", label=label)
    for key, label in (("train_acc", "train"), ("val_acc", "val")):
        ax_acc.plot(epochs, [100 * float(r[key]) for r in rows], marker="o", label=label)
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def loss_curve_png(history_csv: Path, path: Path, key: str = "loss", title: str = "loss") -> Path:
    """One training curve per epoch (SimMIM's masked-pixel L1 loss)."""
    plt = _pyplot()
    with open(history_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=110)
    ax.plot([int(r["epoch"]) for r in rows], [float(r[key]) for r in rows], marker="o")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def reconstructions_png(triples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], path: Path) -> Path:
    """Rows of (input, masked input, reconstruction), each an HxW grey image in [0, 1]."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(triples), 3, figsize=(6, 2 * len(triples)), dpi=100, squeeze=False)
    for row, images in zip(axes, triples):
        for ax, image, title in zip(row, images, ("input", "masked", "reconstruction")):
            ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def reliability_axes(ax, curves: list[tuple[str, np.ndarray]], labels: np.ndarray) -> None:
    """Accuracy against confidence (15 equal-width bins), one line per (title, probabilities) with its
    ECE: how far the probabilities a reader sees are from how often the model is right at that
    confidence. Drawn alike in the test report and in parity-check's figure."""
    from edgecxr.core.metrics import ECE_BINS, expected_calibration_error, reliability

    for title, probs in curves:
        if len(probs) == 0:
            continue
        points = reliability(probs, labels)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=2.5, lw=0.9,
                label=f"{title} (ECE {expected_calibration_error(probs, labels):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set_xlim(0.45, 1.0)
    ax.set_xlabel(f"confidence (max P), {ECE_BINS} bins", fontsize=8)
    ax.set_ylabel("accuracy in the bin", fontsize=8)
    ax.legend(fontsize=5)
    ax.set_title("reliability", fontsize=8)


def reliability_png(report: dict, path: Path) -> Path:
    """The test report's reliability diagram (its rows' probabilities, as the model gave them)."""
    plt = _pyplot()
    names = report["class_names"]
    labels = np.array([names.index(r["label"]) for r in report["rows"]])
    probs = np.array([[r["probabilities"][n] for n in names] for r in report["rows"]])
    fig, ax = plt.subplots(figsize=(3.6, 3.4), dpi=120)
    reliability_axes(ax, [(report.get("engine", {}).get("backend", "model"), probs)], labels)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def series_png(rates: dict[str, dict[str, dict[str, list[float]]]], path: Path, title: str,
               names: dict[str, str] | None = None) -> Path:
    """compare-runs' picture of a shift: per file-name series, the share of images misread on
    validation (light) and on test (dark), a bar per recipe at the mean of its runs, with each
    run as a dot (`rates`: {recipe: {series: {"val": [...], "test": [...]}}}; `names`: the
    legend's name of each recipe)."""
    plt = _pyplot()
    series = sorted({s for per_recipe in rates.values() for s in per_recipe})
    recipes = list(rates)
    width = 0.8 / (2 * max(1, len(recipes)))
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(series), 3.4), dpi=120)
    colours = plt.get_cmap("tab10")
    for k, recipe in enumerate(recipes):
        for j, side in enumerate(("val", "test")):
            offset = (2 * k + j + 0.5) * width - 0.4
            for i, name in enumerate(series):
                values = 100 * np.asarray(rates[recipe].get(name, {}).get(side, []), dtype=float)
                if values.size == 0:
                    continue
                label = f"{(names or {}).get(recipe, 'recipe ' + recipe)}, {'validation' if side == 'val' else 'test'}"
                ax.bar(i + offset, values.mean(), width, color=colours(k), alpha=0.35 if side == "val" else 0.9,
                       label=label if i == 0 else None)
                ax.plot(np.full(values.size, i + offset), values, "o", ms=2.5, color="black")
    ax.set_xticks(range(len(series)), series)
    ax.set_ylabel("images misread, %")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
