"""`export --operating-point`: the decision threshold, chosen on validation images, never on test.

The threshold is picked on the FP32 ONNX model's calibrated probabilities (the bundle's
temperature applied, as every engine applies it) for the training run's validation split
(or, when those images are not here, on the held-out sample) and recorded in the bundle with
the rates it reached there, so a reader can see what it was tuned for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecxr.core.data.folders import (
    Sample,
    hash_and_check,
    recorded_samples,
    recorded_validation_root,
    samples_fingerprint,
)
from edgecxr.core.decision import DecisionRule, pick_threshold, rates_at
from edgecxr.core.metrics import positive_class_index


def validation_samples(run: dict | None) -> list[Sample] | None:
    """The run's validation images, when it has them and they are on this machine."""
    root = recorded_validation_root(run)
    if run is None or root is None or not root.is_dir():
        return None
    return recorded_samples(root, run["split"]["val"], run["classes"])


@dataclass
class DecisionSample:
    """The images the temperature and the threshold are chosen on. `split` is what the bundle
    records (probability_calibration.fitted_on, decision.split); `fallback` says why they are
    not the run's validation images, when they are not."""
    samples: list[Sample]
    split: str
    fallback: str | None = None


def decision_samples(run: dict | None, heldout: list[Sample], heldout_source: str) -> DecisionSample:
    """The run's validation split, or the held-out sample when those images are not here."""
    samples = validation_samples(run)
    if samples is not None:
        hash_and_check(samples)
        return DecisionSample(samples, "validation")
    if run is None:
        why = "the model folder has no run.json naming them"
    elif recorded_validation_root(run) is None:
        why = "the run has no validation split"
    else:
        why = f"the run's validation images are not on this machine ({recorded_validation_root(run)})"
    return DecisionSample(heldout, f"held-out ({heldout_source})", why)


def fallback_warning(chosen: DecisionSample, temperature_fitted: bool, threshold_chosen: bool) -> str | None:
    """The export's warning when something is chosen on the held-out sample instead of validation images."""
    what = [name for name, yes in (("temperature", temperature_fitted), ("decision threshold", threshold_chosen))
            if yes]
    if chosen.fallback is None or not what:
        return None
    fields = ["probability_calibration.fitted_on"] + (["decision.split"] if threshold_chosen else [])
    return (f"the {' and the '.join(what)} {'are' if len(what) > 1 else 'is'} chosen on {len(chosen.samples)} "
            f"images of the {chosen.split} sample, not on the run's validation split: {chosen.fallback} "
            f"(bundle.json records this in {' and '.join(fields)}); export the run folder where its "
            "validation images are to choose on them")


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
