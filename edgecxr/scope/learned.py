"""The gate's learned stage: an out-of-scope score from the engine's own features.

The exported graph returns, beside the logits, each encoder stage's output averaged over its
tokens (see `exporters/onnx_export`). Two things are read from them, both fitted at export on
the bundle's training images and recorded in the bundle (`gate.npz`):

- an *orientation head*: a linear classifier trained, without labels, to tell a chest image
  shown as the model learned it from the same image turned 90/180/270 degrees, flipped top to
  bottom, grey-inverted or cropped to a small part. Its P(not upright) catches what pixel
  statistics and distances cannot: such images are made of the training images themselves.
- a *typicality distance*: the Mahalanobis distance of the early stages' features to the
  nearest class (a Gaussian per class, one shared covariance), for what is not a chest image
  at all: photographs, other modalities, drawings.

Each is divided by its 99.5th percentile on validation images, and the score is the larger of
the two, so 1.0 means "as unusual as the rarest in-scope images". The threshold is set on
validation images so that about 1 % of in-scope images are refused. Pure numpy: the same
arithmetic on every engine's features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecxr.scope.verdict import Refusal

ARRAYS = "gate.npz"
UPRIGHT = "upright"
# what the orientation head tells apart, in its class order; the reason a refusal gives for each
TRANSFORMS = {
    UPRIGHT: "",
    "rot90": "the image appears turned on its side (rotated 90 degrees)",
    "rot180": "the image appears upside down",
    "rot270": "the image appears turned on its side (rotated 90 degrees)",
    "vflip": "the image appears flipped top to bottom",
    "invert": "the grey levels appear inverted (bone dark, lungs bright)",
    "crop": "the image shows only a small part of the chest (cropped or zoomed in)",
}
CODES = {"rot90": "rotated", "rot180": "upside_down", "rot270": "rotated", "vflip": "flipped",
         "invert": "inverted", "crop": "cropped"}
UNLIKE = "does not look like a frontal chest X-ray of the kind the model was trained on"


@dataclass
class LearnedGate:
    transforms: list[str]
    head_mean: np.ndarray  # (F,) standardisation of the features for the head
    head_scale: np.ndarray  # (F,)
    head_weight: np.ndarray  # (F, K)
    head_bias: np.ndarray  # (K,)
    typical_slice: tuple[int, int]  # the feature columns the distance reads
    class_means: np.ndarray  # (C, D)
    precision: np.ndarray  # (D, D)
    head_norm: float  # the 99.5th percentile of each part on validation images
    distance_norm: float
    threshold: float

    def parts(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Per image: P(not upright), the head's most likely class, and the distance."""
        f = np.asarray(features, dtype=np.float64)
        z = (f - self.head_mean) / self.head_scale @ self.head_weight + self.head_bias
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        lo, hi = self.typical_slice
        d = np.stack([np.einsum("ij,jk,ik->i", f[:, lo:hi] - mu, self.precision, f[:, lo:hi] - mu)
                      for mu in self.class_means]).min(axis=0)
        return {"not_upright": 1.0 - p[:, 0], "likely": p.argmax(axis=1), "distance": d}

    def scores(self, features: np.ndarray) -> np.ndarray:
        part = self.parts(features)
        return np.maximum(part["not_upright"] / self.head_norm, part["distance"] / self.distance_norm)

    def judge(self, features: np.ndarray) -> list[tuple[float, Refusal | None]]:
        """(score, refusal or None) per image."""
        part = self.parts(features)
        head = part["not_upright"] / self.head_norm
        score = np.maximum(head, part["distance"] / self.distance_norm)
        out: list[tuple[float, Refusal | None]] = []
        for i, s in enumerate(score):
            if s <= self.threshold:
                out.append((float(s), None))
                continue
            name = self.transforms[int(part["likely"][i])]
            if head[i] >= part["distance"][i] / self.distance_norm and name != UPRIGHT:
                code, reason = CODES.get(name, "unlike_training"), TRANSFORMS.get(name) or UNLIKE
            else:
                code, reason = "unlike_training", UNLIKE
            out.append((float(s), Refusal("learned", code, reason, score=float(s), threshold=self.threshold)))
        return out

    # -- the bundle's record -----------------------------------------------------------------
    def save(self, folder: Path) -> dict:
        """Write the arrays to FOLDER/gate.npz (no pickles); return the manifest's record."""
        np.savez(folder / ARRAYS, head_mean=self.head_mean, head_scale=self.head_scale,
                 head_weight=self.head_weight, head_bias=self.head_bias, class_means=self.class_means,
                 precision=self.precision)
        return {"file": ARRAYS, "transforms": self.transforms, "typical_slice": list(self.typical_slice),
                "head_norm": self.head_norm, "distance_norm": self.distance_norm, "threshold": self.threshold}

    @classmethod
    def load(cls, folder: Path, record: dict) -> LearnedGate:
        with np.load(folder / record.get("file", ARRAYS), allow_pickle=False) as arrays:
            a = {k: np.asarray(arrays[k], dtype=np.float64) for k in arrays.files}
        lo, hi = (int(v) for v in record["typical_slice"])
        return cls(list(record["transforms"]), a["head_mean"], a["head_scale"], a["head_weight"], a["head_bias"],
                   (lo, hi), a["class_means"], a["precision"], float(record["head_norm"]),
                   float(record["distance_norm"]), float(record["threshold"]))
