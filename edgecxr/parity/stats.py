"""The statistics of a parity check, in numpy/math only, each checked against hand-computed values.

- Wilson score interval for one accuracy (Wilson 1927).
- Exact McNemar test: under H0 the discordant pairs split as Binomial(b + c, 1/2); two-sided
  p = min(1, 2 * P(X <= min(b, c))).
- Paired difference of accuracies with a Wald interval: d = (c - b) / n,
  var = ((b + c) - (c - b)^2 / n) / n^2, where b = reference right and engine wrong,
  c = reference wrong and engine right.
- The expected calibration error and reliability points live in core/metrics.py: the PyTorch
  test report computes them too.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact p-value for b vs c discordant pairs; 1.0 when there are none."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_difference(b: int, c: int, n: int, z: float = Z95) -> dict:
    """Engine accuracy minus reference accuracy, with a 95 % interval."""
    if n == 0:
        return {"difference": 0.0, "ci95": [0.0, 0.0]}
    d = (c - b) / n
    var = max(0.0, ((b + c) - (c - b) ** 2 / n)) / n**2
    half = z * math.sqrt(var)
    return {"difference": d, "ci95": [d - half, d + half]}
