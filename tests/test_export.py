"""The export stage on a tiny trained Swin-V2: real runtimes, real images, a verified bundle."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.tools import require_module

torch = require_module("torch")
require_module("onnxruntime")
require_module("openvino")

from typer.testing import CliRunner  # noqa: E402

from edgecxr.backends import RunnerOptions, open_runner  # noqa: E402
from edgecxr.cli.app import app  # noqa: E402
from edgecxr.core.bundle import load_bundle  # noqa: E402
from edgecxr.core.data.decode import decode_file  # noqa: E402
from edgecxr.core.data.fingerprint import sha256_file  # noqa: E402
from edgecxr.core.errors import EdgecxrError  # noqa: E402
from edgecxr.training.model import load_checkpoint  # noqa: E402

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_dir(trained_run):
    return trained_run


def test_bundle_has_every_artifact_with_matching_hashes(bundle_dir):
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    names = {a["name"] for a in manifest["artifacts"]}
    assert names == {"onnxruntime-fp32", "onnxruntime-int8", "onnxruntime-int8-symmetric", "openvino-fp32",
                     "openvino-int8"}
    for artifact in manifest["artifacts"]:
        for entry in artifact["files"]:
            assert sha256_file(bundle_dir / entry["path"]) == entry["sha256"]
            assert (bundle_dir / entry["path"]).stat().st_size == entry["bytes"]
    assert manifest["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert manifest["preprocess"]["height"] == 64
    assert (bundle_dir / "report.json").is_file()  # parity-check's reference travels with the bundle
    assert manifest["source"]["reference_report"] == "report.json"


def test_each_artifact_runs_in_its_runtime_and_matches_pytorch(bundle_dir, run_dir, mini_test_images):
    model, spec, _ = load_checkpoint(run_dir)
    x = np.stack([spec(decode_file(p).pixels) for p in mini_test_images[:8]])
    with torch.inference_mode():
        ref = torch.softmax(model(pixel_values=torch.from_numpy(x)).logits, -1).numpy()
    bundle = load_bundle(bundle_dir)
    for artifact in bundle.artifacts:
        with open_runner(artifact.backend, artifact.path, RunnerOptions()) as engine:
            logits = engine.infer(x)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        recorded = artifact.record["agreement"]["max_abs_prob_diff"]
        tolerance = 1e-4 if artifact.precision == "fp32" else max(0.1, 3 * recorded)
        assert np.abs(probs - ref).max() <= tolerance, artifact.name


def test_onnx_check_and_agreement_are_recorded(bundle_dir):
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    check = manifest["onnx_export"]["verification"]
    assert check["max_abs_logit_diff"] <= 1e-4 and check["images"] > 0
    for artifact in manifest["artifacts"]:
        agree = artifact["agreement"]
        assert 0.0 <= agree["agreement"] <= 1.0 and agree["images"] == 14
    int8 = next(a for a in manifest["artifacts"] if a["name"] == "onnxruntime-int8")
    assert "LayerNormalization" in int8["quantization"]["kept_in_float"]
    assert int8["quantization"]["pre_process"]["shape_inference"]


def test_int8_is_smaller_than_fp32(bundle_dir):
    bundle = load_bundle(bundle_dir)
    size = {a.name: a.size_bytes for a in bundle.artifacts}
    assert size["onnxruntime-int8"] < size["onnxruntime-fp32"]
    assert size["openvino-int8"] < size["openvino-fp32"]


def test_calibration_and_heldout_do_not_overlap(bundle_dir):
    calib = json.loads((bundle_dir / "bundle.json").read_text())["calibration"]
    assert calib["size"] == 10 and calib["source"] == "calib-data" and calib["seeds"] == [1216]
    calib_files = {f["path"] for f in calib["samples"][0]["files"]}
    heldout_files = {f["path"] for f in calib["heldout"]["files"]}
    assert len(calib_files) == 10 and len(heldout_files) == 14
    assert not calib_files & heldout_files
    labels = [p.split("/")[0] for p in calib_files]
    assert labels.count("NORMAL") == labels.count("PNEUMONIA") == 5  # stratified


def test_tensorrt_without_tensorrt_is_a_clear_warning(bundle_dir):
    warnings = json.loads((bundle_dir / "bundle.json").read_text())["warnings"]
    assert any("TensorRT is not installed" in w and "edgecxr build-engine" in w for w in warnings)
    result = run("build-engine", bundle_dir)
    assert result.exit_code == 2
    assert "TensorRT is not installed" in result.stderr and "JetPack" in result.stderr


def test_inspect_prints_the_summary(bundle_dir):
    result = run("bundle", "inspect", bundle_dir)
    assert result.exit_code == 0, result.output
    assert "openvino-int8" in result.output and "sha256 verified" in result.output


def test_the_bundle_records_its_intended_use(bundle_dir):
    """Exported without intended-use options: the defaults are recorded, and inspect shows them."""
    from edgecxr.scope.intended_use import IntendedUse

    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    assert manifest["intended_use"] == IntendedUse().to_manifest()
    assert IntendedUse.from_manifest(manifest) == IntendedUse()
    shown = " ".join(run("bundle", "inspect", bundle_dir).output.split())
    assert "intended use: CR/DX radiographs of the chest, PA/AP views; population: not stated" in shown
    assert "not recorded in this bundle" not in shown
    assert "intended-use gate: tags, pixels, learned (fitted on" in shown


def test_tampered_artifact_is_refused(bundle_dir, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(bundle_dir, copy)
    target = copy / "onnx" / "model.int8.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(EdgecxrError, match=r"model\.int8\.onnx.*does not match its sha256"):
        load_bundle(copy)
    result = run("bundle", "inspect", copy)
    assert result.exit_code == 2 and "tampered" in result.stderr


def test_incomplete_bundle_is_refused(bundle_dir, tmp_path):
    copy = tmp_path / "incomplete"
    shutil.copytree(bundle_dir, copy)
    (copy / "openvino" / "model.int8.bin").unlink()
    with pytest.raises(EdgecxrError, match="missing"):
        load_bundle(copy)


# -- bad input ----------------------------------------------------------------------------

def _clean_error(result, *needles):
    assert result.exit_code == 2, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:"), result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_int8_without_calibration_data_refuses(run_dir, tmp_path):
    model_only = tmp_path / "model-only"
    shutil.copytree(run_dir / "model", model_only)
    _clean_error(run("export", model_only, "--out", tmp_path / "b", "--int8"), "--calib-data",
                 "never calibrates on random")
    assert not list(tmp_path.glob(".b.partial-*"))


def test_existing_output_needs_force(run_dir, bundle_dir):
    _clean_error(run("export", run_dir, "--out", bundle_dir), "exists", "--force")


def test_unknown_target(run_dir, tmp_path):
    _clean_error(run("export", run_dir, "--out", tmp_path / "b", "--targets", "coreml"), "coreml")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk").mkdir()
    _clean_error(run("export", tmp_path / "junk", "--out", tmp_path / "b"), "neither a run folder")


def test_calibration_classes_must_match(run_dir, mini, tmp_path):
    calib = tmp_path / "calib"
    shutil.copytree(mini / "test", calib)
    (calib / "NORMAL").rename(calib / "HEALTHY")
    _clean_error(run("export", run_dir, "--out", tmp_path / "b", "--int8", "--calib-data", calib),
                 "['HEALTHY', 'PNEUMONIA']")
    assert not list(tmp_path.glob(".b.partial-*"))


def test_the_run_s_test_split_as_calibration_data_is_refused(run_dir, mini, tmp_path):
    """run.json records the test split it was evaluated on; tuning on it would flatter the test figures."""
    _clean_error(run("export", run_dir, "--out", tmp_path / "b", "--calib-data", mini / "test"),
                 "holds test images", "these images are the test split", "point --calib-data at training images")
    assert not list(tmp_path.glob(".b.partial-*"))


def test_a_temperature_fitted_without_the_run_s_validation_images_is_said_and_recorded(run_dir, mini, tmp_path):
    model_only = tmp_path / "model-only"
    shutil.copytree(run_dir / "model", model_only)
    result = run("export", model_only, "--out", tmp_path / "b", "--calib-data", mini / "train",
                 "--targets", "onnxruntime", "--no-gate")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "b" / "bundle.json").read_text())
    fitted_on = manifest["probability_calibration"]["fitted_on"]
    assert fitted_on == "held-out (calibration-folder images not used for calibration)"
    said = [w for w in manifest["warnings"] if "not on the run's validation split" in w]
    assert len(said) == 1 and "no run.json" in said[0] and "probability_calibration.fitted_on" in said[0]
    assert "not on the run's validation split" in " ".join(result.output.split())


def test_empty_calibration_folder(run_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    _clean_error(run("export", run_dir, "--out", tmp_path / "b", "--int8", "--calib-data", tmp_path / "empty"),
                 "no class folders")


def test_bundle_is_readable_by_other_users(bundle_dir):
    """A service user on the device must be able to read what the export wrote."""
    for path in [bundle_dir, *bundle_dir.rglob("*")]:
        assert path.stat().st_mode & 0o004, f"{path} is not world-readable"


def test_int8_weights_leave_headroom_for_cpus_without_vnni(bundle_dir):
    """7-bit weights (|w| <= 64) in every INT8 graph, so AVX2's saturating 16-bit pair sums
    (2*255*64 < 32767) cannot clip; attention MatMuls of two activations stay in float."""
    import onnx
    import openvino as ov
    from onnx import numpy_helper

    for rel in ("onnx/model.int8.onnx", "onnx/model.int8-symmetric.onnx"):
        graph = onnx.load(str(bundle_dir / rel)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        weights = [inits[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                   and inits[n.input[0]].dtype == np.int8]
        assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64, rel
        producers = {o: n for n in graph.node for o in n.output}

        def weight(name, producers=producers, inits=inits):  # an initializer, or dequantized from one
            node = producers.get(name)
            return name in inits or (node is not None and node.op_type == "DequantizeLinear"
                                     and node.input[0] in inits)

        attention = [n for n in graph.node if n.op_type == "MatMul" and not any(weight(i) for i in n.input)]
        assert attention, rel
        for node in attention:
            sources = [producers[i].op_type for i in node.input if i in producers]
            assert "DequantizeLinear" not in sources, (rel, node.name)
    model = ov.Core().read_model(str(bundle_dir / "openvino/model.int8.xml"))
    int8 = [op.get_data() for op in model.get_ops() if op.get_type_name() == "Constant"
            and op.get_element_type() == ov.Type.i8]
    assert int8 and max(int(np.abs(c.astype(np.int16)).max()) for c in int8) <= 64
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    records = {a["name"]: a.get("quantization", {}) for a in manifest["artifacts"]}
    assert "reduce_range" in records["onnxruntime-int8"]["weights"]
    assert records["openvino-int8"]["overflow_fix"].startswith("ENABLE")


def test_the_patch_embedding_stays_in_float_in_every_int8_graph(bundle_dir):
    import onnx

    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    for artifact in manifest["artifacts"]:
        if artifact["precision"] != "int8" or artifact["backend"] == "tensorrt":
            continue
        assert any(k.startswith("input layer, the patch embedding") for k in
                   artifact["quantization"]["kept_in_float"]), artifact["name"]
    for rel in ("onnx/model.int8.onnx", "onnx/model.int8-symmetric.onnx"):
        graph = onnx.load(str(bundle_dir / rel)).graph
        dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        conv = next(n for n in graph.node if n.op_type == "Conv")
        assert not set(conv.input) & dequantized, rel  # neither its input nor its weight is INT8
        assert any(n.op_type == "MatMul" and set(n.input) & dequantized for n in graph.node), rel
    import openvino as ov

    model = ov.Core().read_model(str(bundle_dir / "openvino" / "model.int8.xml"))
    conv = next(op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")
    assert all(i.get_source_output().get_node().get_type_name() != "FakeQuantize" for i in conv.inputs())
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops())
