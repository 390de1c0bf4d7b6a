"""parity-check on real engines: identical engines pass, altered ones fail by name, bad input exits 2."""

from __future__ import annotations

import json
import shutil

import numpy as np
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.core.bundle import MANIFEST, file_entry, manifest_checksum
from tests.helpers import copy_tree
from tests.tools import require_module

onnx = require_module("onnx")
require_module("onnxruntime")
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def rewrite_artifact(bundle, rel, change):
    """Change one artifact's ONNX graph and re-record it, as a faulty export would have written it."""
    from onnx import numpy_helper

    model = onnx.load(str(bundle / rel))
    change(model, numpy_helper)
    onnx.save(model, str(bundle / rel))
    manifest = json.loads((bundle / MANIFEST).read_text())
    for artifact in manifest["artifacts"]:
        artifact["files"] = [file_entry(bundle, f["path"]) for f in artifact["files"]]
    manifest["checksum"] = manifest_checksum(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def _classifier(model):
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    node = producers[graph.output[0].name]
    while node.op_type not in ("Gemm", "MatMul"):
        node = producers[node.input[0]]
    inits = {i.name: i for i in graph.initializer}
    return node, inits


def swap_classes(model, numpy_helper):
    node, inits = _classifier(model)
    for name in node.input[1:]:
        if name in inits:
            array = numpy_helper.to_array(inits[name])
            axis = 0 if (node.op_type == "Gemm" and array.ndim == 2) or array.ndim == 1 else 1
            inits[name].CopyFrom(numpy_helper.from_array(np.flip(array, axis=axis).copy(), name))


def test_identical_engines_pass(bundle_dir, tmp_path):
    result = run("parity-check", bundle_dir, "--out", tmp_path, "--backends", "onnxruntime,openvino",
                 "--precisions", "fp32")
    assert result.exit_code == 0, result.output
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert parity["schema"] == "edgecxr.parity/1" and parity["verdict"] == "PASS"
    assert {e["artifact"] for e in parity["engines"]} == {"onnxruntime-fp32", "openvino-fp32"}
    for engine in parity["engines"]:
        assert engine["agreement"] == 1.0 and engine["flipped"] == []
        assert engine["mcnemar"]["p_value"] == 1.0
        assert engine["p_positive_abs_diff"]["max"] < 1e-4
        assert engine["metrics"]["confusion_matrix"] == parity["reference"]["metrics"]["confusion_matrix"]
    assert (tmp_path / "parity.png").is_file()
    md = (tmp_path / "parity.md").read_text()
    assert "— PASS" in md and "NORMAL recall" in md


def test_every_runnable_engine_is_scored(bundle_dir, tmp_path):
    result = run("parity-check", bundle_dir, "--out", tmp_path, "--min-agreement", "0", "--max-accuracy-drop", "100",
                 "--max-recall-drop", "100")
    assert result.exit_code == 0, result.output
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert {e["artifact"] for e in parity["engines"]} == {
        "onnxruntime-fp32", "onnxruntime-int8", "onnxruntime-int8-symmetric", "openvino-fp32", "openvino-int8"}
    assert parity["data"]["n_images"] == 20


def test_swapped_class_order_fails_naming_the_metric(bundle_dir, tmp_path):
    bad = copy_tree(bundle_dir, tmp_path / "swapped")
    rewrite_artifact(bad, "onnx/model.fp32.onnx", swap_classes)
    result = run("parity-check", bad, "--out", tmp_path / "p", "--backends", "onnxruntime", "--precisions", "fp32")
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.stdout and "agreement" in result.stdout
    engine = json.loads((tmp_path / "p" / "parity.json").read_text())["engines"][0]
    assert engine["verdict"] == "FAIL" and any("agreement" in f for f in engine["failures"])
    assert len(engine["flipped"]) == 20  # every prediction inverted


def test_altered_weights_fail(bundle_dir, tmp_path):
    def perturb(model, numpy_helper):
        rng = np.random.default_rng(0)
        for init in model.graph.initializer:
            array = numpy_helper.to_array(init)
            if array.dtype == np.float32 and array.ndim == 2 and array.size > 100:
                noisy = array + rng.normal(0, 3 * (array.std() + 1e-3), array.shape).astype(np.float32)
                init.CopyFrom(numpy_helper.from_array(noisy, init.name))

    bad = copy_tree(bundle_dir, tmp_path / "altered")
    rewrite_artifact(bad, "onnx/model.fp32.onnx", perturb)
    result = run("parity-check", bad, "--out", tmp_path / "p", "--backends", "onnxruntime", "--precisions", "fp32")
    assert result.exit_code == 1, result.output
    engine = json.loads((tmp_path / "p" / "parity.json").read_text())["engines"][0]
    assert engine["verdict"] == "FAIL" and engine["failures"]


# -- bad input: exit 2 --------------------------------------------------------------------------

def _clean_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_fingerprint_mismatch_names_the_files(bundle_dir, mini, tmp_path):
    data = copy_tree(mini / "test", tmp_path / "test")
    victim = sorted((data / "NORMAL").iterdir())[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    (data / "PNEUMONIA" / sorted((data / "PNEUMONIA").iterdir())[0].name).unlink()
    _clean_error(run("parity-check", bundle_dir, "--data", data, "--out", tmp_path / "p"),
                 "fingerprint mismatch", victim.name, "missing here")


def test_test_folder_with_other_classes(bundle_dir, mini, tmp_path):
    data = copy_tree(mini / "test", tmp_path / "test")
    (data / "NORMAL").rename(data / "HEALTHY")
    _clean_error(run("parity-check", bundle_dir, "--data", data, "--out", tmp_path / "p"), "classes differ")


def test_no_artifact_for_the_backend(bundle_dir, tmp_path):
    _clean_error(run("parity-check", bundle_dir, "--backends", "tensorrt", "--out", tmp_path), "no artifact",
                 "tensorrt")


def test_backend_not_installed(bundle_dir, tmp_path):
    bundle = copy_tree(bundle_dir, tmp_path / "with-engine")
    (bundle / "tensorrt").mkdir()
    (bundle / "tensorrt" / "model.int8.engine").write_bytes(b"engine built elsewhere")
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["artifacts"].append({"name": "tensorrt-int8", "backend": "tensorrt", "precision": "int8", "role": "gpu",
                                  "files": [file_entry(bundle, "tensorrt/model.int8.engine")],
                                  "engine": {"gpu": "Orin", "compute_capability": "8.7", "tensorrt": "10.3.0"}})
    manifest["checksum"] = manifest_checksum(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    _clean_error(run("parity-check", bundle, "--backends", "tensorrt", "--out", tmp_path / "p"),
                 "tensorrt is not installed")


def test_reference_from_other_data(bundle_dir, tmp_path):
    report = json.loads((bundle_dir / "report.json").read_text())
    report["data"]["fingerprint"] = "0" * 64
    report["rows"][0]["sha256"] = "f" * 64
    (tmp_path / "other.json").write_text(json.dumps(report))
    _clean_error(run("parity-check", bundle_dir, "--reference", tmp_path / "other.json", "--out", tmp_path / "p"),
                 "fingerprint mismatch", report["rows"][0]["path"].split("/")[-1])


def test_bundle_without_reference_report(bundle_dir, tmp_path):
    bundle = copy_tree(bundle_dir, tmp_path / "noref")
    (bundle / "report.json").unlink()  # as exported from a run without a report: not listed either
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "report.json"]
    manifest["checksum"] = manifest_checksum(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    _clean_error(run("parity-check", bundle, "--out", tmp_path / "p"), "--reference")
    shutil.rmtree(bundle)
