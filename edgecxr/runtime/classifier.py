"""The engine wrapper: a bundle's chosen engine plus its decision rule."""

from __future__ import annotations

import time

import numpy as np

from edgecxr.backends import RunnerOptions, open_runner
from edgecxr.bundle import Bundle
from edgecxr.decision import DecisionRule
from edgecxr.runtime.selection import Choice


class Classifier:
    """A bundle's chosen engine plus its decision rule."""

    def __init__(self, bundle: Bundle, choice: Choice, options: RunnerOptions | None = None):
        self.bundle = bundle
        self.choice = choice
        self.artifact = choice.artifact
        self.runner = open_runner(self.artifact.backend, self.artifact.path, options or RunnerOptions())
        self.class_names = bundle.class_names
        self.rule = DecisionRule.from_manifest(bundle.manifest, bundle.folder / "bundle.json")

    @property
    def engine_label(self) -> str:
        return f"{self.artifact.backend}/{self.artifact.precision}"

    def probabilities(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        probs = self.runner.probabilities(batch, batch_size=max(1, len(batch)))
        return probs, 1000 * (time.perf_counter() - t0)

    def result_fields(self, probs: np.ndarray) -> dict:
        """label (a class or UNCERTAIN), positive_class, p_positive and the rule, for one image."""
        return self.rule.result_fields(probs)

    def close(self) -> None:
        self.runner.close()
