"""Calibrated probabilities: a temperature fitted on validation at export, recorded in the bundle,
applied by every engine before the decision rule, and measured (ECE, 15 bins) in the reports."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.core.bundle import MANIFEST, PROBABILITY_CALIBRATION, load_bundle, manifest_checksum
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.metrics import (
    calibrate_probabilities,
    calibrated_softmax,
    expected_calibration_error,
    negative_log_likelihood,
    reliability,
    softmax,
)
from edgecxr.exporters.temperature import calibration_record, fit_temperature


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def overconfident(true_temperature: float, n: int = 20000, seed: int = 0):
    """Labels drawn from softmax(z), logits reported as z * T: a model T times too sure of itself."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, (n, 2))
    labels = (rng.random(n) < softmax(z)[:, 1]).astype(np.int64)
    return z * true_temperature, labels


@pytest.mark.parametrize("true_temperature", [0.5, 2.5, 6.0])
def test_the_fit_recovers_the_temperature_of_overconfident_logits(true_temperature):
    logits, labels = overconfident(true_temperature)
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.05)


def test_the_fit_is_deterministic_and_bounded():
    logits, labels = overconfident(2.5, n=2000)
    assert fit_temperature(logits, labels) == fit_temperature(logits, labels)
    # every label the opposite of a confident prediction: the flattest temperature allowed
    sure = np.array([[6.0, -6.0], [-6.0, 6.0]] * 10)
    assert fit_temperature(sure, np.array([1, 0] * 10)) == pytest.approx(20.0, rel=0.01)


def test_the_record_shows_the_calibration_helped_where_it_was_fitted():
    logits, labels = overconfident(3.0, n=5000)
    record = calibration_record(logits, labels, "validation", "f" * 64)
    assert record["temperature"] == pytest.approx(3.0, rel=0.05)
    assert record["ece_after"] < record["ece_before"] and record["nll_after"] < record["nll_before"]
    assert (record["images"], record["fitted_on"], record["ece_bins"]) == (5000, "validation", 15)
    given = calibration_record(logits, labels, "validation", "f" * 64, given=1.0)
    assert given["temperature"] == 1.0 and given["ece_after"] == given["ece_before"]


def test_ece_with_15_bins_against_a_hand_computed_case():
    # confidences 0.95, 0.95 (bin 14/15 .. 1], one right one wrong), 0.62 (right, bin (0.6, 0.667]),
    # 0.55 and 0.52 (bin (0.533, 0.6] holds 0.55; 0.52 is in (0.467, 0.533]), both wrong
    probs = np.array([[0.95, 0.05], [0.05, 0.95], [0.38, 0.62], [0.55, 0.45], [0.48, 0.52]])
    labels = np.array([0, 0, 1, 1, 0])
    by_hand = (2 / 5) * abs(0.5 - 0.95) + (1 / 5) * abs(1.0 - 0.62) + (1 / 5) * 0.55 + (1 / 5) * 0.52
    assert expected_calibration_error(probs, labels) == pytest.approx(by_hand)
    assert len(reliability(probs, labels)) == 4
    assert negative_log_likelihood(probs, labels) == pytest.approx(
        -np.mean(np.log([0.95, 0.05, 0.62, 0.45, 0.48])))


def test_calibrating_kept_probabilities_equals_calibrating_the_logits():
    logits, _ = overconfident(2.0, n=200)
    for t in (0.3, 1.0, 4.0):
        np.testing.assert_allclose(calibrate_probabilities(softmax(logits), t), calibrated_softmax(logits, t),
                                   atol=1e-12)
    # order is kept: a temperature never changes a ranking or an argmax
    p = calibrated_softmax(logits, 3.0)[:, 1]
    assert (np.argsort(p, kind="stable") == np.argsort(softmax(logits)[:, 1], kind="stable")).all()


# -- the bundle and the engines ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(onnx_bundle):
    """conftest's session export (ONNX Runtime FP32, no gate, a sensitivity operating point), shared
    with the decision tests: the temperature is fitted and recorded whatever the rule."""
    return onnx_bundle


def with_manifest(source, dest, change) -> object:
    """A copy of the bundle with its bundle.json changed and re-checksummed, as an export would write it."""
    shutil.copytree(source, dest)
    manifest = json.loads((dest / MANIFEST).read_text())
    change(manifest)
    manifest["checksum"] = manifest_checksum(manifest)
    (dest / MANIFEST).write_text(json.dumps(manifest))
    return load_bundle(dest)


