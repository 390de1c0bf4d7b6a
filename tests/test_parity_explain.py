"""parity-check --explain on real engines and the real PyTorch checkpoint of a tiny trained model."""

from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from edgecxr.cli.app import app
from tests.tools import require_module

require_module("onnxruntime")
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_explain_report_fields(bundle_dir, tmp_path):
    result = run("parity-check", bundle_dir, "--out", tmp_path, "--backends", "onnxruntime", "--precisions", "fp32",
                 "--explain", "--explain-images", 4)
    parity = json.loads((tmp_path / "parity.json").read_text())
    section = parity["explain"]
    assert result.exit_code == (1 if section["failures"] or parity["verdict"] == "FAIL" else 0), result.output
    assert section["images"] == 4 and len(section["rows"]) == 4
    assert section["grid"]["squares"] == 49 and section["grid"]["patch_px"] == 16
    engine = section["engines"][0]
    assert engine["artifact"] == "onnxruntime-fp32"
    for key in ("deletion", "insertion", "random_deletion", "random_insertion"):
        assert 0.0 <= engine[key] <= 1.0 and 0.0 <= section["pytorch"][key] <= 1.0
    # FP32 ONNX is the PyTorch graph: its maps are the same maps
    assert engine["rank_correlation_with_pytorch"]["min"] > 0.99
    assert abs(engine["deletion"] - section["pytorch"]["deletion"]) < 1e-3
    rho = section["randomisation"]["rank_correlation_with_trained"]["mean"]
    assert -1.0 <= rho <= 1.0 and section["randomisation"]["maps_differ"] == (rho < 0.5)
    md = (tmp_path / "parity.md").read_text()
    assert "## Explanation maps (occlusion, 4 test images)" in md and "does not show disease" in md
    figure = Image.open(tmp_path / "explain.png")
    assert figure.height > 2 * 200  # a row of PyTorch maps above a row of engine maps
    assert "explanation maps on 4 images" in result.output


def test_explain_without_the_checkpoint_says_why(bundle_dir, tmp_path):
    result = run("parity-check", bundle_dir, "--out", tmp_path, "--backends", "onnxruntime", "--precisions", "fp32",
                 "--explain", "--explain-images", 2, "--checkpoint", tmp_path / "nowhere")
    section = json.loads((tmp_path / "parity.json").read_text())["explain"]
    assert section["pytorch"] is None and section["randomisation"] is None
    assert "has no model.safetensors" in section["pytorch_skipped"]
    assert "rank_correlation_with_pytorch" not in section["engines"][0]
    assert "no PyTorch maps" in result.output


def test_bad_explain_grid_exits_2(bundle_dir, tmp_path):
    result = run("parity-check", bundle_dir, "--out", tmp_path, "--explain", "--explain-grid", "0.1/0.5")
    assert result.exit_code == 2 and "STRIDE <= PATCH" in result.output
