"""Parity statistics against values computed by hand (and by scipy where it has them)."""

import math

import numpy as np
import pytest

from edgecxr.core.metrics import expected_calibration_error
from edgecxr.parity.stats import mcnemar_exact, paired_difference, wilson_interval
from tests.tools import require_module


def test_wilson_interval_by_hand():
    # 585 of 624 (93.75 %): centre and half-width worked out from the formula
    n, k, z = 624, 585, 1.959963984540054
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(centre - half) and hi == pytest.approx(centre + half)
    assert (round(lo, 4), round(hi, 4)) == (0.9157, 0.9539)


def test_wilson_matches_scipy():
    stats = require_module("scipy.stats")
    ci = stats.binomtest(17, 20).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(17, 20) == pytest.approx((ci.low, ci.high))


def test_mcnemar_exact_by_hand():
    # b=1, c=6: P(X<=1) = (1 + 7) / 128; two-sided 16/128 = 0.125
    assert mcnemar_exact(1, 6) == pytest.approx(0.125)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0
    # b=0, c=5: 2 * (1/32)
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)


def test_paired_difference_by_hand():
    out = paired_difference(b=4, c=1, n=100)
    assert out["difference"] == pytest.approx(-0.03)
    half = 1.959963984540054 * math.sqrt((5 - 9 / 100) / 100**2)
    assert out["ci95"] == pytest.approx([-0.03 - half, -0.03 + half])


def test_ece_perfect_and_overconfident():
    labels = np.array([0, 1, 0, 1])
    calibrated = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(calibrated, labels) == 0.0
    # always 90 % sure, right half the time: ECE = 0.4
    over = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    assert expected_calibration_error(over, np.array([0, 1, 0, 1])) == pytest.approx(0.4)


def test_reliability_points_cover_every_image_and_sum_to_the_ece():
    import numpy as np

    from edgecxr.core.metrics import expected_calibration_error, reliability

    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.55, 0.45], [0.05, 0.95]])
    labels = np.array([0, 1, 1, 0, 0, 1])
    points = reliability(probs, labels)
    assert abs(sum(share for _, _, share in points) - 1.0) < 1e-12
    by_hand = sum(share * abs(acc - conf) for conf, acc, share in points)
    assert expected_calibration_error(probs, labels) == by_hand
    # the 0.9 bin holds the first image (right) and the last (0.95: its own bin); 0.8 is wrong
    assert (0.8, 0.0, 1 / 6) in [(round(c, 6), a, s) for c, a, s in points]
