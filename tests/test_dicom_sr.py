"""The SR and SC a PACS receives: valid DICOM (dciodvfy), filed with the source's patient and study,
referencing the source instance, coding the finding the decision rule produced."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgecxr.core.errors import EdgecxrError
from edgecxr.dicomnet.destination import parse_destination
from edgecxr.dicomnet.finding import finding_from_record
from edgecxr.dicomnet.sc import build_sc
from edgecxr.dicomnet.sr import Algorithm, build_sr, sr_uid
from tests.tools import require_module, require_tool

SAMPLES = Path(__file__).parents[1] / "edgecxr" / "samples" / "chest-xrays"
SOURCES = sorted(SAMPLES.glob("*.dcm"))
MANIFEST = json.loads((Path(__file__).parents[1] / "edgecxr" / "models" / "reference" / "bundle.json").read_text())
pydicom = require_module("pydicom")
hd = require_module("highdicom")


def record(label: str, p: float, **extra) -> dict:
    return {"status": "ok", "label": label, "probabilities": {"NORMAL": round(1 - p, 6), "PNEUMONIA": p},
            "bundle": "reference-micro-128", "bundle_checksum": MANIFEST["checksum"], "backend": "onnxruntime",
            "precision": "int8", **extra}


def text_values(ds) -> set[str]:
    """Every TEXT content item's value, anywhere in the SR tree."""
    found = set()
    for item in ds.get("ContentSequence", []):
        if "TextValue" in item:
            found.add(str(item.TextValue))
        found |= text_values(item)
    return found


def dciodvfy_errors(path: Path) -> list[str]:
    result = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("source_path", SOURCES, ids=lambda p: p.name)
def test_sr_is_valid_and_filed_with_its_source(source_path, tmp_path):
    source = pydicom.dcmread(source_path, stop_before_pixels=True)
    rec = record("PNEUMONIA", 0.87)
    sr = build_sr(source, finding_from_record(rec, MANIFEST), Algorithm.from_record(rec))
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []

    back = hd.sr.srread(path)
    assert isinstance(back, hd.sr.ComprehensiveSR)
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "AccessionNumber"):
        assert back.get(keyword) == source.get(keyword), keyword
    assert back.SeriesInstanceUID != source.SeriesInstanceUID  # a series of its own, in the source's study
    evidence = back.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    group = back.content.get_image_measurement_groups()[0]
    assert group.source_images[0].referenced_sop_instance_uid == source.SOPInstanceUID
    (evaluation,) = group.get_qualitative_evaluations()
    assert (evaluation.name.value, evaluation.name.scheme_designator) == ("233604007", "SCT")
    assert evaluation.value.meaning == "Present"
    (probability,) = group.get_measurements()
    assert probability.value == pytest.approx(0.87)
    texts = text_values(back)
    assert f"bundle sha256 {MANIFEST['checksum']}" in texts and "edgecxr reference-micro-128" in texts


def test_sr_uid_is_derived_from_source_and_bundle():
    source = pydicom.dcmread(SOURCES[0], stop_before_pixels=True)
    rec = record("NORMAL", 0.1)
    one = build_sr(source, finding_from_record(rec, MANIFEST), Algorithm.from_record(rec))
    two = build_sr(source, finding_from_record(rec, MANIFEST), Algorithm.from_record(rec))
    assert one.SOPInstanceUID == two.SOPInstanceUID == sr_uid(source.SOPInstanceUID, MANIFEST["checksum"])
    assert one.SeriesInstanceUID == two.SeriesInstanceUID
    assert sr_uid(source.SOPInstanceUID, "another-bundle") != one.SOPInstanceUID
    assert len(one.SOPInstanceUID) <= 64 and one.SOPInstanceUID.startswith("2.25.")


@pytest.mark.parametrize(("label", "p", "meaning"), [("PNEUMONIA", 0.9, "Present"), ("NORMAL", 0.2, "Absent"),
                                                      ("UNCERTAIN", 0.52, "Indeterminate")])
