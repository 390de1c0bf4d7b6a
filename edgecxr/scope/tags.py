"""The gate's first stage: the DICOM header says the image is not one the model was made for.

Runs on the attributes `edgecxr.core.data.dicom.screen_tags` reads (a plain dict keyed by DICOM
keyword, `SCREEN_KEYWORDS` there) right after the header is read and before any pixel is decoded, so a CT series or a
lateral view costs no decode. Rules, in the order a radiographer would name the problem:
modality, species, body part, view, photometric interpretation; then the patient's age
against the population (a flag on the result, or a refusal when the intended use says so).
A missing attribute never refuses (except Modality, type 1 in every image IOD); a malformed
value never raises: it is shown as written in the reason, or ignored where it cannot be read.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from edgecxr.core.defaults import MODALITY_SYNONYMS
from edgecxr.scope.intended_use import BODY_PART_SYNONYMS, MAX_AGE_YEARS, IntendedUse
from edgecxr.scope.verdict import Flag, GateRefused, Refusal, TagVerdict

STAGE = "tags"
AGE_OUTSIDE = "age_outside_population"
# PS3.3 C.7.3.1.1.1 defined terms, in words a radiographer uses
MODALITY_WORDS = {
    "CT": "a CT scan", "MR": "an MRI image", "US": "an ultrasound image", "NM": "a nuclear medicine image",
    "PT": "a PET scan", "MG": "a mammogram", "XA": "an X-ray angiography image", "RF": "a fluoroscopy image",
    "IO": "an intra-oral dental X-ray", "PX": "a panoramic dental X-ray", "DX": "a digital radiograph",
    "CR": "a computed radiography image", "RG": "a film radiograph", "BMD": "a bone density scan",
    "OT": "an image of another kind (Modality OT)", "XC": "a photograph", "ES": "an endoscopy image",
    "OP": "an eye photograph", "SM": "a microscope slide image", "GM": "a microscope image",
    "SR": "a report, not an image", "SEG": "a segmentation, not an image", "KO": "a key-image note, not an image",
    "PR": "a display setting (presentation state), not an image", "ECG": "an ECG trace, not an image",
    "RTPLAN": "a radiotherapy plan, not an image", "RTDOSE": "a radiotherapy dose map",
    "RTSTRUCT": "a radiotherapy structure set, not an image", "RTIMAGE": "a radiotherapy portal image",
    "DOC": "a scanned document", "OCT": "an optical coherence tomography image", "IVUS": "an intravascular ultrasound",
}
RADIOGRAPHS = frozenset({"CR", "DX", "DR", "RG"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLAT", "RLAT", "L LAT", "R LAT", "LEFT LATERAL",
                           "RIGHT LATERAL"})
DECUBITUS_VIEWS = frozenset({"LLD", "RLD", "DECUBITUS"})
OBLIQUE_VIEWS = frozenset({"LLO", "RLO", "LAO", "RAO", "LPO", "RPO", "OBLIQUE", "OBL"})
GREYSCALE = ("MONOCHROME1", "MONOCHROME2")
# Homo sapiens: SNOMED CT 337915000, SNOMED RT L-85B00
HUMAN_SPECIES_CODES = frozenset({("337915000", "SCT"), ("L-85B00", "SRT"), ("L-85B00", "SNM3")})
HUMAN_SPECIES_WORDS = frozenset({"HUMAN", "HOMO SAPIENS", "HOMO SAPIENS SAPIENS", "MAN", "PERSON"})
_AGE = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*(?:([DWMY])(?:AYS?|EEKS?|KS?|ONTHS?|OS?|EARS?|RS?)?)?\.?", re.IGNORECASE)
_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}
_UNIT_WORDS = {"D": "day", "W": "week", "M": "month", "Y": "year"}

Rule = Callable[[dict, IntendedUse], Refusal | None]


def check_tags(tags: dict, use: IntendedUse) -> TagVerdict:
    """The tags stage's verdict on one header. Never raises on what a header holds."""
    for rule in (_modality, _species, _body_part, _view, _photometric):
        refusal = rule(tags, use)
        if refusal is not None:
            return TagVerdict(refusal=refusal)
    if not _age_outside(tags, use):
        return TagVerdict()
    # the reason names the population, never the age itself: it goes into results.jsonl and the log,
    # where patient data must not (the PACS viewer shows the age from the header)
    outside = f"the patient's age is outside the population the model was made for ({use.describe_population()})"
    if use.refuse_age_outside:
        return TagVerdict(refusal=Refusal(STAGE, AGE_OUTSIDE, f"{outside}: not analysed"))
    return TagVerdict(flags=[Flag(AGE_OUTSIDE, f"{outside}: read this result with care")])


class TagScreen:
    """The callable `decode_bytes(..., screen=...)` runs on each DICOM header before decoding pixels.

    Raises `GateRefused` with the refusal; keeps the flags of the last header it saw in
    `flags` (empty for PNG/JPEG, which it never sees: use one screen per file, or `reset()`).
    """

    def __init__(self, use: IntendedUse):
        self.use = use
        self.flags: list[Flag] = []
        self.seen = False

    def reset(self) -> None:
        self.flags, self.seen = [], False

    def __call__(self, tags: dict) -> None:
        verdict = check_tags(tags, self.use)
        self.flags, self.seen = list(verdict.flags), True
        if verdict.refusal is not None:
            raise GateRefused(verdict.refusal)


def modality_in_words(modality: str) -> str:
    """'CT' -> 'a CT scan'; an unknown code is named as written."""
    code = _text(modality).upper()
    return MODALITY_WORDS.get(code, f"an image of modality {code}") if code else "an image of no stated modality"


