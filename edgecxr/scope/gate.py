"""The intended-use gate: the three stages a bundle records, composed for one box.

`Gate.from_bundle` reads what export recorded (`intended_use`, `gate.pixels`, `gate.learned`)
and the overrides given at `watch`/`classify`. A bundle exported before the gate has no pixel
or learned record: those stages are then off, and `missing` says so, so the runtime can tell
the operator instead of pretending to check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgecxr.scope.intended_use import IntendedUse
from edgecxr.scope.learned import LearnedGate
from edgecxr.scope.pixels import PixelRules, statistics
from edgecxr.scope.verdict import Refusal


@dataclass
class Gate:
    intended_use: IntendedUse | None = None  # None: tag rules off
    pixel_rules: PixelRules | None = None
    learned: LearnedGate | None = None
    missing: list[str] = field(default_factory=list)  # stages this bundle does not record

    @classmethod
    def from_bundle(cls, bundle, intended_use=None) -> Gate:
        """`intended_use`: the bundle's own, with the CLI's overrides applied, or None for the bundle's."""
        record = bundle.manifest.get("gate") or {}
        use = intended_use if intended_use is not None else IntendedUse.from_manifest(bundle.manifest)
        pixels = PixelRules.from_manifest(record["pixels"]) if record.get("pixels") else None
        learned = LearnedGate.load(bundle.folder, record["learned"]) if record.get("learned") else None
        missing = [name for name, part in (("pixels", pixels), ("learned", learned)) if part is None]
        return cls(use, pixels, learned, missing)

    def screen(self):
        """A fresh tag screen for one DICOM file (it keeps that file's flags), or None."""
        if self.intended_use is None:
            return None
        from edgecxr.scope.tags import TagScreen

        return TagScreen(self.intended_use)

    def check_pixels(self, pixels: np.ndarray) -> Refusal | None:
        return None if self.pixel_rules is None else self.pixel_rules.check(statistics(pixels))

    def judge(self, features: np.ndarray | None, count: int) -> list[tuple[float | None, Refusal | None]]:
        """The learned stage for a batch: (score, refusal or None) per image; (None, None) for
        every image when this bundle has no learned stage or its engine returns no features."""
        if self.learned is None or features is None:
            return [(None, None)] * count
        return [(score, refusal) for score, refusal in self.learned.judge(features)]

    @property
    def threshold(self) -> float | None:
        return None if self.learned is None else self.learned.threshold

    def describe(self) -> str:
        stages = ["tags" if self.intended_use is not None else None,
                  "pixels" if self.pixel_rules is not None else None,
                  "learned" if self.learned is not None else None]
        on = [s for s in stages if s]
        text = f"intended-use gate: {', '.join(on) if on else 'off'}"
        if self.missing:
            text += f" (this bundle records no {' or '.join(self.missing)} stage: re-export it to add them)"
        return text