def test_decision_rule_fields_become_the_coded_finding(label, p, meaning, tmp_path):
    """The record of the decision rule (positive_class, p_positive, decision) is what the SR says."""
    rec = record(label, 0.0, positive_class="PNEUMONIA", p_positive=p,
                 decision="P(PNEUMONIA) ≥ 0.500; uncertain if 0.40 ≤ P(PNEUMONIA) < 0.60")
    source = pydicom.dcmread(SOURCES[0], stop_before_pixels=True)
    sr = build_sr(source, finding_from_record(rec, MANIFEST), Algorithm.from_record(rec))
    group = hd.sr.ComprehensiveSR.from_dataset(sr).content.get_image_measurement_groups()[0]
    assert group.get_qualitative_evaluations()[0].value.meaning == meaning
    assert group.get_measurements()[0].value == pytest.approx(p)  # p_positive, not the probabilities map
    assert "decision rule: P(PNEUMONIA) >= 0.500; uncertain if 0.40 <= P(PNEUMONIA) < 0.60" in text_values(sr)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []  # the rule's text is plain ASCII: valid in any character set


def test_a_results_flags_are_text_in_the_measurement_group(tmp_path):
    """A result flagged by the gate (patient age outside the trained population) says so in the SR, in words,
    inside the group that holds the finding; a result without flags has no such item."""
    reason = ("patient age 58 years is outside the population the model was made for (children aged 1–5 "
              "(Kermany paediatric set)): read this result with care")
    rec = record("PNEUMONIA", 0.87, flags=[{"code": "age_outside_population", "reason": reason}])
    source = pydicom.dcmread(SOURCES[0], stop_before_pixels=True)
    sr = build_sr(source, finding_from_record(rec, MANIFEST), Algorithm.from_record(rec))
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    group = hd.sr.srread(path).content.get_image_measurement_groups()[0]
    comments = [item for item in group[0].ContentSequence if item.ValueType == "TEXT"
                and item.ConceptNameCodeSequence[0].CodeValue == "121106"]
    assert [(c.RelationshipType, c.TextValue) for c in comments] == [("CONTAINS", reason.replace("–", "-"))]
    assert group.get_qualitative_evaluations()[0].value.meaning == "Present"  # the finding is still read as before
    plain = build_sr(source, finding_from_record(record("PNEUMONIA", 0.87), MANIFEST), Algorithm.from_record(rec))
    assert not any("outside the population" in t for t in text_values(plain))


def test_sc_has_the_result_burned_in_and_is_valid(tmp_path):
    from edgecxr.core.data.dicom import decode_dicom

    path = next(p for p in SOURCES if "monochrome1" in p.name)
    source = pydicom.dcmread(path)
    pixels = decode_dicom(path.read_bytes(), str(path), max_pixels=10**8).pixels
    rec = record("PNEUMONIA", 0.8)
    sc = build_sc(source, pixels, finding_from_record(rec, MANIFEST), Algorithm.from_record(rec))
    out = tmp_path / "sc.dcm"
    sc.save_as(out, enforce_file_format=True)
    assert dciodvfy_errors(out) == []
    back = pydicom.dcmread(out)
    assert (back.StudyInstanceUID, back.PatientID) == (source.StudyInstanceUID, source.PatientID)
    assert back.BurnedInAnnotation == "YES" and back.SOPInstanceUID != source.SOPInstanceUID
    image = back.pixel_array
    band = image[: image.shape[0] - round(pixels.shape[0] * image.shape[1] / pixels.shape[1])]
    assert band.shape[0] > 20 and (band > 128).mean() > 0.01  # white text on the black band
    assert np.median(image[band.shape[0]:]) > 20  # the radiograph below, displayed (MONOCHROME1 inverted)


@pytest.mark.parametrize("text", ["PACS@host", "host:104", "@host:104", "PACS@:104", "PACS@host:0",
                                  "PACS@host:x", "WAY-TOO-LONG-AE-TITLE@host:104", "A\\B@host:104"])
def test_bad_destinations_are_refused_with_the_form_to_use(text):
    with pytest.raises(EdgecxrError, match="AET@HOST:PORT"):
        parse_destination(text)


