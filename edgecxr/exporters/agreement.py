"""How closely a converted engine follows the FP32 ONNX model on held-out images."""

from __future__ import annotations

import numpy as np

from edgecxr.core.timing import median_ms

MIN_AGREEMENT = 0.98


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict:
    diff = np.abs(reference - candidate)
    return {
        "images": len(reference),
        "agreement": float((reference.argmax(1) == candidate.argmax(1)).mean()),
        "max_abs_prob_diff": float(diff.max()),
        "mean_abs_prob_diff": float(diff.mean()),
    }


def latency_ms(runner, one: np.ndarray, runs: int = 10) -> float:
    """Median batch-1 latency; a rough figure for the manifest, `edgecxr bench` measures properly."""
    return round(median_ms(lambda: runner.infer(one), runs), 2)
