"""How closely a converted engine follows the FP32 ONNX model on held-out images."""

from __future__ import annotations

import time

import numpy as np

from edgecxr.metrics import softmax

MIN_AGREEMENT = 0.98


def probabilities(runner, inputs: np.ndarray, batch_size: int = 8) -> np.ndarray:
    chunks = [softmax(runner.infer(inputs[i:i + batch_size])) for i in range(0, len(inputs), batch_size)]
    return np.concatenate(chunks)


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
    runner.infer(one)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.infer(one)
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 2)
