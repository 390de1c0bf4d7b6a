"""Occlusion sensitivity through any Runner: cover one square of the input at a time with
the image's own mean and record how far the probability of the explained class falls.

It needs nothing but the engine's `infer`, so the map shown beside the scanner comes from the
engine that made the result (INT8 included), not from a PyTorch model it may have drifted from.
A fixed unit (points of probability) rather than a per-image stretch keeps a weak map weak.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgecxr.core.metrics import calibrated_softmax

Infer = Callable[[np.ndarray], np.ndarray]  # (N, 3, H, W) float32 -> (N, classes) logits

# Below these an image or a map carries no spatial message: no map is drawn, the reason is kept.
MIN_INPUT_STD = 0.05  # normalised units (about 1 % of the grey range): a blank or saturated frame
MIN_MAP_RANGE = 0.02  # covering any square moves P(label) by under 2 points: nothing to point at

FLAT_INPUT = "flat_input"
FLAT_MAP = "flat_map"


@dataclass(frozen=True)
class Grid:
    """Occluder side and step as fractions of the input side, so one choice fits 128 and 256 px models."""

    patch: float = 0.25
    stride: float = 0.125

    def pixels(self, side: int) -> tuple[int, int]:
        patch = max(1, round(self.patch * side))
        return patch, max(1, round(self.stride * side))

    def starts(self, side: int) -> list[int]:
        patch, stride = self.pixels(side)
        starts = list(range(0, side - patch + 1, stride))
        if starts[-1] != side - patch:  # the last row/column of squares reaches the edge
            starts.append(side - patch)
        return starts

    def passes(self, height: int, width: int) -> int:
        return len(self.starts(height)) * len(self.starts(width)) + 1

    def describe(self, height: int, width: int) -> dict:
        patch, stride = self.pixels(height)
        return {"patch_px": patch, "stride_px": stride, "squares": self.passes(height, width) - 1}


DEFAULT_GRID = Grid()


@dataclass
class Explanation:
    target: int  # class index explained (the engine's label unless asked otherwise)
    p_target: float  # P(target) on the untouched input
    falls: np.ndarray  # (rows, cols): fall in P(target) with each square covered
    heat: np.ndarray  # (H, W): mean fall over the squares covering each pixel
    reason: str | None  # why no map should be shown (the numbers are kept for the record)
    passes: int
    ms: float


def occlusion_map(infer: Infer, tensor: np.ndarray, target: int | None = None, grid: Grid = DEFAULT_GRID,
                  batch: int = 16, temperature: float = 1.0) -> Explanation:
    """The map of one (3, H, W) model input; `target` defaults to the class the engine picks.
    `temperature`: the bundle's, so P(target) and its falls are the calibrated probability the
    result carries."""
    t0 = time.perf_counter()
    _, height, width = tensor.shape
    base = calibrated_softmax(infer(tensor[None].astype(np.float32)), temperature)[0]
    target = int(np.argmax(base)) if target is None else target
    ys, xs = grid.starts(height), grid.starts(width)
    if float(tensor.std(axis=(1, 2)).max()) < MIN_INPUT_STD:  # per channel: their means differ
        return Explanation(target, float(base[target]), np.zeros((len(ys), len(xs)), np.float32),
                           np.zeros((height, width), np.float32), FLAT_INPUT, 1, 1000 * (time.perf_counter() - t0))
    ph, pw = grid.pixels(height)[0], grid.pixels(width)[0]
    fill = tensor.mean(axis=(1, 2), keepdims=True)
    squares = [(y, x) for y in ys for x in xs]
    falls = np.empty(len(squares), np.float32)
    for start in range(0, len(squares), batch):
        chunk = squares[start:start + batch]
        covered = np.repeat(tensor[None], len(chunk), axis=0)
        for k, (y, x) in enumerate(chunk):
            covered[k, :, y:y + ph, x:x + pw] = fill
        falls[start:start + len(chunk)] = base[target] - calibrated_softmax(infer(covered), temperature)[:, target]
    grid_falls = falls.reshape(len(ys), len(xs))
    heat = spread(grid_falls, ys, xs, (ph, pw), (height, width))
    reason = FLAT_MAP if float(falls.max() - falls.min()) < MIN_MAP_RANGE else None
    return Explanation(target, float(base[target]), grid_falls, heat, reason, 1 + len(squares),
                       1000 * (time.perf_counter() - t0))


def spread(values: np.ndarray, ys: list[int], xs: list[int], patch: tuple[int, int],
           size: tuple[int, int]) -> np.ndarray:
    """Per-square values -> per-pixel mean over the squares that cover each pixel."""
    total = np.zeros(size, np.float32)
    count = np.zeros(size, np.float32)
    ph, pw = patch
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            total[y:y + ph, x:x + pw] += values[i, j]
            count[y:y + ph, x:x + pw] += 1
    return total / np.maximum(count, 1)
