"""How faithful a map is to the engine it explains (Petsiuk et al. 2018, RISE), and how two maps agree.

Deletion: remove the pixels the map ranks first (replaced by the image mean, as the occluder)
and follow P(class): a faithful map makes it fall fast (low area). Insertion: start from a
coarse copy of the image and put the top-ranked pixels back: a faithful map makes P(class)
rise fast (high area). A random map of the same square structure is the baseline each must beat.
Rank correlation (Spearman) compares maps square by square, where they are independent values.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from edgecxr.core.metrics import calibrated_softmax
from edgecxr.explain.occlusion import Grid, Infer, spread


def coarse_copy(tensor: np.ndarray, factor: int = 16) -> np.ndarray:
    """The image with its detail removed (shrunk by `factor`, then enlarged back): insertion's start."""
    _, h, w = tensor.shape
    small = (max(1, w // factor), max(1, h // factor))
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(p, np.float32), mode="F")
                         .resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.BILINEAR))
              for p in tensor]
    return np.stack(planes).astype(np.float32)


def ranking(heat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixel indices, highest value first; ties (inside one square) broken at random, not by position."""
    flat = heat.ravel()
    return np.lexsort((rng.random(flat.size), -flat))


def curve(infer: Infer, target: int, start: np.ndarray, end: np.ndarray, order: np.ndarray,
          steps: int = 16, temperature: float = 1.0) -> np.ndarray:
    """P(target) as the ranked pixels move from `start` to `end`, in `steps` equal shares (steps + 1 points)."""
    c, h, w = start.shape
    frames = np.repeat(start.reshape(1, c, h * w), steps + 1, axis=0)
    end_flat = end.reshape(c, h * w)
    for k in range(1, steps + 1):
        taken = order[: round(k * h * w / steps)]
        frames[k][:, taken] = end_flat[:, taken]
    return calibrated_softmax(infer(frames.reshape(steps + 1, c, h, w)), temperature)[:, target]


def area(values: np.ndarray) -> float:
    """Area under a curve sampled at equal steps over [0, 1] (trapezoid rule)."""
    return float(((values[:-1] + values[1:]) / 2).mean())


def deletion_insertion(infer: Infer, tensor: np.ndarray, heat: np.ndarray, target: int,
                       rng: np.random.Generator, steps: int = 16, temperature: float = 1.0) -> tuple[float, float]:
    order = ranking(heat, rng)
    removed = np.broadcast_to(tensor.mean(axis=(1, 2), keepdims=True), tensor.shape)
    deletion = area(curve(infer, target, tensor, removed, order, steps, temperature))
    insertion = area(curve(infer, target, coarse_copy(tensor), tensor, order, steps, temperature))
    return deletion, insertion


def random_heat(grid: Grid, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A map with the occlusion map's square structure but random values: the baseline to beat."""
    ys, xs = grid.starts(size[0]), grid.starts(size[1])
    patch = (grid.pixels(size[0])[0], grid.pixels(size[1])[0])
    return spread(rng.random((len(ys), len(xs))).astype(np.float32), ys, xs, patch, size)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two equal-shaped maps (average ranks for ties); 0 when one is constant."""
    ra, rb = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, np.float64)
    ranks[order] = np.arange(values.size, dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]