def parse_age(value) -> tuple[float, str] | None:
    """A DICOM age string (AS: '058Y', '003M', '010W', '021D') as (years, words), or None when it cannot
    be read. Tolerates what modalities write instead: '58' (years), '58y', ' 58 Y', '5.5Y', '58 years'."""
    text = _text(value)
    match = _AGE.fullmatch(text) if text else None
    if not match:
        return None
    number, unit = float(match.group(1)), (match.group(2) or "Y").upper()
    years = number * _UNIT_YEARS[unit]
    if years > MAX_AGE_YEARS:
        return None
    shown = int(number) if number.is_integer() else number
    return years, f"{shown} {_UNIT_WORDS[unit]}{'' if shown == 1 else 's'}"


# -- the rules ---------------------------------------------------------------------------------
def _modality(tags: dict, use: IntendedUse) -> Refusal | None:
    code = _text(tags.get("Modality")).upper()
    if MODALITY_SYNONYMS.get(code, code) in use.modalities or code in use.modalities:
        return None
    if not code:
        return Refusal(STAGE, "modality_missing", "the DICOM header does not say what kind of image this is "
                       "(no Modality): not analysed")
    accepted = f"the model reads {'/'.join(use.modalities)} radiographs only"
    if code in RADIOGRAPHS:  # an X-ray all the same: say which kind is read, not "not a radiograph"
        return Refusal(STAGE, "modality", f"this is {modality_in_words(code)} (Modality {code}): {accepted}")
    return Refusal(STAGE, "modality", f"not a chest radiograph: this is {modality_in_words(code)} "
                   f"(Modality {code}); {accepted}")


def _species(tags: dict, use: IntendedUse) -> Refusal | None:
    animal = _animal(tags)
    if animal is None:
        return None
    return Refusal(STAGE, "species", f"not a human patient: {animal}; the model reads human chest "
                   "radiographs only")


def _animal(tags: dict) -> str | None:
    """Why the header says the patient is an animal, or None (no species stated, or human)."""
    species = _text(tags.get("PatientSpeciesDescription"))
    if species and species.upper() not in HUMAN_SPECIES_WORDS:
        return f"the species is {species}"
    for item in _items(tags.get("PatientSpeciesCodeSequence")):
        code = (_text(item.get("CodeValue")), _text(item.get("CodingSchemeDesignator")).upper())
        if code[0] and code not in HUMAN_SPECIES_CODES:
            return f"the species is {_text(item.get('CodeMeaning')) or code[0]}"
    breed = _text(tags.get("PatientBreedDescription"))
    if breed:
        return f"the breed is {breed}"
    if _items(tags.get("PatientBreedCodeSequence")):
        return "the header names a breed"
    if _items(tags.get("BreedRegistrationSequence")):
        return "the header holds a breed registration"
    if _text(tags.get("ResponsiblePersonRole")).upper() == "OWNER":
        return "the header names the patient's owner"
    return None


def _body_part(tags: dict, use: IntendedUse) -> Refusal | None:
    part = _text(tags.get("BodyPartExamined")).upper()
    if not part or part in use.body_parts or BODY_PART_SYNONYMS.get(part) in use.body_parts:
        return None
    return Refusal(STAGE, "body_part", f"not a chest radiograph: the body part is {part} "
                   f"(BodyPartExamined); the model reads {'/'.join(use.body_parts)} radiographs only")


def _view(tags: dict, use: IntendedUse) -> Refusal | None:
    view = " ".join(_text(tags.get("ViewPosition")).upper().split())
    if not view or view in use.views:
        return None
    frontal = "/".join(use.views)
    if view in LATERAL_VIEWS or "LAT" in view:
        what, code = "a lateral view", "view_lateral"
    elif view in DECUBITUS_VIEWS or "DECUB" in view:
        what, code = "a decubitus view", "view_decubitus"
    elif view in OBLIQUE_VIEWS or "OBL" in view:
        what, code = "an oblique view", "view_oblique"
    else:
        what, code = "not a frontal view", "view_not_frontal"
    return Refusal(STAGE, code, f"{what} (ViewPosition {view}): the model reads {frontal} chest radiographs only")


def _photometric(tags: dict, use: IntendedUse) -> Refusal | None:
    photometric = _text(tags.get("PhotometricInterpretation")).upper()
    if not photometric or photometric in GREYSCALE:
        samples = _text(tags.get("SamplesPerPixel"))
        if samples in ("", "1") or photometric:
            return None
        photometric = f"{samples} samples per pixel"
    return Refusal(STAGE, "colour", f"a colour image, not a radiograph (PhotometricInterpretation {photometric})")


def _age_outside(tags: dict, use: IntendedUse) -> bool:
    """Whether the header states an age outside the population (not when no population is set, no
    age is given, or the age cannot be read)."""
    if use.age_years is None:
        return False
    age = parse_age(tags.get("PatientAge"))
    return age is not None and not use.age_inside(age[0])


def _text(value) -> str:
    """A header value as stripped text; '' for None, empty or what cannot be shown."""
    if value is None:
        return ""
    try:
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        elif not isinstance(value, str) and hasattr(value, "__len__") and hasattr(value, "__getitem__"):
            value = value[0] if len(value) else ""  # a multi-valued element: its first value
        return str(value).strip().strip("\x00").strip()
    except Exception:  # a hostile value's __str__ must not stop the gate
        return ""


def _items(value) -> list[dict]:
    """A sequence as a list of dicts (screen_tags gives dicts; tests may give datasets)."""
    if not value:
        return []
    try:
        return [dict(item) if isinstance(item, dict) else
                {k: getattr(item, k, None) for k in ("CodeValue", "CodingSchemeDesignator", "CodeMeaning")}
                for item in value]
    except Exception:  # a malformed sequence counts as present but unreadable
        return [{}]
