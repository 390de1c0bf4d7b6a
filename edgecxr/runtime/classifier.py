"""The engine wrapper: a bundle's chosen engine plus its decision rule."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edgecxr.backends import RunnerOptions, open_runner
from edgecxr.backends.base import FEATURES, LOGITS
from edgecxr.core.bundle import Bundle
from edgecxr.core.decision import DecisionRule
from edgecxr.core.metrics import calibrated_softmax
from edgecxr.runtime.selection import Choice
from edgecxr.scope.gate import Gate


class Classifier:
    """A bundle's chosen engine plus its decision rule and its intended-use gate."""

    def __init__(self, bundle: Bundle, choice: Choice, options: RunnerOptions | None = None, gate: Gate | None = None):
        self.bundle = bundle
        self.choice = choice
        self.artifact = choice.artifact
        self.runner = open_runner(self.artifact.backend, self.artifact.path, options or RunnerOptions())
        self.class_names = bundle.class_names
        self.rule = DecisionRule.from_manifest(bundle.manifest, bundle.folder / "bundle.json")
        self.gate = gate if gate is not None else Gate.from_bundle(bundle)
        self._last_done = 0.0

    @property
    def engine_label(self) -> str:
        return f"{self.artifact.backend}/{self.artifact.precision}"

    def probabilities(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """The bundle's calibrated probabilities (softmax of logits / its temperature) and the ms."""
        probs, _, ms = self.submit(batch)()
        return probs, ms

    def submit(self, batch: np.ndarray) -> Callable[[], tuple[np.ndarray, list, float]]:
        """Start a batch; the function returned waits for its probabilities, the gate's learned
        (score, refusal) per image, and its engine time in ms: from its start, or from the end of
        the batch it queued behind (the watcher keeps one batch in flight while it records the
        previous one), to when the engine finished it, so queued time is not counted twice nor
        the caller's own work counted at all."""
        started = time.perf_counter()
        pending = self.runner.submit(batch)

        def collect() -> tuple[np.ndarray, list, float]:
            outputs = pending.outputs()
            probs = calibrated_softmax(outputs[LOGITS], self.bundle.temperature)  # what the rule decides on
            done = pending.finished or time.perf_counter()
            elapsed, self._last_done = 1000 * (done - max(started, self._last_done)), max(done, self._last_done)
            return probs, self.gate.judge(outputs.get(FEATURES), len(probs)), max(elapsed, 0.0)
        return collect

    def result_fields(self, probs: np.ndarray) -> dict:
        """label (a class or UNCERTAIN), positive_class, p_positive and the rule, for one image."""
        return self.rule.result_fields(probs)

    def close(self) -> None:
        self.runner.close()
