"""The source's patient and study attributes, checked before highdicom copies them into an SR or SC.

highdicom copies the Patient and Study modules of the source's IOD (copy_patient_and_study_information);
a scanner's header may carry values that are invalid there: a Patient's Age of "58" (AS needs
"058Y"), a name in UTF-8 with no Specific Character Set. A strict PACS rejects such an object and
dciodvfy reports it. So every such attribute is checked first, against its VR (pydicom's own
validation, plus calendar dates for DA) and against the character set the source declares (none:
the default repertoire, ASCII): an invalid optional value is left out, and a required (Type 2)
one is sent empty. Each is logged by its keyword only: the value may be patient data.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable

# Type 2 in the Patient and General Study modules: present, possibly empty, in what is sent
TYPE2 = frozenset(("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                   "StudyDate", "StudyTime", "ReferringPhysicianName"))
TEXT_VRS = frozenset(("SH", "LO", "ST", "LT", "UT", "UC", "PN"))
NEVER_CHANGED = frozenset(("StudyInstanceUID", "SpecificCharacterSet"))  # an invalid UID: the build refuses it


def patient_study_keywords(source) -> set[str]:
    """Root attributes of the Patient and Study modules of the source's IOD, as highdicom copies them."""
    # the tables highdicom's copy_patient_and_study_information reads (private, so imported defensively)
    try:
        from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map, get_sop_class_iod_map
    except ImportError:
        return set()  # another highdicom: the Type 2 and extra attributes are still checked
    iod = get_sop_class_iod_map().get(str(source.get("SOPClassUID", "")))
    modules = [m["key"] for m in get_iod_module_map().get(iod, []) if m["ie"] in ("Patient", "Study")] if iod else []
    attributes = get_module_attribute_map()
    return {str(a["keyword"]) for m in modules for a in attributes.get(m, []) if not a["path"]}


def checked_header(source, extra: Iterable[str] = (), log: Callable[[str], None] | None = None):
    """A copy of `source` (without pixel data) whose patient and study attributes are all valid."""
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

    header = Dataset()
    header.update({tag: elem for tag, elem in source.items() if tag != 0x7FE00010})  # no pixel data
    if getattr(source, "file_meta", None) is not None:
        header.file_meta = source.file_meta
    charsets = _charsets(header)
    for keyword in sorted((patient_study_keywords(source) | set(extra) | TYPE2) - NEVER_CHANGED):
        if keyword not in header:
            continue
        problem = _problem(header[keyword], charsets)
        if problem is None:
            continue
        if keyword in TYPE2:  # a new element: the source's own stays as it was
            header[keyword] = DataElement(header[keyword].tag, header[keyword].VR, None)
            action = "sent empty"
        else:
            del header[keyword]
            action = "left out"
        if log is not None:
            log(f"{keyword} in the source header is {problem}: {action} in the SR/SC for PACS")
    return header


def _charsets(header) -> list[str] | None:
    """Python codecs of the declared Specific Character Set; None: the default repertoire (ASCII)."""
    from pydicom.charset import convert_encodings

    declared = header.get("SpecificCharacterSet")
    if not declared:
        return None
    terms = [declared] if isinstance(declared, str) else list(declared)
    try:
        return convert_encodings([t or "ISO_IR 6" for t in terms])
    except (LookupError, ValueError):
        return None


def _problem(elem, charsets: list[str] | None) -> str | None:
    """Why this element's value may not be sent (in words, without the value), or None."""
    from pydicom import config
    from pydicom.valuerep import validate_value

    if elem.VR == "SQ" or elem.value is None or elem.value == "":
        return None
    values = list(elem.value) if elem.VM > 1 else [elem.value]
    for value in values:
        if isinstance(value, bytes):
            return "not decodable in its character set"
        try:
            validate_value(elem.VR, value, config.RAISE)
        except (ValueError, TypeError):
            return f"not a valid {elem.VR} value"
        if elem.VR == "DA" and not _is_date(str(value)):
            return "not a calendar date"
        if elem.VR in TEXT_VRS and not _encodable(str(value), charsets):
            return "not in the character set the file declares"
    return None


def _is_date(text: str) -> bool:
    try:
        datetime.datetime.strptime(text.strip(), "%Y%m%d")
        return True
    except ValueError:
        return False


def _encodable(text: str, charsets: list[str] | None) -> bool:
    if "\ufffd" in text:  # pydicom's replacement for bytes the character set could not decode
        return False
    if charsets is None:
        return text.isascii()
    for codec in charsets:
        try:
            text.encode(codec)
            return True
        except (UnicodeEncodeError, LookupError):
            continue
    return False
