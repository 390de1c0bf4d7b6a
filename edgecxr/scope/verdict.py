"""What a gate stage says about one image: refused (with its reason in words), or flagged."""

from __future__ import annotations

from dataclasses import dataclass, field

# A refused image's result line has status core.results.OUT_OF_SCOPE: the loop writes it, not the gate.
STAGES = ("tags", "pixels", "learned")


@dataclass(frozen=True)
class Refusal:
    """Why an image is not analysed. `reason` is for the imaging room: plain words, no jargon."""

    stage: str  # one of STAGES
    code: str  # stable machine-readable reason, e.g. "modality", "view_lateral", "blank", "unlike_training"
    reason: str  # e.g. "not a chest radiograph: the image is a CT"
    score: float | None = None
    threshold: float | None = None

    def to_record(self) -> dict:
        return {"stage": self.stage, "code": self.code, "reason": self.reason,
                "score": None if self.score is None else round(float(self.score), 6),
                "threshold": None if self.threshold is None else round(float(self.threshold), 6)}


@dataclass(frozen=True)
class Flag:
    """Something the reader of a result must know, which does not stop the analysis
    (for example a patient age outside the population the model was trained on)."""

    code: str  # e.g. "age_outside_population"
    reason: str  # plain words, e.g. "the patient's age is outside the population the model was made for (...)"

    def to_record(self) -> dict:
        return {"code": self.code, "reason": self.reason}


@dataclass
class TagVerdict:
    """The tags stage's answer for one DICOM header: a refusal, or flags (possibly none)."""

    refusal: Refusal | None = None
    flags: list[Flag] = field(default_factory=list)


class GateRefused(Exception):
    """Raised by a gate stage's screen (e.g. `scope.tags.TagScreen` inside `decode_bytes`) to stop
    reading a file the gate refuses; the caller turns `refusal` into an out-of-scope result line."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.reason)
        self.refusal = refusal
