"""The intended-use gate in the live watcher: a mixed burst against a real PACS (Orthanc).

In-scope chest radiographs are classified and their SRs reach PACS; a CT, a lateral view, a
blank exposure, a noise frame, a colour photograph and an upside-down chest image each get one
`out_of_scope` line with its stage and reason, no label, and nothing is sent for them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.core.results import read_results
from tests.tools import require_module

SAMPLES = Path(__file__).parents[1] / "edgecxr" / "samples" / "chest-xrays"
pydicom = require_module("pydicom")
require_module("pynetdicom")
require_module("highdicom")
require_module("onnxruntime")


def _lateral_copy(source: Path, dest: Path) -> str:
    """A sample chest DX relabelled as a lateral view (new UIDs, so it is a new instance)."""
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(source)
    ds.ViewPosition = "LL"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(dest)
    return ds.SOPInstanceUID


def _mixed_inbox(folder: Path) -> dict[str, str]:
    """Files in the inbox -> the stage expected to refuse them ("" for in scope)."""
    from tests.dicom_write import write_dx_dicom

    folder.mkdir()
    expected = {}
    for path in sorted(SAMPLES.glob("*.dcm")):
        shutil.copyfile(path, folder / path.name)
        expected[path.name] = ""
    ct = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    shutil.copyfile(ct, folder / "ct.dcm")
    expected["ct.dcm"] = "tags"
    _lateral_copy(next(SAMPLES.glob("*.dx.dcm")), folder / "lateral.dcm")
    expected["lateral.dcm"] = "tags"
    write_dx_dicom(np.full((256, 256), 0.5), folder / "blank.dcm")  # a failed exposure, tagged as a DX
    expected["blank.dcm"] = "pixels"
    write_dx_dicom(np.random.default_rng(3).random((256, 256)), folder / "noise.dcm")
    expected["noise.dcm"] = "pixels"
    rgb = np.random.default_rng(4).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(np.kron(rgb, np.ones((8, 8, 1), np.uint8))).save(folder / "photo.png")
    expected["photo.png"] = "pixels"
    chest = np.asarray(Image.open(next(SAMPLES.glob("NORMAL-IM-0010*.jpeg"))).convert("L"))
    Image.fromarray(np.ascontiguousarray(chest[::-1, ::-1])).save(folder / "upside-down.png")
    expected["upside-down.png"] = "learned"
    return expected


def test_a_mixed_burst_sends_srs_only_for_images_in_scope(pacs, tmp_path):
    inbox, out = tmp_path / "inbox", tmp_path / "results"
    expected = _mixed_inbox(inbox)
    pacs.start()
    args = ["watch", str(inbox), "--once", "--settle-seconds", "0", "--backend", "onnxruntime", "--out", str(out),
            "--quarantine", str(tmp_path / "not-analysed"), "--send-sr", pacs.destination]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = {r["path"]: r for r in read_results(out)}
    assert set(lines) == set(expected)
    for name, stage in expected.items():
        line = lines[name]
        if not stage:
            assert line["status"] == "ok", line
            assert line["gate"]["score"] <= line["gate"]["threshold"]
            continue
        assert line["status"] == "out_of_scope", (name, line)
        assert line["gate"]["stage"] == stage, (name, line["gate"])
        assert line["gate"]["reason"] and "label" not in line and "probabilities" not in line
    assert "CT" in lines["ct.dcm"]["gate"]["reason"] and "lateral" in lines["lateral.dcm"]["gate"]["reason"]
    assert lines["blank.dcm"]["gate"]["code"] == "blank" and lines["noise.dcm"]["gate"]["code"] == "noise"
    assert lines["photo.png"]["gate"]["code"] == "colour"
    assert "not analysed" in result.output and "upside down" in result.output
    in_scope_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in SAMPLES.glob("*.dcm")}
    pacs.wait_for(lambda: len([i for i in pacs.instances() if i.get("Modality") == "SR"]) >= len(in_scope_uids) or None,
                  what="every in-scope SR")
    srs = [i for i in pacs.instances() if i.get("Modality") == "SR"]
    assert len(srs) == len(in_scope_uids)  # none for the CT, the lateral view, the blank or the noise DX
    assert len([p for p in (tmp_path / "not-analysed").rglob("*") if p.is_file()]) == 6  # set aside, not archived
    status = json.loads(CliRunner().invoke(app, ["status", str(out), "--json"]).output)
    assert status["out_of_scope"] == 6 and status["out_of_scope_by_code"]["blank"] == 1


def _aged_copy(source: Path, dest: Path, age: str) -> None:
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(source)
    ds.PatientAge = age
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(dest)


@pytest.mark.parametrize("option, adult_status", [(None, "ok"), ("--refuse-age-outside", "out_of_scope")])
def test_an_adult_is_flagged_or_refused_never_answered_as_in_scope(tmp_path, option, adult_status):
    """The shipped bundle's population is children aged 1-5: a radiograph whose header says 45
    years is classified with the flag on its line (and so in its SR), or refused on request."""
    inbox, out = tmp_path / "inbox", tmp_path / "results"
    inbox.mkdir()
    source = next(SAMPLES.glob("*.dx.dcm"))
    _aged_copy(source, inbox / "adult.dcm", "045Y")
    _aged_copy(source, inbox / "child.dcm", "003Y")
    args = ["watch", str(inbox), "--once", "--settle-seconds", "0", "--backend", "onnxruntime", "--out", str(out)]
    result = CliRunner().invoke(app, args + ([option] if option else []))
    assert result.exit_code == 0, result.output
    lines = {r["path"]: r for r in read_results(out)}
    assert lines["child.dcm"]["status"] == "ok" and "flags" not in lines["child.dcm"]
    adult = lines["adult.dcm"]
    assert adult["status"] == adult_status
    if adult_status == "ok":
        assert [f["code"] for f in adult["flags"]] == ["age_outside_population"]
        assert "outside the population" in adult["flags"][0]["reason"] and "45" not in adult["flags"][0]["reason"]
        assert "note:" in result.output  # the table shows the flag under the label
    else:
        assert (adult["gate"]["stage"], adult["gate"]["code"]) == ("tags", "age_outside_population")
    assert "045Y" not in (out / "results.jsonl").read_text()  # the flag names the population, never the age
