"""Temperature scaling (Guo et al. 2017): one number T, fitted at export on the validation
images' FP32 logits by minimising the negative log-likelihood of softmax(logits / T).

A temperature changes no ranking: argmax, the ROC curve and the order of P(positive) stay
as they are; it only makes the probabilities mean what they say. The fit is deterministic
(a log-spaced grid, then golden-section refinement around its best point), bounded to
[T_MIN, T_MAX], and recorded in the bundle with the ECE (15 equal-width bins) and NLL before
and after, on the images it was fitted on.
"""

from __future__ import annotations

import math

import numpy as np

from edgecxr.core.errors import DataError
from edgecxr.core.metrics import ECE_BINS, calibrated_softmax, expected_calibration_error, negative_log_likelihood

T_MIN, T_MAX = 0.05, 20.0
GRID = 121  # log-spaced points over [T_MIN, T_MAX]: neighbours 5 % apart before refinement
GOLDEN = (math.sqrt(5) - 1) / 2


def nll_at(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    return negative_log_likelihood(calibrated_softmax(logits, temperature), labels)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, steps: int = 60) -> float:
    """The T in [T_MIN, T_MAX] with the lowest NLL on these images."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(logits) == 0:
        raise DataError("no images to fit the temperature on",
                        fix="export from a run whose validation images are on this machine, or pass --calib-data")
    grid = np.exp(np.linspace(math.log(T_MIN), math.log(T_MAX), GRID))
    losses = [nll_at(logits, labels, t) for t in grid]
    best = int(np.argmin(losses))
    lo, hi = math.log(grid[max(best - 1, 0)]), math.log(grid[min(best + 1, GRID - 1)])
    # golden-section search on log T between the grid neighbours of the best grid point
    a, b = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    fa, fb = nll_at(logits, labels, math.exp(a)), nll_at(logits, labels, math.exp(b))
    for _ in range(steps):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - GOLDEN * (hi - lo)
            fa = nll_at(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + GOLDEN * (hi - lo)
            fb = nll_at(logits, labels, math.exp(b))
    refined = math.exp((lo + hi) / 2)
    if nll_at(logits, labels, refined) > losses[best]:  # a flat or edge minimum: the grid point stands
        return float(grid[best])
    return float(refined)


def calibration_record(logits: np.ndarray, labels: np.ndarray, fitted_on: str, fingerprint: str,
                       given: float | None = None) -> dict:
    """The bundle's `probability_calibration`: T and what it did on the images it was fitted on
    (`given`: export --temperature, recorded with what it does on the same images, not fitted)."""
    labels = np.asarray(labels, dtype=np.int64)
    fitted = given is None
    temperature = round(fit_temperature(logits, labels) if given is None else float(given), 6)  # as engines read it
    before, after = calibrated_softmax(logits, 1.0), calibrated_softmax(logits, temperature)
    return {"method": "temperature" if fitted else "temperature (given)", "temperature": temperature,
            "fitted_on": fitted_on,
            "images": len(labels), "fingerprint": fingerprint, "engine": "onnxruntime-fp32",
            "applied": "softmax(logits / temperature), by every engine, before the decision rule",
            "bounds": [T_MIN, T_MAX], "ece_bins": ECE_BINS,
            "ece_before": round(expected_calibration_error(before, labels), 6),
            "ece_after": round(expected_calibration_error(after, labels), 6),
            "nll_before": round(negative_log_likelihood(before, labels), 6),
            "nll_after": round(negative_log_likelihood(after, labels), 6)}