def test_export_fits_the_temperature_on_validation_and_records_it(exported, trained_run):
    bundle = load_bundle(exported)
    record = bundle.manifest[PROBABILITY_CALIBRATION]
    run_json = json.loads((trained_run / "run.json").read_text())
    assert record["fitted_on"] == "validation" and record["images"] == len(run_json["split"]["val"])
    assert 0.05 <= record["temperature"] <= 20.0 and bundle.temperature == record["temperature"]
    assert record["nll_after"] <= record["nll_before"] + 1e-9
    assert "probabilities: softmax(logits / " in run("bundle", "inspect", exported).output


def classify_all(bundle, images):
    from edgecxr.backends import open_runner
    from edgecxr.core.preprocess import load_model_inputs
    from edgecxr.runtime.classifier import Classifier
    from edgecxr.runtime.selection import choose

    inputs = load_model_inputs(images, bundle.spec)
    classifier = Classifier(bundle, choose(bundle, backend="onnxruntime", precision="fp32"))
    try:
        probs, _ = classifier.probabilities(inputs)
        labels = [classifier.result_fields(p)["label"] for p in probs]
    finally:
        classifier.close()
    with open_runner("onnxruntime", bundle.find("onnxruntime", "fp32")[0].path) as runner:
        logits = runner.infer(inputs)
    return probs, labels, logits


def test_the_classifier_applies_the_temperature_before_the_rule(exported, mini_test_images, tmp_path):
    plain = with_manifest(exported, tmp_path / "plain", lambda m: m.pop(PROBABILITY_CALIBRATION))
    assert plain.temperature == 1.0  # an older bundle: the plain softmax, as before
    probs, _, logits = classify_all(plain, mini_test_images)
    np.testing.assert_allclose(probs, softmax(logits), atol=1e-12)

    # a sharpening temperature and a threshold between the raw and the calibrated P of the first image
    raw_p, cal_p = softmax(logits)[0, 1], calibrated_softmax(logits, 0.2)[0, 1]
    threshold = float((raw_p + cal_p) / 2)

    def sharpen(m):
        m[PROBABILITY_CALIBRATION] = {"method": "temperature", "temperature": 0.2}
        m["decision"] = {"rule": "threshold", "class": "PNEUMONIA", "threshold": threshold}
    sharp = with_manifest(exported, tmp_path / "sharp", sharpen)
    probs, labels, logits = classify_all(sharp, mini_test_images)
    np.testing.assert_allclose(probs, calibrated_softmax(logits, 0.2), atol=1e-12)
    assert not np.allclose(probs, softmax(logits))
    assert labels == ["PNEUMONIA" if p >= threshold else "NORMAL" for p in probs[:, 1]]
    assert labels[0] == ("PNEUMONIA" if cal_p >= threshold else "NORMAL")
    assert labels[0] != ("PNEUMONIA" if raw_p >= threshold else "NORMAL")  # the raw P would decide otherwise


def test_a_bad_temperature_is_refused_by_name(exported, tmp_path):
    with pytest.raises(EdgecxrError, match="temperature"):
        with_manifest(exported, tmp_path / "bad", lambda m: m.update({PROBABILITY_CALIBRATION: {"temperature": -1}}))


def test_parity_check_calibrates_pytorch_and_engines_alike(exported, mini, tmp_path):
    result = run("parity-check", exported, "--data", mini / "test", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    parity = json.loads((tmp_path / "parity.json").read_text())
    calibration = parity["calibration"]
    assert calibration["temperature"] == load_bundle(exported).temperature and calibration["bins"] == 15
    report = json.loads((exported / "report.json").read_text())
    names = report["class_names"]
    raw = np.array([[r["probabilities"][n] for n in names] for r in report["rows"]])
    truth = [names.index(r["label"]) for r in report["rows"]]
    assert calibration["reference_ece_uncalibrated"] == pytest.approx(expected_calibration_error(raw, truth))
    assert calibration["reference_ece"] == pytest.approx(
        expected_calibration_error(calibrate_probabilities(raw, calibration["temperature"]), truth))
    for engine in parity["engines"]:
        assert engine["reference_ece"] == pytest.approx(calibration["reference_ece"])
    assert "the bundle's temperature" in (tmp_path / "parity.md").read_text()


def test_the_pytorch_test_report_carries_the_ece_and_its_reliability_points(trained_run):
    report = json.loads((trained_run / "report.json").read_text())
    names = report["class_names"]
    probs = np.array([[r["probabilities"][n] for n in names] for r in report["rows"]])
    truth = [names.index(r["label"]) for r in report["rows"]]
    calibration = report["metrics"]["calibration"]
    assert calibration["bins"] == 15
    assert calibration["ece"] == pytest.approx(expected_calibration_error(probs, truth))
    assert sum(point[2] for point in calibration["reliability"]) == pytest.approx(1.0, abs=1e-5)
    assert "Expected calibration error" in (trained_run / "report.md").read_text()
