"""Classification metrics in numpy: one tested implementation for every report.

The PyTorch test report, the export agreement checks and parity-check all call these
functions, so a difference between two reports is a difference in predictions, never in
arithmetic. Conventions follow scikit-learn (zero division gives 0), which the tests
check against.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from edgecxr.core.defaults import DEFAULT_SEED


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predictions."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def classification_report(y_true: Sequence[int], y_pred: Sequence[int],
                          class_names: Sequence[str]) -> dict:
    """Per-class precision/recall/F1/support, accuracy, macro and weighted averages."""
    n = len(class_names)
    cm = confusion_matrix(y_true, y_pred, n)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    total = int(support.sum())
    weights = support / total if total else np.zeros(n)
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]),
               "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    return {
        "classes": per_class,
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_avg": {"precision": float(precision.mean()), "recall": float(recall.mean()),
                      "f1": float(f1.mean()), "support": total},
        "weighted_avg": {"precision": float((precision * weights).sum()),
                         "recall": float((recall * weights).sum()),
                         "f1": float((f1 * weights).sum()), "support": total},
        "confusion_matrix": cm.tolist(),
    }


def roc_auc(is_positive: Sequence[bool], score_list: Sequence[float]) -> float | None:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half).

    None when only one class is present: the AUC is undefined then.
    """
    positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(score_list, dtype=np.float64)
    n_pos = int(positive.sum())
    n_neg = int(len(positive) - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


BOOTSTRAP_RESAMPLES = 1000


def bootstrap_intervals(y_true: Sequence[int], y_pred: Sequence[int], positive_scores: Sequence[float],
                        positive_index: int, n_classes: int, *, resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = DEFAULT_SEED) -> dict:
    """95 % percentile-bootstrap intervals (images resampled with replacement, seeded: the same report
    gives the same intervals) for accuracy, ROC AUC and each class's recall. A resample without a
    class has no recall or AUC for it and is left out of that interval."""
    truth, pred = np.asarray(y_true), np.asarray(y_pred)
    scores = np.asarray(positive_scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    accuracy: list[float] = []
    auc: list[float] = []
    recall: list[list[float]] = [[] for _ in range(n_classes)]
    for _ in range(resamples):
        pick = rng.integers(0, len(truth), len(truth))
        t, p = truth[pick], pred[pick]
        accuracy.append(float((t == p).mean()))
        value = roc_auc(list(t == positive_index), list(scores[pick]))
        if value is not None:
            auc.append(value)
        for c in range(n_classes):
            mask = t == c
            if mask.any():
                recall[c].append(float((p[mask] == c).mean()))

    def interval(values: list[float]) -> list[float] | None:
        return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values else None
    return {"method": f"percentile bootstrap, {resamples} resamples of the images, seed {seed}",
            "accuracy": interval(accuracy), "roc_auc": interval(auc),
            "recall": [interval(values) for values in recall]}


def binary_rates(cm: np.ndarray | list, positive_index: int) -> dict:
    """Sensitivity (recall of the positive class) and specificity (recall of the rest)."""
    cm = np.asarray(cm)
    tp = cm[positive_index, positive_index]
    fn = cm[positive_index].sum() - tp
    fp = cm[:, positive_index].sum() - tp
    tn = cm.sum() - tp - fn - fp
    return {
        "sensitivity": float(tp / (tp + fn)) if tp + fn else 0.0,
        "specificity": float(tn / (tn + fp)) if tn + fp else 0.0,
        "tp": int(tp), "fn": int(fn), "fp": int(fp), "tn": int(tn),
    }


def positive_class_index(class_names: Sequence[str], positive: str | None = None) -> int:
    """PNEUMONIA when present (the seed study's positive class), else the last class."""
    names = list(class_names)
    if positive is not None:
        if positive not in names:
            raise ValueError(f"positive class {positive!r} is not one of {names}")
        return names.index(positive)
    return names.index("PNEUMONIA") if "PNEUMONIA" in names else len(names) - 1


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def calibrated_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T): the bundle's calibrated class probabilities (T from its
    `probability_calibration`, 1 for a bundle without one). Every engine, parity-check and the
    maps go through here, so the probability a decision is made on is the same everywhere."""
    return softmax(np.asarray(logits, dtype=np.float64) / float(temperature))


def calibrate_probabilities(probabilities: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The same calibration for a report that kept probabilities, not logits (the PyTorch test
    report): log p differs from the logits by one constant per row, which softmax ignores."""
    p = np.asarray(probabilities, dtype=np.float64)
    if temperature == 1.0:
        return p
    with np.errstate(divide="ignore"):
        return calibrated_softmax(np.log(p), temperature)


ECE_BINS = 15


def reliability(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray,
                bins: int = ECE_BINS) -> list[tuple[float, float, float]]:
    """(mean confidence, accuracy, share of images) per non-empty equal-width confidence bin (the
    top class's probability in (lo, hi]): the reliability diagram's points, and what the expected
    calibration error sums (Guo et al. 2017)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    points = []
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            points.append((float(confidence[inside].mean()), float(correct[inside].mean()), float(inside.mean())))
    return points


def expected_calibration_error(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray,
                               bins: int = ECE_BINS) -> float:
    return float(sum(share * abs(accuracy - confidence)
                     for confidence, accuracy, share in reliability(probabilities, labels, bins)))


def negative_log_likelihood(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Mean -log P(true class), floored at 1e-12 so one certain mistake stays finite."""
    p = np.asarray(probabilities, dtype=np.float64)
    truth = p[np.arange(len(p)), np.asarray(labels, dtype=np.int64)]
    return float(-np.log(np.maximum(truth, 1e-12)).mean()) if len(p) else 0.0
