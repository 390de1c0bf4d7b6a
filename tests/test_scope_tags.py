"""The gate's tags stage and the intended use it enforces, on real DICOM files: pydicom's own test
files (CT, MR, ultrasound, nuclear medicine, a CR chest PA) and radiographs written with pydicom."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.core.bundle import manifest_checksum
from edgecxr.core.data.decode import decode_bytes
from edgecxr.core.data.dicom import SCREEN_KEYWORDS, decode_dicom, screen_tags
from edgecxr.core.errors import DecodeError, EdgecxrError
from edgecxr.scope.intended_use import IntendedUse, parse_age_range, resolve
from edgecxr.scope.tags import TagScreen, check_tags, parse_age
from edgecxr.scope.verdict import GateRefused
from tests.dicom_write import write_dx_dicom
from tests.malformed import _edit, _raw
from tests.tools import require_module

pydicom = require_module("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

REPO = Path(__file__).parents[1]
SAMPLES = REPO / "edgecxr" / "samples" / "chest-xrays"
REFERENCE = REPO / "edgecxr" / "models" / "reference"
KERMANY = IntendedUse(age_years=(1, 5), population="children aged 1-5 (Kermany paediatric set)")
CR_CHEST_PA = Path(pydicom.data.__file__).parent / "charset_files" / "chrJapMulti.dcm"


def header(path) -> dict:
    return screen_tags(pydicom.dcmread(path, stop_before_pixels=True))


def refusal(path_or_tags, use: IntendedUse = KERMANY):
    tags = path_or_tags if isinstance(path_or_tags, dict) else header(path_or_tags)
    return check_tags(tags, use).refusal


@pytest.fixture(scope="module")
def old_bundle(tmp_path_factory) -> Path:
    """The reference bundle as exported before the gate: no `intended_use`, no `gate` in bundle.json."""
    copy = tmp_path_factory.mktemp("old") / "bundle"
    shutil.copytree(REFERENCE, copy)
    manifest = json.loads((copy / "bundle.json").read_text())
    for key in ("intended_use", "gate"):
        manifest.pop(key, None)
    manifest["checksum"] = manifest_checksum(manifest)
    (copy / "bundle.json").write_text(json.dumps(manifest))
    return copy


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    source = next(SAMPLES.glob("NORMAL-*.jpeg"))
    return np.asarray(Image.open(source).convert("L").resize((64, 64)), dtype=np.float64) / 255.0


@pytest.fixture
def dx(gray, tmp_path):
    """A DX radiograph written with pydicom, then edited: `dx(ViewPosition="LL")`."""
    def make(name: str = "dx.dcm", change=None, **attributes) -> Path:
        path = write_dx_dicom(gray, tmp_path / name)

        def edit(ds):
            for keyword, value in attributes.items():
                setattr(ds, keyword, value)
            if change is not None:
                change(ds)
        _edit(path, edit)
        return path
    return make


# -- modality ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "words"), [
    ("CT_small.dcm", "a CT scan (Modality CT)"),
    ("MR_small.dcm", "an MRI image (Modality MR)"),
    ("examples_rgb_color.dcm", "an ultrasound image (Modality US)"),
    ("JPEG2000.dcm", "a nuclear medicine image (Modality NM)"),
    ("rtplan.dcm", "a radiotherapy plan, not an image"),
])
def test_other_modalities_are_refused_in_words(name, words):
    refused = refusal(get_testdata_file(name))
    assert refused.stage == "tags" and refused.code == "modality"
    assert refused.reason.startswith("not a chest radiograph: this is ") and words in refused.reason
    assert "CR/DX" in refused.reason


def test_a_real_cr_chest_pa_and_the_shipped_dx_samples_pass():
    assert header(CR_CHEST_PA)["Modality"] == "CR" and header(CR_CHEST_PA)["ViewPosition"] == "PA"
    assert check_tags(header(CR_CHEST_PA), KERMANY).refusal is None
    for path in SAMPLES.glob("*.dcm"):
        verdict = check_tags(header(path), KERMANY)
        assert verdict.refusal is None and verdict.flags == [], path.name


def test_dr_is_read_as_dx_and_a_missing_modality_is_refused(dx):
    assert refusal(dx(Modality="DR")) is None
    assert refusal(dx(Modality="DR"), IntendedUse(modalities=("CR",))).code == "modality"
    missing = refusal(dx(change=lambda ds: delattr(ds, "Modality")))
    assert missing.code == "modality_missing" and "does not say what kind of image" in missing.reason
    assert refusal(dx(Modality="CR"), IntendedUse(modalities=("CR",))) is None


# -- view, body part, colour -------------------------------------------------------------------
@pytest.mark.parametrize(("view", "code", "words"), [
    ("LL", "view_lateral", "a lateral view"), ("RL", "view_lateral", "a lateral view"),
    ("LATERAL", "view_lateral", "a lateral view"), ("LLD", "view_decubitus", "a decubitus view"),
    ("RLO", "view_oblique", "an oblique view"), ("AXIAL", "view_not_frontal", "not a frontal view"),
])
def test_non_frontal_views_are_refused(dx, view, code, words):
    refused = refusal(dx(ViewPosition=view))
    assert (refused.code, refused.reason) == (
        code, f"{words} (ViewPosition {view}): the model reads PA/AP chest radiographs only")


def test_frontal_or_missing_view_passes(dx):
    for view in ("PA", "AP", "ap ", ""):
        assert refusal(dx(ViewPosition=view)) is None, view
    assert refusal(dx()) is None  # write_dx_dicom writes no ViewPosition, as many consoles


def test_body_part(dx):
    skull = refusal(dx(BodyPartExamined="SKULL"))
    assert skull.code == "body_part" and "the body part is SKULL" in skull.reason
    for part in ("CHEST", "THORAX", "chest"):
        assert refusal(dx(BodyPartExamined=part)) is None, part
    assert refusal(dx(BodyPartExamined="THORAX"), IntendedUse(body_parts=("ABDOMEN",))).code == "body_part"
    assert refusal(dx(BodyPartExamined="RIBS")).code == "body_part"  # a rib series is not a chest film


@pytest.mark.parametrize("name", ["examples_rgb_color.dcm", "examples_palette.dcm", "examples_ybr_color.dcm"])
def test_colour_images_are_refused(name):
    refused = refusal(get_testdata_file(name), IntendedUse(modalities=("US",)))
    assert refused.code == "colour" and refused.reason.startswith("a colour image, not a radiograph")


def test_greyscale_and_missing_photometric_pass(dx):
    assert refusal(dx(photometric="MONOCHROME1")) is None
    assert refusal(dx(change=lambda ds: delattr(ds, "PhotometricInterpretation"))) is None


# -- species -----------------------------------------------------------------------------------
def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def test_animals_are_refused(dx):
    canine = refusal(dx(PatientSpeciesDescription="Canine", BodyPartExamined="THORAX"))
    assert canine.code == "species"
    assert canine.reason == ("not a human patient: the species is Canine; the model reads human chest "
                             "radiographs only")
    dog = refusal(dx(PatientSpeciesCodeSequence=[_code("448771007", "SCT", "Domestic dog")]))
    assert dog.code == "species" and "Domestic dog" in dog.reason
    assert refusal(dx(PatientBreedDescription="Maine Coon")).code == "species"
    assert refusal(dx(ResponsiblePersonRole="OWNER")).code == "species"


def test_humans_are_not_refused_for_species(dx):
    assert refusal(dx(PatientSpeciesDescription="Homo sapiens")) is None
    assert refusal(dx(PatientSpeciesCodeSequence=[_code("337915000", "SCT", "Homo sapiens")])) is None
    assert refusal(dx(ResponsiblePerson="Doe^John", ResponsiblePersonRole="PARENT")) is None


# -- age ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "years", "words"), [
    ("058Y", 58, "58 years"), ("003M", 0.25, "3 months"), ("001Y", 1, "1 year"), ("002W", 14 / 365.25, "2 weeks"),
    ("58", 58, "58 years"), (" 5y", 5, "5 years"), ("5.5Y", 5.5, "5.5 years"), (b"070M", 70 / 12, "70 months"),
    ("58 years", 58, "58 years"), ("4 Mo", 4 / 12, "4 months"),
])
def test_ages_as_modalities_write_them(text, years, words):
    got = parse_age(text)
    assert got is not None and got[0] == pytest.approx(years) and got[1] == words


@pytest.mark.parametrize("text", ["", "Y", "abc", "-5Y", "999Y", b"\xff\xfe", None, "58 kg", "5Y3M", ["x"]])
def test_unreadable_ages_are_no_age(text):
    assert parse_age(text) is None
    assert check_tags({"Modality": "DX", "PatientAge": text}, KERMANY).flags == []


def test_age_outside_the_population_is_flagged_or_refused(dx):
    adult = dx(PatientAge="058Y")
    verdict = check_tags(header(adult), KERMANY)
    assert verdict.refusal is None
    (flag,) = verdict.flags
    assert flag.code == "age_outside_population"
    assert flag.reason == ("the patient's age is outside the population the model was made for (children "
                           "aged 1-5 (Kermany paediatric set)): read this result with care")
    assert "58" not in flag.reason  # the reason reaches results.jsonl and the log: no patient data
    refused = refusal(adult, KERMANY.with_overrides(refuse_age_outside=True))
    assert refused.code == "age_outside_population" and refused.reason.endswith(": not analysed")
    for inside in ("001Y", "005Y", "070M"):  # 5 years 10 months is still "aged 5"
        assert check_tags(header(dx(PatientAge=inside)), KERMANY).flags == [], inside
    (infant,) = check_tags(header(dx(PatientAge="011M")), KERMANY).flags  # 11 months: under the first birthday
    assert infant.code == "age_outside_population" and "11" not in infant.reason
    assert check_tags(header(adult), IntendedUse()).flags == []  # population not stated: no age rule


def test_malformed_age_bytes_in_a_file_never_raise(dx):
    path = dx(change=lambda ds: _raw(ds, "PatientAge", "AS", b"\xff5 8Y"))
    screen = TagScreen(KERMANY)
    decoded = decode_dicom(path.read_bytes(), str(path), max_pixels=10**6, screen=screen)
    assert screen.seen and screen.flags == [] and decoded.pixels.shape == (64, 64)


# -- reading the header before the pixels --------------------------------------------------------
def test_the_screen_sees_the_header_before_pixels_are_decoded(dx):
    broken = dx(ViewPosition="LL", PatientAge="058Y",
                change=lambda ds: setattr(ds, "PixelData", ds.PixelData[: len(ds.PixelData) // 3]))
    data = broken.read_bytes()
    with pytest.raises(DecodeError) as undecodable:  # no screen: the broken pixel data is what is found
        decode_bytes(data, str(broken))
    assert undecodable.value.code == "undecodable_pixels"
    with pytest.raises(GateRefused) as refused:
        decode_bytes(data, str(broken), screen=TagScreen(KERMANY))
    assert refused.value.refusal.code == "view_lateral"

    truncated = get_testdata_file("MR_truncated.dcm")  # pydicom's MR whose pixel data is cut short
    with pytest.raises(GateRefused) as mr:
        decode_bytes(Path(truncated).read_bytes(), truncated, screen=TagScreen(KERMANY))
    assert mr.value.refusal.code == "modality" and "an MRI image" in mr.value.refusal.reason


def test_screen_gets_the_gate_tags_and_meta_gets_no_patient_data(dx):
    path = dx(PatientAge="058Y", ViewPosition="PA", BodyPartExamined="CHEST")
    seen: list[dict] = []
    decoded = decode_bytes(path.read_bytes(), str(path), screen=seen.append)
    (tags,) = seen
    assert {"Modality": "DX", "PatientAge": "058Y", "ViewPosition": "PA", "BodyPartExamined": "CHEST"}.items() \
        <= tags.items()
    assert set(tags) <= set(SCREEN_KEYWORDS)
    assert not {"PatientAge", "ViewPosition", "PatientName", "PatientID"} & set(decoded.meta)
    screen = TagScreen(KERMANY)
    decode_bytes(path.read_bytes(), str(path), screen=screen)
    assert [f.code for f in screen.flags] == ["age_outside_population"]
    png = next(SAMPLES.glob("*.jpeg")).read_bytes()
    screen.reset()
    decode_bytes(png, "x.jpeg", screen=screen)
    assert not screen.seen and screen.flags == []  # a JPEG has no header to screen


def test_legacy_modality_filter_still_works_after_the_screen():
    ct = get_testdata_file("CT_small.dcm")
    with pytest.raises(DecodeError) as refused:
        decode_bytes(Path(ct).read_bytes(), ct, modalities=IntendedUse().accepted_modalities())
    assert refused.value.code == "modality_refused"
    assert IntendedUse().accepted_modalities() == ("CR", "DX", "DR")


# -- the intended use record ---------------------------------------------------------------------
def test_manifest_round_trip_and_old_bundles(old_bundle):
    use = KERMANY.with_overrides(refuse_age_outside=True, views="PA")
    record = use.to_manifest()
    assert record == {"modalities": ["CR", "DX"], "views": ["PA"], "body_parts": ["CHEST"],
                      "population": {"age_years": [1, 5], "description": "children aged 1-5 (Kermany paediatric set)"},
                      "age_outside_population": "refuse"}
    assert IntendedUse.from_manifest(json.loads(json.dumps({"intended_use": record}))) == use
    old = json.loads((old_bundle / "bundle.json").read_text())
    assert "intended_use" not in old and IntendedUse.from_manifest(old) == IntendedUse()
    assert IntendedUse().describe() == "CR/DX radiographs of the chest, PA/AP views; population: not stated"


def test_overrides_and_their_errors():
    manifest = {"intended_use": KERMANY.to_manifest()}
    use = resolve(manifest, modalities="cr, dx,RG", population_age="none", body_parts=None)
    assert use.modalities == ("CR", "DX", "RG") and use.age_years is None and use.body_parts == ("CHEST",)
    assert resolve(manifest, population_age="18-120").describe_population() == \
        "children aged 1-5 (Kermany paediatric set), 18-120 years"
    assert parse_age_range(" 1 - 5 ") == (1.0, 5.0)
    for bad in ("5-1", "adult", "1-500", "-1-5"):
        with pytest.raises(EdgecxrError, match="population age"):
            parse_age_range(bad)
    with pytest.raises(EdgecxrError, match="no views given"):
        resolve(manifest, views=" , ")
    with pytest.raises(EdgecxrError, match=r"bundle\.json"):
        IntendedUse.from_manifest({"intended_use": {"age_outside_population": "ignore"}})


def test_bundle_inspect_shows_the_intended_use(old_bundle, tmp_path):
    plain = CliRunner().invoke(app, ["bundle", "inspect", str(old_bundle), "--no-verify"])
    assert plain.exit_code == 0, plain.output
    assert "intended use: CR/DX radiographs of the chest, PA/AP views; population: not stated (not recorded" \
        in " ".join(plain.output.split())
    copy = tmp_path / "bundle"
    shutil.copytree(old_bundle, copy)
    manifest = json.loads((copy / "bundle.json").read_text())
    manifest["intended_use"] = KERMANY.to_manifest()
    manifest["checksum"] = manifest_checksum(manifest)
    (copy / "bundle.json").write_text(json.dumps(manifest))
    shown = CliRunner().invoke(app, ["bundle", "inspect", str(copy), "--no-verify"])
    assert shown.exit_code == 0, shown.output
    assert ("intended use: CR/DX radiographs of the chest, PA/AP views; population: children aged 1-5 (Kermany "
            "paediatric set); an age outside it is flagged on the result") in " ".join(shown.output.split())


def test_export_refuses_a_bad_population_before_the_long_work(tmp_path):
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "b"),
                                      "--population-age", "adults"])
    assert result.exit_code == 2 and "population age 'adults' is not a range in years" in result.stderr


def test_classify_applies_the_modality_override(old_bundle):
    """On a bundle without an intended-use record (the defaults), --modality CR refuses a DX header."""
    sample = next(SAMPLES.glob("*.dx.dcm"))
    result = CliRunner().invoke(app, ["classify", str(sample), "--bundle", str(old_bundle), "--json",
                                      "--modality", "CR", "--allow-unqualified"])
    record = json.loads(result.output)
    assert record["status"] == "out_of_scope" and record["gate"]["stage"] == "tags"
    assert record["gate"]["reason"] == "this is a digital radiograph (Modality DX): the model reads CR radiographs only"
    bad = CliRunner().invoke(app, ["classify", str(sample), "--bundle", str(old_bundle), "--view", ","])
    assert bad.exit_code == 2 and "no views given" in bad.stderr
