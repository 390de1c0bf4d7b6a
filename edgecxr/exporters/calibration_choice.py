"""Keeping, per INT8 engine, the calibration sample whose engine follows FP32 most closely.

Which images calibrate an INT8 engine moved it more than any quantizer option measured on the
reference model (docs/export.md: the same NNCF recipe flipped 2, 4 or 4 of the 624 test images
with three seeded samples). So export can quantize each engine once per candidate sample and
keep, per engine, the one whose P(positive) moves least against FP32 on the selection images:
validation images, never test images and never the held-out images whose agreement the
bundle records.

The score is the mean |ΔP(positive)|, not a flip count: on a few hundred images most
candidates flip none, so counts rarely separate them, while |ΔP| is largest where an image
sits near the threshold, which is where flips come from. Flips decide ties, then the order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CRITERION = "smallest mean |ΔP(positive)| against FP32 on the selection images"


def score(reference: np.ndarray, candidate: np.ndarray, positive: int) -> dict:
    change = np.abs(reference[:, positive] - candidate[:, positive])
    return {"mean_abs_prob_diff": round(float(change.mean()), 6), "max_abs_prob_diff": round(float(change.max()), 6),
            "flips": int((reference.argmax(1) != candidate.argmax(1)).sum())}


def _rank(entry: dict) -> tuple[float, int]:
    return entry["mean_abs_prob_diff"], entry["flips"]


def candidate_name(rel: str, k: int) -> str:
    """onnx/model.int8.onnx -> onnx/model.int8.candidate-2.onnx: one stem per candidate, so
    an OpenVINO .xml still finds its .bin."""
    stem, dot, suffix = rel.rpartition(".")
    return f"{stem}.candidate-{k}{dot}{suffix}"


class BestOf:
    """The candidates of one INT8 engine: each is written, scored and either kept under the
    engine's own file names or deleted, so at most two candidates are on disk at a time."""

    def __init__(self, folder: Path, rels: list[str], backend: str, selection: np.ndarray | None,
                 reference: np.ndarray | None, positive: int):
        self.folder, self.rels, self.backend = folder, rels, backend
        self.selection, self.reference, self.positive = selection, reference, positive
        self.scores: list[dict] = []
        self.kept: tuple[int, dict] | None = None  # (seed, quantization record)
        self.kept_score: dict | None = None

    def paths(self, k: int) -> list[Path]:
        if self.selection is None:  # one candidate: nothing to compare, write the engine itself
            return [self.folder / rel for rel in self.rels]
        return [self.folder / candidate_name(rel, k) for rel in self.rels]

    def offer(self, k: int, seed: int, info: dict) -> None:
        if self.selection is None or self.reference is None:
            self.kept = (seed, info)
            return
        from edgecxr.backends import RunnerOptions, open_runner

        paths = self.paths(k)
        with open_runner(self.backend, paths[0], RunnerOptions()) as runner:
            probabilities = runner.probabilities(self.selection, batch_size=8)
        entry = {"seed": seed, **score(self.reference, probabilities, self.positive)}
        self.scores.append(entry)
        if self.kept_score is None or _rank(entry) < _rank(self.kept_score):
            for rel, path in zip(self.rels, paths, strict=True):
                os.replace(path, self.folder / rel)
            self.kept, self.kept_score = (seed, info), entry
        else:
            for path in paths:
                path.unlink()

    def result(self) -> dict:
        """The kept candidate's quantization record, with which seed it is and why."""
        if self.kept is None:
            raise RuntimeError("no calibration candidate was offered")
        seed, info = self.kept
        record = {**info, "calibration_seed": seed}
        if self.scores and self.reference is not None:
            record["calibration_choice"] = {"criterion": CRITERION, "images": len(self.reference),
                                            "candidates": self.scores}
        return record
