"""The gate's pixel stage: frames no radiograph looks like, caught from a few statistics.

A blank or failed exposure, a frame of noise, a saturated or colour picture: the model answers
all of these with confidence (a uniform grey frame gets P(PNEUMONIA) 0.88), and its own
features can rate a blank frame as more typical than a real image. So these are refused before
the engine, from statistics of the decoded picture, each against the range seen on the
bundle's own training images (recorded at export, so the thresholds travel with the model).

The statistics are computed on a fixed-size copy (at most WORK_SIZE pixels on the long side,
by block averaging), so they mean the same thing for a 512-pixel PNG and a 3000-pixel DICOM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecxr.scope.verdict import Refusal

WORK_SIZE = 256
STATISTICS = ("contrast", "mean", "extreme_share", "smoothness", "colour")


def statistics(pixels: np.ndarray) -> dict[str, float]:
    """The pixel stage's statistics of one decoded picture (float in [0, 1], (H, W) or (H, W, 3)).

    - contrast: the standard deviation of the grey levels (about 0 for a blank frame);
    - mean: the mean grey level (under- or over-exposure);
    - extreme_share: the share of pixels at either end of the range (saturation);
    - smoothness: the correlation of each pixel with its right and lower neighbours; a
      radiograph is smooth (about 0.95 and more), noise is not (about 0);
    - colour: the mean spread between the colour channels (0 for a grey picture).
    """
    arr = np.asarray(pixels, dtype=np.float32)
    colour = float(np.mean(arr.max(axis=2) - arr.min(axis=2))) if arr.ndim == 3 else 0.0
    grey = arr.mean(axis=2) if arr.ndim == 3 else arr
    small = _block_mean(grey, WORK_SIZE)
    return {
        "contrast": float(small.std()), "mean": float(small.mean()),
        "extreme_share": float(np.mean((small <= 0.02) | (small >= 0.98))),
        "smoothness": _neighbour_correlation(small), "colour": colour,
    }


def _block_mean(grey: np.ndarray, size: int) -> np.ndarray:
    """Average blocks of pixels so the long side is at most `size` (no resampling library)."""
    step = max(1, int(np.ceil(max(grey.shape) / size)))
    h, w = (grey.shape[0] // step) * step, (grey.shape[1] // step) * step
    if h == 0 or w == 0 or step == 1:
        return np.asarray(grey, dtype=np.float32)
    return grey[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3), dtype=np.float32)


def _neighbour_correlation(small: np.ndarray) -> float:
    """Correlation of each pixel with its right and lower neighbour (one mean for the frame);
    1.0 for a frame too small or too flat to tell (a flat frame is the contrast rule's to refuse)."""
    x = small - small.mean()
    terms = []
    if x.shape[1] > 1:
        terms.append((x[:, :-1], x[:, 1:]))
    if x.shape[0] > 1:
        terms.append((x[:-1, :], x[1:, :]))
    values = []
    for a, b in terms:
        scale = float(np.sqrt(np.mean(a * a) * np.mean(b * b)))
        if scale > 1e-12:
            values.append(float(np.mean(a * b)) / scale)
    return float(np.mean(values)) if values else 1.0


@dataclass(frozen=True)
class PixelRules:
    """Thresholds, each derived at export from the training images' statistics with a margin."""

    min_contrast: float
    min_mean: float
    max_mean: float
    max_extreme_share: float
    min_smoothness: float
    max_smoothness: float
    max_colour: float

    def check(self, stats: dict[str, float]) -> Refusal | None:
        """The first rule the picture breaks, in the order a radiographer would look, or None."""
        rules = (
            ("colour", stats["colour"] > self.max_colour, stats["colour"], self.max_colour,
             "a colour picture (a photograph or screen capture), not an X-ray image"),
            ("blank", stats["contrast"] < self.min_contrast, stats["contrast"], self.min_contrast,
             "the image is blank or nearly uniform: no anatomy is visible (a failed exposure?)"),
            ("underexposed", stats["mean"] < self.min_mean, stats["mean"], self.min_mean,
             "the image is far too dark to read (under-exposed or wrongly windowed)"),
            ("overexposed", stats["mean"] > self.max_mean, stats["mean"], self.max_mean,
             "the image is far too bright to read (over-exposed or wrongly windowed)"),
            ("saturated", stats["extreme_share"] > self.max_extreme_share, stats["extreme_share"],
             self.max_extreme_share, "most of the image is pure black or pure white (saturated)"),
            ("noise", stats["smoothness"] < self.min_smoothness, stats["smoothness"], self.min_smoothness,
             "the image is too grainy or busy for an X-ray (noise, a photograph or a drawing?)"),
            ("flat", stats["smoothness"] > self.max_smoothness, stats["smoothness"], self.max_smoothness,
             "the image has no anatomical detail (a smooth grey ramp or a blurred frame)"),
        )
        for code, broken, value, limit, reason in rules:
            if broken:
                return Refusal("pixels", code, reason, score=value, threshold=limit)
        return None

    def to_manifest(self) -> dict:
        return {"statistics_size": WORK_SIZE, **self.__dict__}

    @classmethod
    def from_manifest(cls, record: dict) -> PixelRules:
        """A rule a bundle does not record (made by an earlier edgecxr) is off, not guessed."""
        off = {name: (np.inf if name.startswith("max_") else -np.inf) for name in cls.__dataclass_fields__}
        return cls(**{k: float(record.get(k, off[k])) for k in cls.__dataclass_fields__})

    @classmethod
    def fit(cls, table: list[dict[str, float]]) -> PixelRules:
        """Rules from the statistics of in-scope training images: each limit lies beyond the most
        extreme training value by a margin, so a radiograph like those the model learned from is
        never refused here; what is refused is far outside anything it saw."""
        if not table:
            raise ValueError("no training images to derive the pixel rules from")
        col = {k: np.array([row[k] for row in table], dtype=np.float64) for k in STATISTICS}
        return cls(
            min_contrast=float(min(0.5 * col["contrast"].min(), 0.03)),
            min_mean=float(min(0.5 * col["mean"].min(), 0.08)),
            max_mean=float(max(1 - 0.5 * (1 - col["mean"].max()), 0.92)),
            max_extreme_share=float(min(max(1.5 * col["extreme_share"].max(), 0.5), 0.9)),
            # radiographs are smooth but never perfectly so: block-averaged to 256 px, the
            # training images lie in 0.98-0.998; noise is near 0, photographs often near 0.95,
            # a synthetic ramp 1.0. Both limits keep a margin beyond the training range.
            min_smoothness=float(col["smoothness"].min() - 0.02),
            max_smoothness=float(1 - 0.25 * (1 - col["smoothness"].max())),
            max_colour=float(max(3 * col["colour"].max(), 0.04)),
        )
