"""A result as a DICOM Comprehensive SR (TID 1500 measurement report), filed with the image it describes.

The SR joins the source's study as a new series: patient and study attributes are copied
from the source header, and the source SOP instance is referenced both as evidence and as
the measurement group's source image, so a PACS shows it beside the radiograph. The
finding is coded in SNOMED CT (Pneumonia: Present / Absent / Indeterminate for UNCERTAIN),
the probability is a TID 300 measurement, and the algorithm (TID 4019) carries the bundle
name, edgecxr's version, the bundle checksum, the engine and the decision rule. A result's flags
(for example "the patient's age is outside the population the model was made for") are TEXT
content items (DCM 121106 "Comment") in the measurement group, beside the coded finding, as
highdicom's maintainers suggest for free text in TID 1501.
UIDs are derived from the source SOP Instance UID and the bundle checksum, so sending the
same result twice replaces nothing and duplicates nothing in the PACS.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from edgecxr import __version__
from edgecxr.core.optional import require
from edgecxr.dicomnet.copying import checked_header
from edgecxr.dicomnet.finding import ABSENT, INDETERMINATE, PRESENT, Finding

MANUFACTURER = "edgecxr"
SERIES_DESCRIPTION = "edgecxr AI result - not for diagnostic use"
SR_SERIES_NUMBER = 9901
MAX_TEXT = 1024  # a flag's reason is a sentence; UT would allow more, a viewer shows less
TYPE2_READ = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
              "StudyDate", "StudyTime", "ReferringPhysicianName")
# patient and study attributes a PACS files by, beyond those highdicom copies itself
EXTRA_COPIED = ("IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "OtherPatientIDsSequence",
                "PatientAge", "StudyDescription", "IssuerOfAccessionNumberSequence")


@dataclass(frozen=True)
class Algorithm:
    """What produced the result: the bundle, its checksum and the engine that ran it."""

    bundle: str
    checksum: str
    engine: str

    @classmethod
    def from_record(cls, record: dict) -> Algorithm:
        return cls(record.get("bundle", "unknown"), record.get("bundle_checksum", ""),
                   f"{record.get('backend', '?')}/{record.get('precision', '?')}")


def derived_uid(*parts: str) -> str:
    """A 2.25 UID from a name-based UUID (PS3.5 B.2): the same parts give the same UID, every time."""
    import uuid

    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, '|'.join(('edgecxr', *parts))).int}"


def sr_uid(source_sop_uid: str, checksum: str) -> str:
    return derived_uid("SR", source_sop_uid, checksum)


def build_sr(source, finding: Finding, algorithm: Algorithm, log: Callable[[str], None] | None = None):
    """`source` is the input's header (pydicom Dataset, pixel data not needed). Its patient and study
    attributes are checked (copying.checked_header) before highdicom copies them; `log` hears of any
    left out or emptied, by keyword."""
    hd = require("highdicom", "building DICOM SR results")
    from pydicom.sr.codedict import codes

    source = checked_header(source, EXTRA_COPIED, log)

    codes_ = _codes(hd, finding.positive_class)
    algorithm_id = hd.sr.AlgorithmIdentification(
        name=f"edgecxr {algorithm.bundle}", version=__version__, manufacturer=MANUFACTURER,
        parameters=[f"bundle sha256 {algorithm.checksum}", f"engine {algorithm.engine}",
                    f"decision rule: {finding.decision}",
                    *([f"operating point: {finding.operating_point}"] if finding.operating_point else [])])
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("device", socket.gethostname()), name=f"edgecxr on {socket.gethostname()}"[:64],
            manufacturer_name=MANUFACTURER, model_name=algorithm.bundle[:64]))
    sop_uid = sr_uid(str(source.SOPInstanceUID), algorithm.checksum)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier=f"{finding.positive_class} classification",
                                                     uid=derived_uid("tracking", sop_uid)),
        finding_type=codes_["finding"], algorithm_id=algorithm_id,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
        measurements=[hd.sr.Measurement(name=codes.DCM.Probability, value=round(finding.p_positive, 6),
                                        unit=codes.UCUM.NoUnits, algorithm_id=algorithm_id)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=codes_["finding"],
                                                             value=codes_[finding.state])],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)])
    for reason in finding.flags:  # in the group, so a viewer shows it with the finding it qualifies
        group[0].ContentSequence.append(hd.sr.TextContentItem(
            name=codes.DCM.Comment, value=reason[:MAX_TEXT], relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.ChestImaging, imaging_measurements=[group],
        title=codes.DCM.ImagingMeasurementReport)
    source = with_type2_patient_study(source)
    extra = {"specific_character_set": source.SpecificCharacterSet} if "SpecificCharacterSet" in source else {}
    sr = hd.sr.ComprehensiveSR(
        evidence=[source], content=report,
        series_instance_uid=derived_uid("SR series", str(source.StudyInstanceUID), algorithm.checksum),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=sop_uid,
        instance_number=int(source.get("InstanceNumber") or 1), manufacturer=MANUFACTURER,
        is_complete=True, is_final=False, is_verified=False, series_description=SERIES_DESCRIPTION,
        manufacturer_model_name=algorithm.bundle[:64], software_versions=f"edgecxr {__version__}", **extra)
    copy_patient_and_study(source, sr)
    return sr


def with_type2_patient_study(source):
    """A copy with every patient/study attribute highdicom reads present (empty where the source has none):
    real headers often omit Type 2 attributes such as PatientSex or StudyID."""
    from copy import deepcopy

    header = deepcopy(source)
    for keyword in TYPE2_READ:
        if keyword not in header:
            setattr(header, keyword, None)
    return header


def copy_patient_and_study(source, target) -> None:
    for keyword in EXTRA_COPIED:
        if keyword in source and keyword not in target:
            target[keyword] = source[keyword]


def _codes(hd, positive_class: str) -> dict:
    """SNOMED CT for pneumonia; another bundle's positive class gets a private (99EDGECXR) code."""
    from pydicom.sr.codedict import codes

    finding = (hd.sr.CodedConcept("233604007", "SCT", "Pneumonia") if positive_class.upper() == "PNEUMONIA"
               else hd.sr.CodedConcept(positive_class.upper()[:16], "99EDGECXR", positive_class))
    return {
        "finding": finding,
        PRESENT: codes.SCT.Present, ABSENT: codes.SCT.Absent, INDETERMINATE: codes.SCT.Indeterminate,
    }
