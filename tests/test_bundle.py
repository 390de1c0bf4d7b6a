"""The shipped reference bundle as the runtime reads it: checksums, preprocessing, positive class."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgecxr.core.bundle import MANIFEST, load_bundle, manifest_checksum
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.runtime.default_bundle import PACKAGED


def bundle_copy(tmp_path: Path) -> Path:
    """The reference bundle's small files copied, its engine folders linked (they are not changed here)."""
    dst = tmp_path / "bundle"
    dst.mkdir()
    for item in PACKAGED.iterdir():
        if item.is_dir():
            (dst / item.name).symlink_to(item.resolve(), target_is_directory=True)
        elif item.suffix in (".json", ".md", ".npz"):
            shutil.copyfile(item, dst / item.name)
    return dst


def rewrite_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    change(manifest)
    manifest["checksum"] = manifest_checksum(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_shipped_bundle_loads_with_its_files_covered():
    bundle = load_bundle(PACKAGED)
    assert {f["path"] for f in bundle.manifest["files"]} == {"preprocess.json", "report.json", "gate.npz"}
    assert bundle.positive_class == "PNEUMONIA"
    assert json.loads((PACKAGED / "preprocess.json").read_text()) == bundle.manifest["preprocess"]


@pytest.mark.parametrize("name", ["preprocess.json", "report.json"])
def test_edited_covered_file_is_refused(tmp_path, name):
    folder = bundle_copy(tmp_path)
    data = json.loads((folder / name).read_text())
    data["edited"] = True
    (folder / name).write_text(json.dumps(data))
    with pytest.raises(EdgecxrError, match=rf"{name}.*does not match its sha256"):
        load_bundle(folder)


def test_edited_gate_arrays_are_refused(tmp_path):
    """The gate's fitted arrays decide what reaches PACS: a changed byte is a refused bundle."""
    folder = bundle_copy(tmp_path)
    data = bytearray((folder / "gate.npz").read_bytes())
    data[-100] ^= 1
    (folder / "gate.npz").write_bytes(bytes(data))
    with pytest.raises(EdgecxrError, match=r"gate.npz.*does not match its sha256"):
        load_bundle(folder)


def test_preprocessing_the_runtime_does_not_do_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"layout 'NHWC' is not supported"):
        PreprocessSpec(height=8, width=8, layout="NHWC")
    folder = bundle_copy(tmp_path)
    rewrite_manifest(folder, lambda m: m["preprocess"].update(channels="rgb_as_is"))
    with pytest.raises(EdgecxrError, match=r"channels 'rgb_as_is' is not supported.*re-export"):
        load_bundle(folder)


def test_positive_class_must_be_a_class(tmp_path):
    folder = bundle_copy(tmp_path)
    rewrite_manifest(folder, lambda m: m.update(positive_class="COVID"))
    with pytest.raises(EdgecxrError, match="positive_class 'COVID' is not one of"):
        load_bundle(folder)


def test_reference_report_without_its_data_record_is_a_clean_error(tmp_path):
    from typer.testing import CliRunner

    from edgecxr.cli.app import app

    report = json.loads((PACKAGED / "report.json").read_text())
    del report["data"]
    (tmp_path / "report.json").write_text(json.dumps(report))
    result = CliRunner().invoke(app, ["parity-check", "--reference", str(tmp_path / "report.json"),
                                      "--data", str(tmp_path), "--out", str(tmp_path / "p")])
    assert result.exit_code == 2, result.output
    assert "lacks data.root, data.fingerprint" in result.output
