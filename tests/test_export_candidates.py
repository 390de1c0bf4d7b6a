"""Calibration candidates: each INT8 engine keeps the sample that follows FP32 most closely on
selection images, and the engine in the bundle is that candidate, not the last one written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.tools import require_module

require_module("torch")
require_module("onnxruntime")
require_module("openvino")

from typer.testing import CliRunner  # noqa: E402

from edgecxr.backends import open_runner  # noqa: E402
from edgecxr.cli.app import app  # noqa: E402
from edgecxr.core.bundle import load_bundle  # noqa: E402
from edgecxr.core.preprocess import load_model_inputs  # noqa: E402

# Each test reads `chosen`, an export with four calibration candidates per INT8 engine: 100 s of
# setup on 2 cores (measured with --durations), so the whole module is slow.
pytestmark = pytest.mark.slow

INT8 = ("onnxruntime-int8", "onnxruntime-int8-symmetric", "openvino-int8")


@pytest.fixture(scope="module")
def chosen(trained_run, mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("candidates") / "bundle"
    args = ["export", trained_run, "--out", out, "--int8", "--calib-data", mini / "train", "--calib-size", 5,
            "--heldout-size", 10, "--calib-candidates", 3, "--seed", 3]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_every_int8_engine_records_its_candidates_and_keeps_the_closest(chosen):
    out, _ = chosen
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["calibration"]["seeds"] == [3, 4, 5]
    for artifact in manifest["artifacts"]:
        if artifact["name"] not in INT8:
            assert "quantization" not in artifact
            continue
        q = artifact["quantization"]
        candidates = q["calibration_choice"]["candidates"]
        assert [c["seed"] for c in candidates] == [3, 4, 5]
        best = min(candidates, key=lambda c: (c["mean_abs_prob_diff"], c["flips"]))
        assert q["calibration_seed"] == best["seed"]


def test_the_kept_engine_is_the_chosen_candidate_rescored_on_the_selection_images(chosen, mini):
    out, _ = chosen
    bundle = load_bundle(out)
    selection = bundle.manifest["calibration"]["selection"]
    calibration = {f["path"] for s in bundle.manifest["calibration"]["samples"] for f in s["files"]}
    heldout = {f["path"] for f in bundle.manifest["calibration"]["heldout"]["files"]}
    files = [f["path"] for f in selection["files"]]
    assert files and not set(files) & (calibration | heldout)
    inputs = load_model_inputs([mini / "train" / f for f in files], bundle.spec)
    fp32 = next(a for a in bundle.artifacts if a.name == "onnxruntime-fp32")
    with open_runner(fp32.backend, fp32.path) as runner:
        reference = runner.probabilities(inputs)[:, 1]
    for artifact in bundle.artifacts:
        if artifact.name not in INT8:
            continue
        q = artifact.record["quantization"]
        recorded = next(c for c in q["calibration_choice"]["candidates"] if c["seed"] == q["calibration_seed"])
        with open_runner(artifact.backend, artifact.path) as runner:
            got = runner.probabilities(inputs)[:, 1]
        assert np.abs(got - reference).mean() == pytest.approx(recorded["mean_abs_prob_diff"], abs=2e-5), artifact.name


def test_no_candidate_file_is_left_and_inspect_names_the_kept_seeds(chosen):
    out, output = chosen
    assert not [p for p in out.rglob("*") if "candidate" in p.name]
    assert "3 calibration candidates (seeds 3–5)" in output
    result = CliRunner().invoke(app, ["bundle", "inspect", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 candidate sample(s), seeds kept: onnxruntime-int8" in result.output