def test_destination_forms():
    assert str(parse_destination("PACS@10.0.0.5:104")) == "PACS@10.0.0.5:104"
    d = parse_destination("ARCHIVE@[::1]:11112")
    assert (d.ae_title, d.host, d.port, str(d)) == ("ARCHIVE", "::1", 11112, "ARCHIVE@[::1]:11112")
    assert "/" not in d.folder_name and ":" not in d.folder_name


def scanner_file(source: Path, folder: Path, *, charset: str | None = None, name: str = "Müller^Jürgen") -> Path:
    """A sample header as real scanners write it: Patient's Age "58" (AS needs "058Y"), the name in
    UTF-8, and a Specific Character Set declared only when `charset` is given."""
    from pydicom.dataelem import DataElement

    ds = pydicom.dcmread(source)
    ds[0x00101010] = DataElement(0x00101010, "AS", b"58")
    ds[0x00100010] = DataElement(0x00100010, "PN", name.encode("utf-8"))
    ds[0x00081030] = DataElement(0x00081030, "LO", "Thorax pa/lat, Übersicht".encode())  # StudyDescription
    if charset:
        ds.SpecificCharacterSet = charset
    elif "SpecificCharacterSet" in ds:
        del ds.SpecificCharacterSet
    path = folder / f"scanner-{source.name}"
    ds.save_as(path)
    return path


@pytest.mark.parametrize("source_path", SOURCES, ids=lambda p: p.name)
def test_invalid_scanner_values_are_left_out_or_emptied_and_the_sr_is_valid(source_path, tmp_path):
    source = pydicom.dcmread(scanner_file(source_path, tmp_path), stop_before_pixels=True)
    rec = record("NORMAL", 0.1)
    logs: list[str] = []
    sr = build_sr(source, finding_from_record(rec, MANIFEST), Algorithm.from_record(rec), log=logs.append)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    back = pydicom.dcmread(path)
    assert "PatientAge" not in back and "StudyDescription" not in back  # optional: left out
    assert "PatientName" in back and not back.PatientName  # Type 2: present, empty
    assert back.PatientID == source.PatientID and back.StudyInstanceUID == source.StudyInstanceUID
    said = "\n".join(logs)
    assert all(k in said for k in ("PatientAge", "PatientName", "StudyDescription")), said
    assert "58" not in said and "Müller" not in said and "bersicht" not in said  # keywords, never values
    assert source.PatientName.original_string == "Müller^Jürgen".encode()  # the caller's header is untouched


def test_a_declared_character_set_keeps_the_name_and_the_sc_carries_it(tmp_path):
    source = pydicom.dcmread(scanner_file(SOURCES[0], tmp_path, charset="ISO_IR 192"))
    rec = record("PNEUMONIA", 0.9)
    finding, algorithm = finding_from_record(rec, MANIFEST), Algorithm.from_record(rec)
    for built in (build_sr(source, finding, algorithm), build_sc(source, np.linspace(0, 1, 64 * 64).reshape(64, 64),
                                                                  finding, algorithm)):
        path = tmp_path / f"{built.Modality}.dcm"
        built.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == [], built.Modality
        back = pydicom.dcmread(path)
        assert back.SpecificCharacterSet == "ISO_IR 192", built.Modality
        assert str(back.PatientName) == "Müller^Jürgen" and back.StudyDescription == "Thorax pa/lat, Übersicht"
        assert "PatientAge" not in back


def test_the_sc_of_a_file_without_character_set_is_valid(tmp_path):
    source = pydicom.dcmread(scanner_file(SOURCES[0], tmp_path))
    rec = record("PNEUMONIA", 0.9)
    sc = build_sc(source, np.linspace(0, 1, 64 * 64).reshape(64, 64), finding_from_record(rec, MANIFEST),
                  Algorithm.from_record(rec))
    path = tmp_path / "sc.dcm"
    sc.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    assert not pydicom.dcmread(path).PatientName and "PatientAge" not in pydicom.dcmread(path)
