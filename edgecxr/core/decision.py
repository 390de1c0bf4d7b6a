"""The decision rule: how class probabilities become the label a person reads.

One rule per bundle (its `decision` record), applied unchanged by `watch`, `classify` and
`parity-check`, so the label on the device is the label the parity evidence was made with.
A bundle without an operating point keeps argmax, which for two classes is the positive
class when P(positive) > 0.5. An optional uncertain band turns probabilities near the
threshold into UNCERTAIN instead of a forced answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgecxr.core.errors import EdgecxrError
from edgecxr.core.results import UNCERTAIN, bundle_positive_class, rule_text

MANIFEST = "bundle.json"
TARGETS = ("sensitivity", "specificity", "threshold")


@dataclass(frozen=True)
class DecisionRule:
    class_names: tuple[str, ...]
    positive_class: str
    threshold: float | None = None  # None: argmax
    uncertain: tuple[float, float] | None = None  # [low, high): UNCERTAIN
    operating_point: dict | None = None  # how the threshold was chosen, as exported

    def __post_init__(self):
        if self.uncertain is not None:
            check_band(self.uncertain, self.threshold, len(self.class_names))

    @classmethod
    def from_manifest(cls, manifest: dict, path=MANIFEST) -> DecisionRule:
        try:
            return cls._from_manifest(manifest)
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgecxrError(f"the bundle's decision record is malformed ({type(exc).__name__}: {exc})",
                               path=path, fix="re-export the bundle with `edgecxr export`") from exc

    @classmethod
    def _from_manifest(cls, manifest: dict) -> DecisionRule:
        names = tuple(manifest["class_names"])
        decision = manifest.get("decision") or {"rule": "argmax"}
        positive = bundle_positive_class(manifest)
        if positive is None or positive not in names:
            raise ValueError(f"class {positive!r} is not one of {list(names)}")
        band = decision.get("uncertain")
        threshold = float(decision["threshold"]) if decision.get("rule") == "threshold" else None
        return cls(names, positive, threshold, tuple(band) if band else None, decision.get("operating_point"))

    def to_manifest(self) -> dict:
        record: dict = {"rule": "argmax"} if self.threshold is None else {
            "rule": "threshold", "class": self.positive_class, "threshold": self.threshold}
        if self.uncertain is not None:
            record["uncertain"] = list(self.uncertain)
        if self.operating_point is not None:
            record["operating_point"] = self.operating_point
        record["description"] = self.describe()
        return record

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)

    def describe(self) -> str:
        """The rule in one short line, shown beside every result (worded by core.results.rule_text, as
        the SR and the page word it)."""
        return rule_text(self.positive_class, len(self.class_names), self.threshold, self.uncertain)

    def predict(self, probs: np.ndarray) -> np.ndarray:
        """Class index per row, the band ignored: what accuracy and recall are computed on."""
        probs = np.atleast_2d(probs)
        if self.threshold is None:
            return probs.argmax(axis=1)
        pos = self.positive_index
        others = np.delete(np.arange(len(self.class_names)), pos)
        fallback = others[probs[:, others].argmax(axis=1)]
        return np.where(probs[:, pos] >= self.threshold, pos, fallback)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Class index per row, -1 for UNCERTAIN."""
        probs = np.atleast_2d(probs)
        decided = self.predict(probs)
        if self.uncertain is None:
            return decided
        p = probs[:, self.positive_index]
        lo, hi = self.uncertain
        return np.where((p >= lo) & (p < hi), -1, decided)

    def name(self, index: int) -> str:
        return UNCERTAIN if index < 0 else self.class_names[index]

    def labels(self, probs: np.ndarray) -> list[str]:
        return [self.name(int(i)) for i in self.decide(probs)]

    def result_fields(self, probs: np.ndarray) -> dict:
        """What every ok result record carries besides its probabilities."""
        return {"label": self.labels(probs)[0], "positive_class": self.positive_class,
                "p_positive": round(float(np.atleast_2d(probs)[0, self.positive_index]), 6),
                "decision": self.describe()}


def check_band(band: Sequence[float], threshold: float | None, n_classes: int) -> None:
    lo, hi = (float(v) for v in band)
    cut = threshold if threshold is not None else (0.5 if n_classes == 2 else None)
    if not (0.0 <= lo < hi <= 1.0):
        raise EdgecxrError(f"uncertain band {lo},{hi} is not LOW,HIGH with 0 ≤ LOW < HIGH ≤ 1",
                           fix="give e.g. --uncertain 0.4,0.6")
    if cut is not None and not (lo <= cut <= hi):
        raise EdgecxrError(f"uncertain band {lo},{hi} does not contain the decision threshold {cut:.3f}",
                           fix="choose a band around the threshold, or another operating point")


def parse_band(text: str | None) -> tuple[float, float] | None:
    """`--uncertain 0.4,0.6` -> (0.4, 0.6)."""
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise EdgecxrError(f"--uncertain {text!r} is not two numbers LOW,HIGH",
                           fix="give e.g. --uncertain 0.4,0.6") from None
    check_band((lo, hi), None, 0)
    return lo, hi


def parse_operating_point(text: str | None) -> tuple[str, float] | None:
    """`sensitivity=0.95`, `specificity=0.9` or `threshold=0.3` -> (target, value)."""
    if not text:
        return None
    target, _, value = text.partition("=")
    target = target.strip().lower()
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if target not in TARGETS or not (0.0 < number < 1.0):
        raise EdgecxrError(f"--operating-point {text!r} is not sensitivity=, specificity= or threshold= with a "
                           "value between 0 and 1", fix="give e.g. --operating-point sensitivity=0.95")
    return target, number


def pick_threshold(p_positive: np.ndarray, is_positive: np.ndarray, target: str, value: float) -> float:
    """The threshold on P(positive) that meets the target on these images.

    sensitivity=s: the highest threshold that still calls at least s of the positives
    (fewest false positives for that sensitivity); specificity=s: the lowest threshold
    that keeps at least s of the negatives below it.
    """
    if target == "threshold":
        return float(value)
    p = np.asarray(p_positive, dtype=np.float64)
    pos = np.asarray(is_positive, dtype=bool)
    group = np.sort(p[pos])[::-1] if target == "sensitivity" else np.sort(p[~pos])
    if len(group) == 0:
        kind = "positive" if target == "sensitivity" else "negative"
        raise EdgecxrError(f"the validation images hold no {kind} case, so {target} cannot be set",
                           fix="export from a run whose validation split has both classes, or use threshold=")
    k = max(1, math.ceil(value * len(group) - 1e-9))
    if target == "sensitivity":
        return float(group[k - 1])
    return float(np.nextafter(group[k - 1], np.inf))


def rates_at(p_positive: np.ndarray, is_positive: np.ndarray, threshold: float) -> dict:
    """Sensitivity and specificity of `P(positive) ≥ threshold` on these images."""
    p = np.asarray(p_positive, dtype=np.float64)
    pos = np.asarray(is_positive, dtype=bool)
    called = p >= threshold
    return {"sensitivity": float(called[pos].mean()) if pos.any() else None,
            "specificity": float((~called[~pos]).mean()) if (~pos).any() else None,
            "positives": int(pos.sum()), "negatives": int((~pos).sum())}
