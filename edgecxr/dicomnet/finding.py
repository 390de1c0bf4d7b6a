"""What an SR or a banner says about one result: the finding, its probability and the rule behind it.

Result lines carry `positive_class`, `p_positive`, `decision` and a label that may be
UNCERTAIN (the bundle's decision rule); lines written before the rule existed carry only the
probabilities and the label: core.results reads both shapes for the SR and the page alike
(the positive class and the rule's wording), this module turns them into words. A line may carry
`flags` (for example the patient's age outside the population the model was trained on): their
reasons travel with the finding, in words, into the SR.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecxr.core.results import UNCERTAIN, bundle_rule_text, p_positive

PRESENT, ABSENT, INDETERMINATE = "present", "absent", "indeterminate"


@dataclass(frozen=True)
class Finding:
    positive_class: str
    p_positive: float
    label: str
    decision: str
    operating_point: str | None = None
    flags: tuple[str, ...] = ()  # what the reader must know (plain ASCII reasons), e.g. an age outside the population

    @property
    def state(self) -> str:
        if self.label == UNCERTAIN:
            return INDETERMINATE
        return PRESENT if self.label == self.positive_class else ABSENT

    def headline(self) -> str:
        """One line a radiologist reads first, e.g. 'PNEUMONIA  P(PNEUMONIA) = 0.931'."""
        return f"{self.label}  P({self.positive_class}) = {self.p_positive:.3f}"


def plain(text: str) -> str:
    """ASCII for DICOM text in the default repertoire (the source's character set may lack ≥) and for
    the banner font: the rule's ≥ and ≤ become >= and <=, a population's dashes (1–5) hyphens."""
    text = text.replace("≥", ">=").replace("≤", "<=").replace("–", "-").replace("—", "-")
    return text.encode("ascii", "replace").decode()


def finding_from_record(record: dict, manifest: dict) -> Finding:
    """`record` is an ok result line; `manifest` the bundle's, for lines without the rule's fields."""
    positive, p = p_positive(record, manifest.get("class_names") or ())
    if positive is None or p is None:
        raise ValueError(f"the result line has no probability of its positive class {positive!r}")
    rule = record.get("decision") or bundle_rule_text(manifest)
    point = _operating_point(manifest.get("decision") or {})
    return Finding(positive, p, str(record["label"]), plain(rule), plain(point) if point else None,
                   flags=_flag_reasons(record.get("flags")))


def _flag_reasons(flags) -> tuple[str, ...]:
    """The reasons of a result line's flags, as written by the gate; anything else in the list is skipped."""
    if not isinstance(flags, list):
        return ()
    return tuple(plain(str(f["reason"])) for f in flags if isinstance(f, dict) and f.get("reason"))


def _operating_point(decision: dict) -> str | None:
    point = decision.get("operating_point")
    if not point:
        return None
    if isinstance(point, dict):
        return ", ".join(f"{k}={v}" for k, v in point.items())
    return str(point)
