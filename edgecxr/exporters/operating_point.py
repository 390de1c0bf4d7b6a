"""`export --operating-point`: the decision threshold, chosen on validation images, never on test.

The threshold is picked on the FP32 ONNX model's calibrated probabilities (the bundle's
temperature applied, as every engine applies it) for the training run's validation split
(or, when those images are not here, on the held-out sample) and recorded in the bundle with
the rates it reached there, so a reader can see what it was tuned for.
"""

from __future__ import annotations

import numpy as np

from edgecxr.core.data.folders import Sample, hash_and_check, samples_fingerprint
from edgecxr.core.data.roots import resolve_recorded
from edgecxr.core.decision import DecisionRule, pick_threshold, rates_at
from edgecxr.core.metrics import positive_class_index


def validation_samples(run: dict | None) -> list[Sample] | None:
    """The run's validation images, when it has them and they are on this machine."""
    if run is None:
        return None
    split = run.get("split") or {}
    if not split.get("val"):
        return None
    root = resolve_recorded(split.get("val_root") or split.get("train_root", ""))
    if not root.is_dir():
        return None
    index = {c: i for i, c in enumerate(run["classes"])}
    return [Sample(root / rel, rel, index[rel.split("/")[0]]) for rel in split["val"]]


def decision_samples(run: dict | None, heldout: list[Sample]) -> tuple[list[Sample], str]:
    """The images the temperature and the threshold are chosen on, and what they are in words:
    the run's validation split, or the held-out sample when those images are not here."""
    samples = validation_samples(run)
    if samples is None:
        return heldout, "held-out (the run's validation images are not here)"
    hash_and_check(samples)
    return samples, "validation"


def decision_record(class_names: list[str], options, samples: list[Sample], split: str,
                    probs: np.ndarray) -> dict:
    """The bundle's `decision`: argmax, or the threshold meeting --operating-point; plus the band.

    `probs`: the FP32 reference engine's calibrated probabilities on `samples` (what every
    engine will decide on), so the threshold is a threshold on the probability a reader sees.
    """
    positive = class_names[positive_class_index(class_names)]
    if options.operating_point is None:
        return DecisionRule(tuple(class_names), positive, None, options.uncertain).to_manifest()
    target, value = options.operating_point
    pos = class_names.index(positive)
    p_positive = probs[:, pos]
    is_positive = np.array([s.label == pos for s in samples])
    threshold = pick_threshold(p_positive, is_positive, target, value)
    record = {"target": target, "value": value, "split": split, "images": len(samples),
              "fingerprint": samples_fingerprint(samples),
              "engine": "onnxruntime-fp32", "calibrated": True,
              "achieved": rates_at(p_positive, is_positive, threshold)}
    return DecisionRule(tuple(class_names), positive, threshold, options.uncertain, record).to_manifest()
