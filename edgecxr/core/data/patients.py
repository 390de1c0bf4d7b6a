"""Patient groups for carving validation: images of one patient never sit on both sides.

Kermany et al. name files after the patient, so a random image-level split puts a
patient's other radiographs in validation and selects checkpoints on near-duplicates.
The rule below was read off the 5,216 real training names:

- `person<N>_bacteria_<K>.jpeg`, `person<N>_virus_<K>.jpeg` (and one `..._<K>_1.jpeg`):
  the patient is `person<N>`. 808 person numbers appear under both `bacteria` and
  `virus`; nothing says they are different people, so they share one group (grouping
  too coarsely costs only stratification precision, too finely leaks).
- `IM-<P>-<S>[-<R>].jpeg` and `NORMAL2-IM-<P>-<S>[-<R>].jpeg`: the patient is `IM-<P>` or
  `NORMAL2-IM-<P>`. Both series number from low values up, so `NORMAL2-` is a separate
  numbering, not the same patient; the image counters after `<P>` vary per patient.
- Any other name is its own group (an image-level split for that file), and is counted.

The same names carry the series an image came from (`source_of`): `bacteria` and `virus`
(pneumonia), `IM` and `NORMAL2-IM` (normal). `compare-runs` gives error rates per series,
which is where the official test split's shift shows (its normal patients are numbered
below every training patient of the same series).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

RULE_NAME = "kermany-patient/1"
PATTERNS = (
    re.compile(r"^(person\d+)_(?:bacteria|virus)_"),
    re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+"),
)
NUMBER = re.compile(r"(\d+)$")
SOURCE = re.compile(r"^(?:person\d+_(bacteria|virus)_|(NORMAL2-IM|IM)-\d+)")
RULE_TEXT = ("patient id from the file name: person<N>_{bacteria,virus}_* -> person<N>; "
             "[NORMAL2-]IM-<P>-* -> [NORMAL2-]IM-<P>; any other name is its own group")


def patient_id(rel: str) -> str | None:
    """The patient a file belongs to by its name, or None when the name carries none."""
    name = rel.rsplit("/", 1)[-1]
    for pattern in PATTERNS:
        match = pattern.match(name)
        if match:
            return match.group(1)
    return None


def patient_number(rel: str) -> int | None:
    """The patient's number (`person<N>` -> N, `[NORMAL2-]IM-<P>` -> P), or None.
    Kermany's numbers follow the order patients were collected in; the official test split holds
    whole blocks of them (e.g. its NORMAL2-IM patients are 7-381, training's 383-1423)."""
    numbered = numbering_of(rel)
    return None if numbered is None else numbered[1]


def numbering_of(rel: str) -> tuple[str, int] | None:
    """(numbering, number): `person` for both pneumonia series (one patient, one number, as the
    grouping rule has it), `IM-` and `NORMAL2-IM-` (separate numberings); None without a number."""
    pid = patient_id(rel) or ""
    match = NUMBER.search(pid)
    return None if match is None else (pid[:match.start()], int(match.group(1)))


def source_of(rel: str) -> str | None:
    """The file-name series an image belongs to (`bacteria`, `virus`, `IM`, `NORMAL2-IM`), or None."""
    match = SOURCE.match(rel.rsplit("/", 1)[-1])
    return None if match is None else match.group(1) or match.group(2)


def group_of(rel: str) -> str:
    """The carving group: the patient id, else the file's own relative path."""
    return patient_id(rel) or f"file:{rel}"


def describe(rels: Iterable[str]) -> dict:
    """What run.json records about the rule and how it applied to these files."""
    rels = list(rels)
    ids = [patient_id(r) for r in rels]
    return {"rule": RULE_NAME, "description": RULE_TEXT,
            "patients": len({i for i in ids if i is not None}),
            "files_without_patient_id": sum(i is None for i in ids)}
